"""Bytes the database lists but the store lost, on both backends (issue 9, items 3 and 4).

A blob is deleted (or overwritten) behind the registry's back: with boto3
``delete_object`` on moto_server, with ``unlink`` in the local store's folder.

* The next push sharing that blob is asked to send it again (the upload phase
  checks the store, not only the ``blobs`` row), succeeds, and the old version
  that shares the blob downloads again.
* ``fsck`` (the service, ``loreg fsck`` in a subprocess, ``POST /v1/admin/fsck``)
  names the versions and paths whose bytes are gone, marks them so resolve
  answers 409 ``files_missing`` instead of dead URLs, and the mark clears when
  the bytes come back. A same-size overwrite is found only with hash checks.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

import loreg
from registry.storage.base import blob_key
from tests.support.publish import publish

pytestmark = pytest.mark.integration

CONFIG = "adapter_config.json"
WEIGHTS = "adapter_model.safetensors"
REPO = Path(__file__).resolve().parents[2]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _s3_key(server, digest: str) -> str:
    prefix = server.settings.s3_prefix.strip("/")
    return f"{prefix}/{blob_key(digest)}" if prefix else blob_key(digest)


def lose_blob(server, request, digest: str) -> None:
    """Delete a blob's object from the store directly, behind the registry's back."""
    if server.backend == "postgres_s3":
        client = request.getfixturevalue("s3_admin_client")
        client.delete_object(Bucket=server.settings.s3_bucket, Key=_s3_key(server, digest))
    else:
        (server.settings.blob_dir / blob_key(digest)).unlink()
    assert server.ctx.store.stat(blob_key(digest)) is None


def overwrite_blob(server, request, digest: str, data: bytes) -> None:
    """Replace a blob's bytes in the store directly (same key, other content)."""
    if server.backend == "postgres_s3":
        client = request.getfixturevalue("s3_admin_client")
        client.put_object(Bucket=server.settings.s3_bucket, Key=_s3_key(server, digest), Body=data)
    else:
        (server.settings.blob_dir / blob_key(digest)).write_bytes(data)


def download(view: dict) -> dict[str, bytes]:
    """Every file of a resolve answer, fetched from its URL."""
    with httpx.Client(timeout=30) as plain:
        out = {}
        for f in view["files"]:
            r = plain.get(f["url"])
            assert r.status_code == 200, (f["path"], r.status_code)
            out[f["path"]] = r.content
        return out


# --------------------------------------------------------------------------- item 3


def test_a_push_resends_a_blob_the_store_lost_and_heals_the_old_version(
    registry_server, admin_api, request, adapter_files
):
    v1_files = {**adapter_files, "README.md": b"# v1\n"}
    r, _ = publish(admin_api, "med", v1_files)
    assert r.status_code == 201, r.text
    lose_blob(registry_server, request, sha(adapter_files[CONFIG]))

    v2_files = {**adapter_files, "README.md": b"# v2\n"}  # shares config and weights with v1
    r, upload = publish(admin_api, "med", v2_files)
    assert r.status_code == 201, r.text
    assert r.json()["resolved"]["version"] == 2
    present = {b["sha256"]: b["present"] for b in upload["blobs"]}
    assert present[sha(adapter_files[CONFIG])] is False  # asked for again
    assert present[sha(adapter_files[WEIGHTS])] is True  # still stored: not re-sent

    view = admin_api.get("/v1/resolve/med-v1").json()
    assert download(view) == v1_files


def test_the_sdk_push_heals_a_lost_blob(registry_server, request, adapter_dir, tmp_path):
    with loreg.Registry(
        url=registry_server.url,
        token=registry_server.admin_token,
        cache_dir=tmp_path / "cache",
        progress=False,
    ) as reg:
        reg.push(adapter_dir, name="sdk")
        weights = sha((adapter_dir / WEIGHTS).read_bytes())
        lose_blob(registry_server, request, weights)
        folder = tmp_path / "v2"
        shutil.copytree(adapter_dir, folder)
        (folder / "README.md").write_text("# second\n")
        result = reg.push(folder, name="sdk")
        assert result.version == 2
        pulled = reg.pull("sdk-v1")
        assert (pulled / WEIGHTS).read_bytes() == (adapter_dir / WEIGHTS).read_bytes()
