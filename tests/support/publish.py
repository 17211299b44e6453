"""A raw-HTTP publisher that follows docs/http-api.md step by step (no SDK)."""

from __future__ import annotations

import hashlib
import json
import random
import struct
from typing import Any

import httpx


def file_entries(files: dict[str, bytes]) -> list[dict[str, Any]]:
    """The manifest entries (path, size, sha256) of in-memory files."""
    return [
        {"path": p, "size": len(b), "sha256": hashlib.sha256(b).hexdigest()}
        for p, b in files.items()
    ]


def random_safetensors(total_size: int, seed: int = 0) -> bytes:
    """A valid safetensors file of exactly ``total_size`` bytes: one U8 tensor of random bytes.

    The registry stores only kinds it can check, so big test blobs are safetensors.
    """
    n = total_size
    while True:
        header = json.dumps({"blob": {"dtype": "U8", "shape": [n], "data_offsets": [0, n]}})
        want = total_size - 8 - len(header)
        if want == n:
            break
        n = want
    return struct.pack("<Q", len(header)) + header.encode() + random.Random(seed).randbytes(n)


def send_blob(api: httpx.Client, blob: dict[str, Any], data: bytes) -> httpx.Response:
    """Send one missing blob by the method the server chose; returns the final response."""
    up = blob["upload"]
    if up["method"] == "api":
        return api.put(up["url"], content=data)
    plain = httpx.Client(timeout=60)
    try:
        if up["method"] == "put":
            r = plain.put(up["url"], content=data, headers=up["headers"])
            if r.status_code >= 300:
                return r
            return api.post(up["complete_url"], json={})
        parts = []
        size = up["part_size"]
        for part in up["parts"]:
            n = part["part_number"]
            r = plain.put(part["url"], content=data[(n - 1) * size : n * size])
            r.raise_for_status()
            parts.append({"part_number": n, "etag": r.headers["ETag"]})
        return api.post(up["complete_url"], json={"parts": parts})
    finally:
        plain.close()


def start_upload(api: httpx.Client, name: str, files: dict[str, bytes], **extra) -> httpx.Response:
    """Phase 1 only."""
    body = {"kind": "adapter", "name": name, "files": file_entries(files), **extra}
    return api.post("/v1/uploads", json=body)


def publish(
    api: httpx.Client, name: str, files: dict[str, bytes], *, send: bool = True, **extra
) -> tuple[httpx.Response, dict[str, Any]]:
    """Create an upload, send the missing blobs, commit. Returns (commit response, upload)."""
    r = start_upload(api, name, files, **extra)
    assert r.status_code == 201, r.text
    upload = r.json()
    by_sha = {hashlib.sha256(b).hexdigest(): b for b in files.values()}
    if send:
        for blob in upload["blobs"]:
            if not blob["present"]:
                rr = send_blob(api, blob, by_sha[blob["sha256"]])
                assert rr.status_code == 200, rr.text
    return api.post(f"/v1/uploads/{upload['upload_id']}/commit"), upload
