"""One blob's bytes from a request body: streamed to a temp file, size and sha256 checked."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import Request

from registry.errors import BlobMismatch, PayloadTooLarge


@asynccontextmanager
async def received_blob(request: Request, tmp_dir: Path, sha: str, size: int) -> AsyncIterator[str]:
    """The body as a temp file that holds exactly ``size`` bytes hashing to ``sha``.

    Raises BlobMismatch (a declared Content-Length or the bytes differ) or
    PayloadTooLarge (more bytes than declared, refused as they arrive). The file is
    removed on leaving the block.
    """
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) != size:
        raise BlobMismatch(f"blob {sha}: body is {declared} bytes, the manifest declared {size}")
    tmp_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp_path = tempfile.mkstemp(dir=tmp_dir, prefix="upload-")
    try:
        h = hashlib.sha256()
        received = 0
        with os.fdopen(fd, "wb") as out:
            async for chunk in request.stream():
                received += len(chunk)
                if received > size:
                    raise PayloadTooLarge(f"blob {sha}: more than the declared {size} bytes sent")
                h.update(chunk)
                out.write(chunk)
        if received != size or h.hexdigest() != sha:
            raise BlobMismatch(
                f"blob {sha}: received {received} bytes hashing to {h.hexdigest()}; "
                f"expected {size} bytes"
            )
        yield tmp_path
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_path)
