"""LocalStore: the object store as a folder (embedded mode).

An object with key ``a/b/c`` is the file ``<root>/a/b/c``. Writes go to a temp file
under ``<root>/.tmp`` (same filesystem), are fsynced, then renamed into place with
``os.replace``, so a reader never sees a partial file and a crash leaves at most temp
debris. There are no presigned URLs: the API relays the bytes itself.
"""

from __future__ import annotations

import builtins
import contextlib
import errno
import os
import shutil
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from stat import S_ISREG
from typing import BinaryIO

from registry.storage.base import (
    DEFAULT_CHUNK_SIZE,
    DigestCheck,
    MiB,
    ObjectInfo,
    ObjectNotFound,
    ObjectStore,
    PresignedPart,
    PresignedPut,
    check_range,
    outages_unavailable,
    validate_key,
)

#: errno values that mean the folder's filesystem is gone (a lost NFS/iSCSI mount, a dead
#: disk), not that a file is missing or a request is wrong.
_UNREACHABLE_ERRNOS = {
    errno.EIO,
    errno.ENOTCONN,
    errno.ESTALE,
    errno.ETIMEDOUT,
    errno.EHOSTDOWN,
    errno.EHOSTUNREACH,
    errno.ENODEV,
    errno.ENXIO,
}


def _is_outage(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in _UNREACHABLE_ERRNOS


_outages_are_unavailable = outages_unavailable(_is_outage)
_WRITE_CHUNK = 1 * MiB
_TMP_DIR = ".tmp"
_NO_PRESIGN = (
    "LocalStore has no presigned or multipart uploads (supports_presigned_urls is False); "
    "send the bytes through the API and store them with put()"
)


class LocalStore(ObjectStore):
    """An :class:`ObjectStore` in a local folder; see the module docstring."""

    supports_presigned_urls = False

    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root).expanduser().resolve()
        self._tmp = self.root / _TMP_DIR
        self._tmp.mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:
        return f"LocalStore({str(self.root)!r})"

    def _path(self, key: str) -> Path:
        validate_key(key)
        return self.root.joinpath(*key.split("/"))

    def describe(self) -> str:
        """``local folder <root>``."""
        return f"local folder {self.root}"

    def check(self) -> None:
        """The root folder must be a writable folder (it vanishes with a lost mount)."""
        try:
            if not self.root.is_dir() or not os.access(self.root, os.W_OK | os.X_OK):
                raise OSError(errno.ENOENT, "the folder is missing or not writable")
            os.stat(self._tmp)
        except OSError as exc:
            raise self.unavailable(exc) from exc

    def path_of(self, key: str) -> Path:
        """The file holding ``key`` (for zero-copy serving); it may not exist."""
        return self._path(key)

    def _install(self, tmp: str, path: Path) -> None:
        """Rename a finished temp file to ``path``; retry if a delete pruned its folder."""
        for _ in range(5):
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.replace(tmp, path)
            except FileNotFoundError:
                if not os.path.exists(tmp):
                    raise
                continue  # the parent folder was removed by a concurrent delete()
            _fsync_dir(path.parent)
            return
        raise OSError(f"could not create folder {path.parent} to store {path.name}")

    def _new_temp(self, prefix: str) -> tuple[int, str]:
        return tempfile.mkstemp(dir=self._tmp, prefix=prefix)

    @_outages_are_unavailable
    def put(
        self, key: str, stream: BinaryIO, *, size: int | None = None, sha256: str | None = None
    ) -> None:
        """Write to a temp file while checking size/sha256, fsync, then rename into place."""
        path = self._path(key)
        check = DigestCheck(key, size=size, sha256=sha256)
        fd, tmp = self._new_temp("put-")
        try:
            with os.fdopen(fd, "wb") as out:
                while chunk := stream.read(_WRITE_CHUNK):
                    check.update(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            check.verify()
            self._install(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    def _open_file(self, key: str) -> BinaryIO:
        path = self._path(key)
        try:
            return open(path, "rb")  # noqa: SIM115 - closed by the caller / the generator
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise ObjectNotFound(key) from None

    @_outages_are_unavailable
    def open(self, key: str, *, chunk_size: int = DEFAULT_CHUNK_SIZE) -> Iterator[bytes]:
        """Stream the file; ObjectNotFound is raised before the first chunk is asked for."""
        if chunk_size <= 0:
            raise ValueError(f"chunk_size must be > 0, got {chunk_size}")
        return _iter_file(self._open_file(key), chunk_size)

    @_outages_are_unavailable
    def read_range(self, key: str, start: int, end: int) -> bytes:
        """Bytes ``[start, end)`` of the file, clipped to its size."""
        check_range(start, end)
        with self._open_file(key) as f:
            f.seek(start)
            return f.read(end - start)

    @_outages_are_unavailable
    def stat(self, key: str) -> ObjectInfo | None:
        """Size of the file; ``sha256`` is always None (the folder keeps no checksums)."""
        try:
            st = self._path(key).stat()
        except (FileNotFoundError, NotADirectoryError):
            return None
        if not S_ISREG(st.st_mode):
            return None
        return ObjectInfo(key=key, size=st.st_size, sha256=None)

    @_outages_are_unavailable
    def delete(self, key: str) -> None:
        """Unlink the file if present and prune folders it leaves empty."""
        path = self._path(key)
        try:
            path.unlink()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return
        for parent in path.parents:
            if parent == self.root or self.root not in parent.parents:
                break
            try:
                parent.rmdir()
            except OSError:
                break

    @_outages_are_unavailable
    def copy(self, src: str, dst: str) -> None:
        """Copy through a temp file and rename, so ``dst`` appears complete or not at all."""
        src_path, dst_path = self._path(src), self._path(dst)
        if not src_path.is_file():
            raise ObjectNotFound(src)
        if src_path == dst_path:
            return
        fd, tmp = self._new_temp("copy-")
        try:
            os.close(fd)
            shutil.copyfile(src_path, tmp)
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
            self._install(tmp, dst_path)
        except FileNotFoundError as exc:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            if not src_path.exists():
                raise ObjectNotFound(src) from exc
            raise
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    @_outages_are_unavailable
    def list(self, prefix: str) -> Iterator[tuple[str, int, datetime]]:
        """Walk the folder in key order, skipping the temp area."""
        folder, _, _ = prefix.rpartition("/")
        start = self._path(folder) if folder else self.root
        base = f"{folder}/" if folder else ""
        if start.is_dir():
            yield from _walk(start, base, prefix)

    def presign_get(self, key: str, *, expires_in: int, filename: str | None = None) -> str | None:
        """Always None: the API serves the bytes itself."""
        validate_key(key)
        return None

    def presign_put(
        self, key: str, *, expires_in: int, size: int, sha256: str | None = None
    ) -> PresignedPut | None:
        """Always None: the API receives the bytes itself."""
        validate_key(key)
        return None

    def create_multipart(self, key: str) -> str:
        """Not supported: raises NotImplementedError."""
        raise NotImplementedError(_NO_PRESIGN)

    def presign_part(
        self, key: str, upload_id: str, part_number: int, *, expires_in: int
    ) -> PresignedPart:
        """Not supported: raises NotImplementedError."""
        raise NotImplementedError(_NO_PRESIGN)

    def complete_multipart(
        self, key: str, upload_id: str, parts: builtins.list[tuple[int, str]]
    ) -> None:
        """Not supported: raises NotImplementedError."""
        raise NotImplementedError(_NO_PRESIGN)

    def abort_multipart(self, key: str, upload_id: str) -> None:
        """Not supported: raises NotImplementedError."""
        raise NotImplementedError(_NO_PRESIGN)


def _iter_file(f: BinaryIO, chunk_size: int) -> Iterator[bytes]:
    with f:
        while chunk := f.read(chunk_size):
            yield chunk


def _fsync_dir(path: Path) -> None:
    """Make a rename in ``path`` durable (best effort where folders cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _walk(folder: Path, base: str, prefix: str) -> Iterator[tuple[str, int, datetime]]:
    """Yield files under ``folder`` (whose keys start with ``base``) in key order.

    Sorting a folder's entries by ``name + "/"`` for sub-folders and ``name`` for files
    orders them exactly as their full keys compare as strings.
    """
    try:
        entries = list(os.scandir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return
    ordered = sorted(
        ((e.name + "/" if e.is_dir(follow_symlinks=False) else e.name), e) for e in entries
    )
    for name, entry in ordered:
        if entry.name.startswith("."):
            continue  # the temp area and anything else that cannot be a key
        key = base + name
        if name.endswith("/"):
            if key.startswith(prefix) or prefix.startswith(key):
                yield from _walk(Path(entry.path), key, prefix)
        elif key.startswith(prefix) and entry.is_file(follow_symlinks=False):
            try:
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue  # deleted while listing
            yield key, st.st_size, datetime.fromtimestamp(st.st_mtime, tz=UTC)
