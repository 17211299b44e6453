"""The local cache of pulled adapters and base models (docs/design.md §5).

Layout under the cache root::

    blobs/<sha256>                                   file bytes, content-addressed
    snapshots/<digest hex>/<path>                    relative symlinks to ../blobs/<sha256>
    manifests/<digest hex>.json                      the resolve answer without URLs
    refs/<server key>/<namespace>/<name>/<selector>  a file holding "sha256:<digest hex>"
    tmp/                                             downloads in progress

Nothing half-written is ever visible: blobs are downloaded to ``tmp/`` (same
filesystem) and ``os.replace``-d into ``blobs/`` once verified; a snapshot is
built in a hidden sibling folder and renamed into place; small files are
written to a temp file and replaced. Two processes pulling the same blob or
snapshot race harmlessly: each rename is atomic and both sides hold identical
bytes. Where symlinks are not allowed, snapshots use hard links, then copies.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import quote, urlsplit

from loreg.errors import ServerError

_HEX64 = re.compile(r"^[0-9a-f]{64}$")
#: Namespace folder for refs given without a namespace (bare names, resolved with
#: the caller's default namespace). Names cannot start with "_", so no clash.
BARE_NAMESPACE = "_default"
#: Pseudo-namespace folder for base-model refs.
BASE_MODEL_NAMESPACE = "_base_models"
_TEMP_MAX_AGE_S = 24 * 3600


def check_sha256(value: Any) -> str:
    """Return ``value`` if it is 64 lowercase hex characters, else raise ServerError."""
    if not isinstance(value, str) or not _HEX64.match(value):
        raise ServerError(f"the registry sent an invalid sha256 {value!r}: expected 64 hex digits")
    return value


def digest_hex(digest: Any) -> str:
    """The hex part of a ``sha256:<hex>`` digest (validated)."""
    if not isinstance(digest, str) or not digest.startswith("sha256:"):
        raise ServerError(f"the registry sent an invalid digest {digest!r}: expected sha256:<hex>")
    return check_sha256(digest[len("sha256:") :])


def safe_relpath(path: Any) -> PurePosixPath:
    """Validate a file path from a manifest: relative, no ``..``, no empty parts."""
    if not isinstance(path, str) or not path or "\\" in path or "\x00" in path:
        raise ServerError(f"the registry sent an unsafe file path {path!r}")
    rel = PurePosixPath(path)
    if rel.is_absolute() or any(part in ("", ".", "..") for part in path.split("/")):
        raise ServerError(f"the registry sent an unsafe file path {path!r}")
    return rel


def server_key(url: str) -> str:
    """A folder name for a registry URL: ``http://127.0.0.1:8080`` -> ``127.0.0.1_8080``."""
    parts = urlsplit(url)
    host = parts.hostname or "registry"
    port = parts.port or (443 if parts.scheme == "https" else 80)
    key = f"{host}_{port}{parts.path.rstrip('/')}"
    return re.sub(r"[^A-Za-z0-9._-]", "_", key)


def _component(value: str) -> str:
    """One safe folder/file name for a ref part (names, aliases, selectors)."""
    encoded = quote(value, safe="@._-")
    if encoded in ("", ".", ".."):
        raise ValueError(f"invalid cache key component {value!r}")
    return encoded


def strip_urls(resolved: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a resolve answer without its short-lived download URLs."""
    out = dict(resolved)
    if isinstance(out.get("files"), list):
        out["files"] = [
            {k: v for k, v in f.items() if k != "url"} if isinstance(f, Mapping) else f
            for f in out["files"]
        ]
    return out


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temp file in the same folder and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".tmp-{path.name}-{uuid.uuid4().hex}"
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


class Cache:
    """The on-disk cache rooted at ``root`` (created on first write)."""

    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root).expanduser()
        self.blobs_dir = self.root / "blobs"
        self.snapshots_dir = self.root / "snapshots"
        self.manifests_dir = self.root / "manifests"
        self.refs_dir = self.root / "refs"
        self.tmp_dir = self.root / "tmp"
        self._symlinks_ok = True

    # ---------------------------------------------------------------- blobs
    def blob_path(self, sha256: str) -> Path:
        """Where the blob with this sha256 lives (whether or not it exists)."""
        return self.blobs_dir / check_sha256(sha256)

    def has_blob(self, sha256: str, size: int | None = None) -> bool:
        """True when the blob is cached (and has ``size`` bytes, if given)."""
        try:
            st = self.blob_path(sha256).stat()
        except FileNotFoundError:
            return False
        return size is None or st.st_size == size

    def new_temp_path(self, label: str) -> Path:
        """A fresh path in ``tmp/`` (same filesystem as the blobs) for a download."""
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        return self.tmp_dir / f"{label}.{uuid.uuid4().hex}.incomplete"

    def commit_blob(self, temp_path: Path, sha256: str) -> Path:
        """Atomically move a verified download into ``blobs/``; returns the blob path."""
        dest = self.blob_path(sha256)
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(temp_path, dest)
        return dest

    def clean_temp(self, older_than_s: float = _TEMP_MAX_AGE_S) -> int:
        """Delete leftovers of killed downloads older than ``older_than_s``; returns how many."""
        removed = 0
        cutoff = time.time() - older_than_s
        try:
            entries = list(os.scandir(self.tmp_dir))
        except FileNotFoundError:
            return 0
        for entry in entries:
            try:
                if entry.stat(follow_symlinks=False).st_mtime < cutoff:
                    os.unlink(entry.path)
                    removed += 1
            except OSError:
                continue
        return removed

    # ------------------------------------------------------------ snapshots
    def snapshot_path(self, digest: str) -> Path:
        """The snapshot folder of a version digest (``sha256:<hex>``)."""
        return self.snapshots_dir / digest_hex(digest)

    def snapshot_ready(self, digest: str, files: Iterable[Mapping[str, Any]]) -> bool:
        """True when the snapshot exists and every file resolves to a blob of the right size."""
        root = self.snapshot_path(digest)
        for f in files:
            try:
                st = (root / safe_relpath(f["path"])).stat()
            except (FileNotFoundError, NotADirectoryError):
                return False
            if st.st_size != f["size"]:
                return False
        return root.is_dir()

    def build_snapshot(self, digest: str, files: list[Mapping[str, Any]]) -> Path:
        """Link every file of a version to its (already cached) blob, atomically.

        The folder is built under a hidden temp name and renamed to
        ``snapshots/<hex>``; an incomplete older folder is swapped out.
        """
        final = self.snapshot_path(digest)
        self.snapshots_dir.mkdir(parents=True, exist_ok=True)
        work = self.snapshots_dir / f".tmp-{final.name}-{uuid.uuid4().hex}"
        work.mkdir()
        try:
            for f in files:
                rel = safe_relpath(f["path"])
                blob = self.blob_path(f["sha256"])
                if not blob.is_file():
                    raise FileNotFoundError(f"blob {f['sha256']} of {rel} is not in the cache")
                dest = work / rel
                dest.parent.mkdir(parents=True, exist_ok=True)
                # ``work`` and ``final`` are siblings, so the link target is the same.
                target = os.path.relpath(blob, (final / rel).parent)
                self._link(blob, target, dest)
            self._swap_in(work, final, files)
        finally:
            if work.exists():
                shutil.rmtree(work, ignore_errors=True)
        return final

    def _link(self, blob: Path, relative_target: str, dest: Path) -> None:
        """Relative symlink; hard link or copy where symlinks are not available."""
        if self._symlinks_ok:
            try:
                os.symlink(relative_target, dest)
                return
            except (OSError, NotImplementedError):
                self._symlinks_ok = False
        try:
            os.link(blob, dest)
        except OSError:
            shutil.copyfile(blob, dest)

    def _swap_in(self, work: Path, final: Path, files: list[Mapping[str, Any]]) -> None:
        try:
            os.rename(work, final)
            return
        except OSError:
            if not final.exists():
                raise
        # Someone else built it meanwhile (fine), or an older copy is incomplete.
        if self.snapshot_ready(f"sha256:{final.name}", files):
            return
        trash = self.snapshots_dir / f".trash-{final.name}-{uuid.uuid4().hex}"
        os.rename(final, trash)
        try:
            os.rename(work, final)
        finally:
            shutil.rmtree(trash, ignore_errors=True)

    # ------------------------------------------------------ manifests, refs
    def manifest_path(self, digest: str) -> Path:
        """Where the manifest of a digest is stored."""
        return self.manifests_dir / f"{digest_hex(digest)}.json"

    def write_manifest(self, resolved: Mapping[str, Any]) -> None:
        """Store a resolve answer (without URLs) under its digest."""
        data = json.dumps(strip_urls(resolved), sort_keys=True, indent=1).encode()
        path = self.manifest_path(resolved["digest"])
        try:
            if path.read_bytes() == data:
                return  # warm pulls: reading is cheaper than rewriting
        except FileNotFoundError:
            pass
        write_atomic(path, data)

    def read_manifest(self, digest: str) -> dict[str, Any] | None:
        """The stored manifest of a digest, or None."""
        try:
            data = self.manifest_path(digest).read_bytes()
        except FileNotFoundError:
            return None
        try:
            manifest = json.loads(data)
        except ValueError:
            return None
        return manifest if isinstance(manifest, dict) else None

    def ref_path(self, server: str, namespace: str, name: str, selector: str) -> Path:
        """The ref file of ``namespace/name`` + selector for one registry."""
        parts = (server, namespace, name, selector)
        return self.refs_dir.joinpath(*(_component(p) for p in parts))

    def write_ref(self, server: str, namespace: str, name: str, selector: str, digest: str) -> None:
        """Remember that a selector resolved to ``digest`` (for offline mode)."""
        digest_hex(digest)
        path = self.ref_path(server, namespace, name, selector)
        try:
            if path.read_text() == digest:
                return
        except (FileNotFoundError, NotADirectoryError, UnicodeDecodeError):
            pass
        write_atomic(path, digest.encode())

    def cached_versions(self, server: str, namespace: str, name: str) -> list[int]:
        """Version numbers of ``namespace/name`` with a ref entry, ascending."""
        folder = self.ref_path(server, namespace, name, "latest").parent
        try:
            names = os.listdir(folder)
        except (FileNotFoundError, NotADirectoryError):
            return []
        return sorted(int(n[1:]) for n in names if re.fullmatch(r"v[1-9][0-9]*", n))

    def read_ref(self, server: str, namespace: str, name: str, selector: str) -> str | None:
        """The digest a selector last resolved to, or None."""
        try:
            digest = self.ref_path(server, namespace, name, selector).read_text().strip()
        except (FileNotFoundError, NotADirectoryError, UnicodeDecodeError):
            return None
        try:
            digest_hex(digest)
        except ServerError:
            return None
        return digest
