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

import dataclasses
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

import loreg
from registry.services import fsck
from registry.services.context import Context
from registry.storage.base import blob_key
from tests.support.publish import publish, send_blob, start_upload
from tests.support.server_cli import run_server_cli
from tests.support.waiting import wait_until

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


def test_a_blob_lost_between_upload_and_commit_is_asked_for_by_the_retry(
    registry_server, admin_api, request, adapter_files
):
    assert publish(admin_api, "med", adapter_files)[0].status_code == 201
    v2 = {**adapter_files, "README.md": b"# v2\n"}
    upload = start_upload(admin_api, "med", v2).json()
    assert {b["sha256"]: b["present"] for b in upload["blobs"]}[sha(adapter_files[CONFIG])]
    lose_blob(registry_server, request, sha(adapter_files[CONFIG]))
    for blob in upload["blobs"]:
        if not blob["present"]:
            assert send_blob(admin_api, blob, v2["README.md"]).status_code == 200
    r = admin_api.post(f"/v1/uploads/{upload['upload_id']}/commit")
    assert r.status_code == 409, r.text
    assert r.json()["error"]["code"] == "missing_blob"
    assert "no longer in the object store: adapter_config.json" in r.json()["error"]["message"]
    assert_files_missing(admin_api.get("/v1/resolve/med-v1"), [CONFIG])  # marked at once
    r, retry = publish(admin_api, "med", v2)  # the client's retry: a new upload
    assert r.status_code == 201, r.text
    assert [b["sha256"] for b in retry["blobs"] if not b["present"]] == [sha(adapter_files[CONFIG])]
    assert download(admin_api.get("/v1/resolve/med-v1").json()) == adapter_files


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


# --------------------------------------------------------------------------- item 4


def error_of(r: httpx.Response) -> dict:
    body = r.json()
    assert set(body) == {"error"}, body
    return body["error"]


def assert_files_missing(r: httpx.Response, paths: list[str]) -> None:
    assert r.status_code == 409, r.text
    err = error_of(r)
    assert err["code"] == "files_missing"
    assert err["details"] == {"missing": paths}
    for path in paths:
        assert path in err["message"]


def test_fsck_marks_versions_whose_bytes_are_gone_and_a_push_clears_the_mark(
    registry_server, admin_api, request, adapter_files, other_adapter_files, base_files
):
    ctx = registry_server.ctx
    med = {**adapter_files, "README.md": b"# med\n"}
    other = {**other_adapter_files, "README.md": b"# other\n"}
    chats = {"chats.jsonl": b'{"conversation": [{"human": "hi", "assistant": "hello"}]}\n'}
    assert publish(admin_api, "med", med)[0].status_code == 201
    assert publish(admin_api, "other", other)[0].status_code == 201
    assert publish(admin_api, "chats", chats, kind="dataset")[0].status_code == 201
    assert publish(admin_api, "tiny-llama", base_files, kind="base_model")[0].status_code == 201
    clean = fsck.scrub(ctx)
    assert clean["ok"] and clean["problems"] == [] and clean["versions"] == []
    assert clean["blobs_checked"] == len(
        {sha(b) for f in (med, other, chats, base_files) for b in f.values()}
    )

    lose_blob(registry_server, request, sha(med[CONFIG]))
    lose_blob(registry_server, request, sha(chats["chats.jsonl"]))
    lose_blob(registry_server, request, sha(base_files["config.json"]))
    assert admin_api.get("/v1/resolve/med-v1").status_code == 200  # unnoticed until fsck

    report = fsck.scrub(ctx)
    assert not report["ok"]
    assert report["marked"] == 3
    assert {(p["sha256"], p["problem"]) for p in report["problems"]} == {
        (sha(med[CONFIG]), "missing"),
        (sha(chats["chats.jsonl"]), "missing"),
        (sha(base_files["config.json"]), "missing"),
    }
    assert report["versions"] == [
        {"kind": "dataset", "ref": "default/chats-v1", "missing": ["chats.jsonl"]},
        {"kind": "adapter", "ref": "default/med-v1", "missing": [CONFIG]},
        {"kind": "base_model", "ref": "tiny-llama", "missing": ["config.json"]},
    ]
    assert_files_missing(admin_api.get("/v1/resolve/med-v1"), [CONFIG])
    assert_files_missing(admin_api.get("/v1/resolve/med"), [CONFIG])  # latest too
    assert_files_missing(admin_api.get("/v1/resolve/chats-v1"), ["chats.jsonl"])
    assert_files_missing(admin_api.get("/v1/base-models/tiny-llama"), ["config.json"])
    assert download(admin_api.get("/v1/resolve/other-v1").json()) == other  # untouched

    # a second pass changes nothing
    again = fsck.scrub(ctx)
    assert (again["marked"], again["cleared"]) == (3, 0)
    assert again["versions"] == report["versions"]

    # the same push again re-sends the lost blob; the mark clears at once
    r, upload = publish(admin_api, "med", med)
    assert r.status_code == 200, r.text
    assert r.json()["created"] is False and r.json()["resolved"]["version"] == 1
    assert [b["sha256"] for b in upload["blobs"] if not b["present"]] == [sha(med[CONFIG])]
    assert download(admin_api.get("/v1/resolve/med-v1").json()) == med

    # bytes put back behind the registry's back: the next fsck finds them and unmarks
    ctx.store.put(
        blob_key(sha(base_files["config.json"])),
        io.BytesIO(base_files["config.json"]),
    )
    healed = fsck.scrub(ctx)
    assert healed["cleared"] == 1
    assert healed["versions"] == [
        {"kind": "dataset", "ref": "default/chats-v1", "missing": ["chats.jsonl"]}
    ]
    assert admin_api.get("/v1/base-models/tiny-llama").status_code == 200


def test_fsck_verify_hashes_finds_same_size_overwrites(
    registry_server, admin_api, request, adapter_files
):
    ctx = registry_server.ctx
    assert publish(admin_api, "med", adapter_files)[0].status_code == 201
    weights = adapter_files[WEIGHTS]
    overwrite_blob(registry_server, request, sha(weights), bytes(len(weights)))

    quick = fsck.scrub(ctx)
    assert quick["ok"] and quick["bytes_hashed"] == 0  # same size: invisible without hashing
    deep = fsck.scrub(ctx, verify_hashes=True)
    assert not deep["ok"]
    assert deep["bytes_hashed"] == sum(len(b) for b in adapter_files.values())
    assert [(p["sha256"], p["problem"]) for p in deep["problems"]] == [(sha(weights), "sha256")]
    assert deep["versions"] == [{"kind": "adapter", "ref": "default/med-v1", "missing": [WEIGHTS]}]
    assert_files_missing(admin_api.get("/v1/resolve/med-v1"), [WEIGHTS])
    # a quick pass cannot vouch for the content: the mark stays
    assert fsck.scrub(ctx)["cleared"] == 0
    assert admin_api.get("/v1/resolve/med-v1").status_code == 409

    r, upload = publish(admin_api, "med", adapter_files)
    assert r.status_code == 200, r.text
    assert [b["sha256"] for b in upload["blobs"] if not b["present"]] == [sha(weights)]
    assert download(admin_api.get("/v1/resolve/med-v1").json()) == adapter_files
    assert fsck.scrub(ctx, verify_hashes=True)["ok"]


def loreg_fsck(server, tmp_path, *args: str) -> subprocess.CompletedProcess:
    return run_server_cli(server, tmp_path, "fsck", *args)


def test_loreg_fsck_cli_reports_and_exits_non_zero(
    registry_server, admin_api, request, adapter_files, tmp_path
):
    assert publish(admin_api, "med", adapter_files)[0].status_code == 201
    ok = loreg_fsck(registry_server, tmp_path, "--json")
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["ok"] is True

    lose_blob(registry_server, request, sha(adapter_files[CONFIG]))
    proc = loreg_fsck(registry_server, tmp_path, "--json")
    assert proc.returncode == 8, proc.stderr
    report = json.loads(proc.stdout)
    assert report["versions"] == [{"kind": "adapter", "ref": "default/med-v1", "missing": [CONFIG]}]
    assert_files_missing(admin_api.get("/v1/resolve/med-v1"), [CONFIG])

    text = loreg_fsck(registry_server, tmp_path)
    assert text.returncode == 8
    assert f"adapter default/med-v1: missing {CONFIG}" in text.stdout
    assert sha(adapter_files[CONFIG]) in text.stdout

    # same-size overwrite: found only with --verify-hashes
    assert publish(admin_api, "med", adapter_files)[0].status_code == 200  # heals the config
    weights = adapter_files[WEIGHTS]
    overwrite_blob(registry_server, request, sha(weights), bytes(len(weights)))
    assert loreg_fsck(registry_server, tmp_path, "--json").returncode == 0
    deep = loreg_fsck(registry_server, tmp_path, "--json", "--verify-hashes")
    assert deep.returncode == 8, deep.stderr
    assert json.loads(deep.stdout)["problems"][0]["problem"] == "sha256"


def test_loreg_fsck_names_a_missing_database(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOREG_")}
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "loreg"), "fsck", "--data-dir", str(tmp_path / "no")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    assert "no registry database" in proc.stderr and "--data-dir" in proc.stderr


def test_admin_fsck_endpoint(registry_server, admin_api, anon_api, request, adapter_files):
    assert publish(admin_api, "med", adapter_files)[0].status_code == 201
    assert anon_api.post("/v1/admin/fsck").status_code == 401
    lose_blob(registry_server, request, sha(adapter_files[WEIGHTS]))
    r = admin_api.post("/v1/admin/fsck")
    assert r.status_code == 200, r.text
    assert r.json()["versions"] == [
        {"kind": "adapter", "ref": "default/med-v1", "missing": [WEIGHTS]}
    ]
    assert admin_api.post("/v1/admin/fsck", params={"verify_hashes": "true"}).json()[
        "verify_hashes"
    ]
    assert_files_missing(admin_api.get("/v1/resolve/med-v1"), [WEIGHTS])


@pytest.mark.parametrize("registry_server", ["sqlite_local"], indirect=True)
def test_the_scheduled_fsck_marks_lost_files(registry_server, admin_api, request, adapter_files):
    assert publish(admin_api, "med", adapter_files)[0].status_code == 201
    lose_blob(registry_server, request, sha(adapter_files[CONFIG]))
    ctx = Context.from_settings(registry_server.settings.with_overrides(fsck_interval_s=0.2))
    scrubber = fsck.start_periodic(ctx)
    try:
        wait_until(lambda: scrubber.passes, timeout=30, message="the scheduled fsck never ran")
        assert scrubber.last_report is not None and not scrubber.last_report["ok"]
    finally:
        scrubber.stop()
        ctx.close()
    assert_files_missing(admin_api.get("/v1/resolve/med-v1"), [CONFIG])
    off = dataclasses.replace(
        registry_server.ctx, settings=ctx.settings.with_overrides(fsck_interval_s=0)
    )
    assert fsck.start_periodic(off) is None
