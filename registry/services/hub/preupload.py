"""The Hub's preupload call: how each file of a coming commit should travel.

Every file is answered ``uploadMode: "regular"`` (its bytes then come base64-encoded
inside the commit body). With ``hf_xet`` installed, the stock client sends every
``lfs`` file to Xet storage, without asking the server, and loreg serves no Xet; the
request does not say whether the client has Xet (not even its user agent), so
``regular`` is the one answer every client can follow.

A client that knows it runs without Xet (``HF_HUB_DISABLE_XET=1``) may opt in to
the LFS batch path by sending the header ``X-Loreg-Upload-Mode: lfs``
(``HfApi(headers=...)``): its non-empty files are then answered ``lfs`` and travel
through ``/{repo}.git/info/lfs/objects/batch`` (:mod:`registry.services.hub.lfs`).

What the publish would refuse from a file's name, size or first 512 bytes is
refused here already, with the message ``loreg push`` gives.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from sqlmodel import Session

from registry.auth import Principal
from registry.errors import InvalidManifest
from registry.services.context import Context
from registry.services.hub.access import check_commit_revision, writable_repo
from registry.services.hub.errors import HubBadRequest
from registry.services.publish.checks import check_declared_file

#: The header a client without Xet sends to have its files answered ``lfs``.
UPLOAD_MODE_HEADER = "x-loreg-upload-mode"
REGULAR, LFS = "regular", "lfs"
#: Most files one preupload call may list (the client sends 256 at a time).
MAX_FILES = 1000
#: Largest sample accepted (the client sends 512 bytes).
MAX_SAMPLE = 4096


def _sample(item: dict[str, Any], path: str) -> bytes:
    text = item.get("sample", "")
    if not isinstance(text, str) or len(text) > MAX_SAMPLE * 4 // 3 + 4:
        raise HubBadRequest(f"preupload: the sample of '{path}' must be base64 of at most 4 KiB")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise HubBadRequest(f"preupload: the sample of '{path}' is not valid base64") from None


def preupload(
    session: Session,
    ctx: Context,
    principal: Principal,
    namespace: str,
    name: str,
    revision: str,
    body: dict[str, Any],
    mode_header: str | None,
) -> dict[str, Any]:
    """``POST /api/models/{repo}/preupload/{rev}``: the upload mode of each file, or a 4xx.

    The caller must be allowed to commit (write scope, a revision commits may
    target). ``shouldIgnore`` is always false: loreg applies no ``.gitignore``.
    """
    writable_repo(session, principal, namespace, name)
    check_commit_revision(revision)
    files = body.get("files")
    if not isinstance(files, list) or len(files) > MAX_FILES:
        raise HubBadRequest(f"preupload: 'files' must be a list of at most {MAX_FILES} files")
    lfs = (mode_header or "").strip().lower() == LFS
    answer = []
    for item in files:
        if not isinstance(item, dict) or not isinstance(item.get("path"), str):
            raise HubBadRequest("preupload: each file needs a 'path' string")
        size = item.get("size")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise InvalidManifest(f"preupload: the size of '{item['path']}' must be a byte count")
        sample = _sample(item, item["path"])
        check_declared_file(ctx, item["path"], size, sample)
        mode = LFS if lfs and size > 0 else REGULAR
        answer.append({"path": item["path"], "uploadMode": mode, "shouldIgnore": False})
    return {"files": answer}
