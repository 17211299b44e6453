"""The local cache of pulled adapters and base models (docs/design.md §5).

Layout under the cache root::

    blobs/<sha256>                                   file bytes, content-addressed
    snapshots/<digest hex>/<path>                    relative symlinks to ../blobs/<sha256>
    manifests/<digest hex>.json                      the resolve answer without URLs
    refs/<server key>/<namespace>/<name>/<selector>  a file holding "sha256:<digest hex>"
    verified/<sha256>                                stat fingerprints of verified bytes
    tmp/<sha256>.incomplete                          a download in progress (resumable)

Verification: a blob is sha256-checked when it is downloaded, and its stat
fingerprint (size, mtime_ns, inode) is recorded in ``verified/``. A warm pull
stats each file once and compares: a file whose fingerprint changed (rewritten,
touched, replaced) is hashed again, and dropped and fetched again when its
bytes are wrong. Corruption that keeps the fingerprint (a restored mtime, bit
rot) is found by :meth:`Cache.verify`, which hashes everything
(``loreg cache verify``).

Downloads go to ``tmp/<sha256>.incomplete`` under an exclusive ``flock``; a
killed download leaves it there, and the next one resumes it with a ``Range``
request (the whole file is hashed at the end). Leftovers older than 24 h go.

Nothing half-written is ever visible: blobs are downloaded to ``tmp/`` (same
filesystem) and ``os.replace``-d into ``blobs/`` once verified; a snapshot is
built in a hidden sibling folder and renamed into place; small files are
written to a temp file and replaced. Two processes pulling the same blob or
snapshot race harmlessly: each rename is atomic and both sides hold identical
bytes. Where symlinks are not allowed, snapshots use hard links, then copies.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import quote, urlsplit

from loreg.errors import DiskFullError, ServerError
from loreg.manifest import sha256_file

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: downloads are not resumed
    fcntl = None  # type: ignore[assignment]

_HEX64 = re.compile(r"^[0-9a-f]{64}$")
#: Namespace folder for refs given without a namespace (bare names, resolved with
#: the caller's default namespace). Names cannot start with "_", so no clash.
BARE_NAMESPACE = "_default"
#: Pseudo-namespace folder for base-model refs.
BASE_MODEL_NAMESPACE = "_base_models"
_TEMP_MAX_AGE_S = 24 * 3600
#: Fingerprints kept per blob (the blob itself, plus copies where links are impossible).
_MAX_FINGERPRINTS = 8
_DISK_FULL_ERRNOS = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}


def is_disk_full(exc: BaseException) -> bool:
    """True for the OSError of a full disk (or quota)."""
    return isinstance(exc, OSError) and exc.errno in _DISK_FULL_ERRNOS


def disk_full_error(root: Path, needed: int | None) -> DiskFullError:
    """The one-line error for a full cache disk, naming the folder and the bytes needed."""
    from loreg.progress import format_bytes

    try:
        usage = shutil.disk_usage(root if root.exists() else root.parent)
        free = f", {format_bytes(usage.free)} free"
    except OSError:
        free = ""
    need = f"this pull needs {format_bytes(needed)}" if needed else "there is no room left"
    return DiskFullError(
        f"the disk of the cache folder {root} is full ({need}{free}); nothing partial was kept: "
        "free some space there, or set LOREG_CACHE_DIR to a folder on a larger disk",
        folder=str(root),
        needed=needed,
    )


def _unique() -> str:
    """32 random hex digits for a temporary name (as ``uuid4().hex``, without importing uuid)."""
    return os.urandom(16).hex()


def _is_empty(path: Path) -> bool:
    try:
        return path.stat().st_size == 0
    except OSError:
        return False


def fingerprint(st: os.stat_result) -> str:
    """A file's stat fingerprint: ``size mtime_ns inode``."""
    return f"{st.st_size} {st.st_mtime_ns} {st.st_ino}"


#: How often a snapshot swap is retried while concurrent pulls race for it.
_SWAP_ATTEMPTS = 5


@dataclass(frozen=True)
class Partial:
    """The temp file of one download; ``resumable`` when it is the shared, locked name."""

    path: Path
    resumable: bool

    def discard(self) -> None:
        """Drop the bytes so far. The shared name is emptied in place, not unlinked: the
        lock is on its inode, and a new file at that name would be another's to claim."""
        if not self.resumable:
            self.path.unlink(missing_ok=True)
            return
        try:
            os.truncate(self.path, 0)
        except FileNotFoundError:
            pass
        except OSError:  # not a regular file: nothing to keep in place
            self.path.unlink(missing_ok=True)


def _same_file(fd: int, path: Path) -> bool:
    """True when ``path`` still names the file open as ``fd``."""
    try:
        here, held = path.stat(), os.fstat(fd)
    except OSError:
        return False
    return (here.st_dev, here.st_ino) == (held.st_dev, held.st_ino)


@dataclass
class VerifyReport:
    """What :meth:`Cache.verify` found: blobs checked, bytes hashed, corrupt ones dropped."""

    checked: int = 0
    bytes: int = 0
    corrupt: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {"checked": self.checked, "bytes": self.bytes, "corrupt": self.corrupt}


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
    tmp = path.parent / f".tmp-{path.name}-{_unique()}"
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
        self.verified_dir = self.root / "verified"
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
        return self.tmp_dir / f"{label}.{_unique()}.incomplete"

    def partial_path(self, sha256: str) -> Path:
        """The resumable download file of a blob: ``tmp/<sha256>.incomplete``."""
        return self.tmp_dir / f"{check_sha256(sha256)}.incomplete"

    @contextlib.contextmanager
    def claim_partial(self, sha256: str) -> Iterator[Partial]:
        """Own the resumable download file of a blob for the ``with`` block.

        The file is locked (``flock``); if another process holds it, or locks are
        not available, a fresh temp name is used instead (not resumable, removed
        on exit).
        """
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        path = self.partial_path(sha256)
        fd: int | None = None
        if fcntl is not None:
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                if fd is not None:
                    os.close(fd)
                fd = None
        if fd is not None:
            partial = Partial(path, True)
        else:
            partial = Partial(self.new_temp_path(sha256), False)
        try:
            yield partial
        finally:
            # An empty shared file is removed only while it is still the one we locked:
            # once committed (renamed into blobs/), the name may already be another's.
            ours_and_empty = (
                fd is not None and _is_empty(partial.path) and _same_file(fd, partial.path)
            )
            if not partial.resumable or ours_and_empty:
                partial.path.unlink(missing_ok=True)
            if fd is not None:
                os.close(fd)

    def drop_partial(self, sha256: str) -> None:
        """Remove a blob's resumable download file, unless another process is using it."""
        with self.claim_partial(sha256) as partial:
            if partial.resumable:
                partial.path.unlink(missing_ok=True)

    def commit_blob(self, temp_path: Path, sha256: str) -> Path:
        """Atomically move a verified download into ``blobs/`` and record its fingerprint."""
        dest = self.blob_path(sha256)
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(temp_path, dest)
        # Merged, not overwritten: a concurrent download of the same blob may have
        # replaced ``dest`` between these two lines, and its fingerprint must stay known.
        self.record_verified(sha256, dest)
        return dest

    # ---------------------------------------------------------- verification
    def _fingerprint_path(self, sha256: str) -> Path:
        return self.verified_dir / check_sha256(sha256)

    def _fingerprints(self, sha256: str) -> list[str]:
        try:
            return self._fingerprint_path(sha256).read_text().splitlines()
        except (FileNotFoundError, NotADirectoryError, UnicodeDecodeError):
            return []

    def _write_fingerprints(self, sha256: str, prints: list[str]) -> None:
        unique = list(dict.fromkeys(prints))[:_MAX_FINGERPRINTS]
        write_atomic(self._fingerprint_path(sha256), ("\n".join(unique) + "\n").encode())

    def record_verified(self, sha256: str, path: Path | None = None) -> None:
        """Remember that the file at ``path`` (default: the blob) holds these verified bytes."""
        st = (path or self.blob_path(sha256)).stat()
        known = self._fingerprints(sha256)
        if fingerprint(st) not in known:
            self._write_fingerprints(sha256, [fingerprint(st), *known])

    def is_verified(self, sha256: str, st: os.stat_result) -> bool:
        """True when a file with this stat was verified to hold ``sha256`` (no hashing)."""
        return fingerprint(st) in self._fingerprints(sha256)

    def drop_blob(self, sha256: str) -> None:
        """Remove a blob and its fingerprints (snapshots linking it become incomplete)."""
        self.blob_path(sha256).unlink(missing_ok=True)
        self._fingerprint_path(sha256).unlink(missing_ok=True)

    def check_blob(self, sha256: str, size: int) -> bool:
        """True when the blob is cached with the right bytes; a wrong blob is dropped.

        One ``stat`` when the fingerprint is unchanged since it was verified;
        otherwise the blob is hashed again (and its new fingerprint recorded).
        """
        path = self.blob_path(sha256)
        try:
            st = path.stat()
        except FileNotFoundError:
            return False
        if st.st_size == size and self.is_verified(sha256, st):
            return True
        if st.st_size == size and sha256_file(path) == sha256:
            after = path.stat()
            if fingerprint(after) == fingerprint(st):
                self.record_verified(sha256)
            return True
        self.drop_blob(sha256)
        return False

    def verify(self) -> VerifyReport:
        """Hash every cached blob; drop those whose bytes do not match their name.

        Each corrupt entry names the versions (from the stored manifests) that
        use it, as ``ref path``.
        """
        report = VerifyReport()
        try:
            entries = sorted(os.scandir(self.blobs_dir), key=lambda e: e.name)
        except FileNotFoundError:
            return report
        corrupt: list[tuple[str, int]] = []
        for entry in entries:
            if not _HEX64.match(entry.name) or not entry.is_file(follow_symlinks=False):
                continue
            path = Path(entry.path)
            before = path.stat()
            report.checked += 1
            report.bytes += before.st_size
            if sha256_file(path) == entry.name:
                if fingerprint(path.stat()) == fingerprint(before):
                    self._write_fingerprints(entry.name, [fingerprint(before)])
                continue
            corrupt.append((entry.name, before.st_size))
            self.drop_blob(entry.name)
        users = self._blob_users({sha for sha, _ in corrupt}) if corrupt else {}
        report.corrupt = [
            {"sha256": sha, "size": size, "used_by": users.get(sha, [])} for sha, size in corrupt
        ]
        return report

    def _blob_users(self, wanted: set[str]) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        try:
            names = sorted(os.listdir(self.manifests_dir))
        except FileNotFoundError:
            return found
        for name in names:
            hex_part = name.removesuffix(".json")
            if not name.endswith(".json") or not _HEX64.match(hex_part):
                continue
            manifest = self.read_manifest("sha256:" + hex_part) or {}
            for f in manifest.get("files") or []:
                if isinstance(f, dict) and f.get("sha256") in wanted:
                    label = manifest.get("ref") or manifest.get("name") or name
                    found.setdefault(f["sha256"], []).append(f"{label} {f.get('path')}")
        return found

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
        """True when every file of the snapshot is there with its verified fingerprint.

        One ``stat`` per file (through the link) and a read of its fingerprint
        record; no hashing. False sends the caller to :meth:`check_blob`.
        """
        root = self.snapshot_path(digest)
        for f in files:
            try:
                st = (root / safe_relpath(f["path"])).stat()
            except (FileNotFoundError, NotADirectoryError):
                return False
            if st.st_size != f["size"] or not self.is_verified(f["sha256"], st):
                return False
        return root.is_dir()

    def build_snapshot(self, digest: str, files: list[Mapping[str, Any]]) -> Path:
        """Link every file of a version to its (already cached) blob, atomically.

        The folder is built under a hidden temp name and renamed to
        ``snapshots/<hex>``; an incomplete older folder is swapped out.
        """
        final = self.snapshot_path(digest)
        self.snapshots_dir.mkdir(parents=True, exist_ok=True)
        work = self.snapshots_dir / f".tmp-{final.name}-{_unique()}"
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
                if not os.path.islink(dest) and not os.path.samefile(dest, blob):
                    self.record_verified(f["sha256"], dest)  # a copy of a verified blob
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
        """Rename ``work`` to ``final``; a complete ``final`` built meanwhile is kept, an
        incomplete one swapped out. Concurrent pulls of one version all end with it."""
        for _ in range(_SWAP_ATTEMPTS):
            try:
                os.rename(work, final)
                return
            except OSError as exc:
                if not final.exists():
                    if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
                        continue  # it was there a moment ago: another pull is swapping it
                    raise
            if self.snapshot_ready(f"sha256:{final.name}", files):
                return  # another pull built it meanwhile
            trash = self.snapshots_dir / f".trash-{final.name}-{_unique()}"
            try:
                os.rename(final, trash)
            except FileNotFoundError:
                continue  # another pull swapped it out first
            shutil.rmtree(trash, ignore_errors=True)
        raise OSError(f"snapshot {final} kept changing under concurrent pulls; pull again")

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
