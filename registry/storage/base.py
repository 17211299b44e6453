"""The object store interface: where blob bytes live, whatever the backend.

Two implementations share this contract: :class:`registry.storage.local.LocalStore`
(a folder, embedded mode) and :class:`registry.storage.s3.S3Store` (any S3 endpoint).

Keys are ``/``-separated relative paths (see :func:`validate_key`). Blobs live under
:func:`blob_key`, bytes of an upload that is not committed yet under
:func:`staging_key`. Writes are atomic: a reader sees either no object or the whole
object, never a prefix of it.
"""

from __future__ import annotations

import builtins
import functools
import hashlib
import inspect
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, BinaryIO, TypeVar

from registry.errors import BlobMismatch, StoreUnavailable

MiB = 2**20
DEFAULT_CHUNK_SIZE = 8 * MiB
MAX_KEY_BYTES = 1024

_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_UPLOAD_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")


class StorageError(Exception):
    """Base class of the errors an object store raises on its own account."""


class ObjectNotFound(StorageError, LookupError):
    """The key names no object (or, for multipart calls, the upload id is unknown)."""

    def __init__(self, key: str, message: str | None = None):
        super().__init__(message or f"no object stored under key {key!r}")
        self.key = key


class InvalidKey(StorageError, ValueError):
    """A key (or a digest or upload id used to build one) breaks the key rules."""


class InvalidMultipart(StorageError, ValueError):
    """A multipart upload cannot be completed: parts missing, too small or with wrong ETags."""


def check_sha256_hex(sha256_hex: str) -> str:
    """Return ``sha256_hex`` if it is 64 lowercase hex digits, else raise :class:`InvalidKey`."""
    if not isinstance(sha256_hex, str) or not _SHA256_HEX.fullmatch(sha256_hex):
        raise InvalidKey(
            f"sha256 must be 64 lowercase hex digits, got {sha256_hex!r}; "
            "pass hashlib.sha256(data).hexdigest()"
        )
    return sha256_hex


def blob_key(sha256_hex: str) -> str:
    """The key of a content-addressed blob: ``blobs/sha256/<first two hex>/<full hex>``."""
    check_sha256_hex(sha256_hex)
    return f"blobs/sha256/{sha256_hex[:2]}/{sha256_hex}"


def staging_key(upload_id: str, sha256_hex: str) -> str:
    """Where the bytes of blob ``sha256_hex`` wait for upload ``upload_id`` to commit."""
    if not isinstance(upload_id, str) or not _UPLOAD_ID.fullmatch(upload_id):
        raise InvalidKey(f"upload id must be 1-128 characters of [A-Za-z0-9_-], got {upload_id!r}")
    check_sha256_hex(sha256_hex)
    return f"uploads/{upload_id}/{sha256_hex}"


def validate_key(key: str) -> str:
    """Return ``key`` if it is a safe relative object key, else raise :class:`InvalidKey`.

    A key is 1-1024 UTF-8 bytes of ``/``-separated segments; no segment is empty or
    starts with ``.`` (so no ``.``/``..``, and ``.tmp`` stays free for the local
    store's scratch space), and there are no backslashes or control characters. These
    rules keep every key inside the local store's root folder and make keys portable
    between backends.
    """
    if not isinstance(key, str) or not key:
        raise InvalidKey(f"an object key must be a non-empty string, got {key!r}")
    if len(key.encode("utf-8")) > MAX_KEY_BYTES:
        raise InvalidKey(f"object key is longer than {MAX_KEY_BYTES} bytes: {key[:64]!r}...")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in key) or "\\" in key:
        raise InvalidKey(f"object key {key!r} contains a control character or a backslash")
    for segment in key.split("/"):
        if not segment or segment.startswith("."):
            raise InvalidKey(
                f"object key {key!r} has an empty segment or one starting with '.'; "
                "use a relative path like 'blobs/sha256/ab/<hex>'"
            )
    return key


@dataclass(frozen=True)
class ObjectInfo:
    """What :meth:`ObjectStore.stat` knows about a stored object.

    ``sha256`` is the hex digest of the whole object only when the backend computed or
    verified a full-object SHA-256 itself; otherwise ``None`` and a caller that needs
    the digest must hash :meth:`ObjectStore.open`'s stream.
    """

    key: str
    size: int
    sha256: str | None = None


@dataclass(frozen=True)
class PresignedPut:
    """A URL for one HTTP PUT of a whole object, and the headers the client must send."""

    url: str
    headers: dict[str, str]


@dataclass(frozen=True)
class PresignedPart:
    """A URL for the HTTP PUT of one part of a multipart upload (its ETag is the receipt)."""

    part_number: int
    url: str


class ObjectStore(ABC):
    """A flat key -> bytes store with streaming, atomic writes and optional presigned URLs.

    Implementations are safe to share between threads. Every method that takes a key
    validates it with :func:`validate_key` and raises :class:`InvalidKey` first.
    """

    #: True when clients can move bytes directly with presigned URLs (``presign_*`` and
    #: the multipart calls work); False when the API must relay the bytes itself.
    supports_presigned_urls: bool = False

    def describe(self) -> str:
        """The store as an operator knows it (bucket and endpoint, or folder)."""
        return repr(self)

    def unavailable(self, exc: BaseException) -> StoreUnavailable:
        """The 503 error for an outage ``exc`` of this store, naming the store."""
        text = str(exc).strip()
        reason = text.splitlines()[0][:300] if text else ""
        return StoreUnavailable(
            f"the object store ({self.describe()}) is unavailable "
            f"({type(exc).__name__}{': ' + reason if reason else ''}); retry later"
        )

    @abstractmethod
    def check(self) -> None:
        """Raise :class:`registry.errors.StoreUnavailable` if the store cannot serve now.

        One cheap round trip, for health checks.
        """

    @abstractmethod
    def put(
        self, key: str, stream: BinaryIO, *, size: int | None = None, sha256: str | None = None
    ) -> None:
        """Store everything ``stream.read()`` yields under ``key``, replacing any object.

        Atomic: readers see the old object (or none) until the new one is complete. When
        ``size`` or ``sha256`` is given the bytes are checked while they stream and, on a
        mismatch, :class:`registry.errors.BlobMismatch` is raised and nothing is stored
        (an existing object stays as it was).
        """

    @abstractmethod
    def open(self, key: str, *, chunk_size: int = DEFAULT_CHUNK_SIZE) -> Iterator[bytes]:
        """Stream the object as chunks of at most ``chunk_size`` bytes.

        Raises :class:`ObjectNotFound` at call time (not at the first chunk). Close the
        iterator (or exhaust it) to release the file or connection.
        """

    @abstractmethod
    def read_range(self, key: str, start: int, end: int) -> bytes:
        """Bytes ``[start, end)`` of the object, clipped to its size (so possibly short).

        Raises :class:`ObjectNotFound`, or ``ValueError`` when ``0 <= start <= end`` fails.
        """

    @abstractmethod
    def stat(self, key: str) -> ObjectInfo | None:
        """Size (and, where the backend vouches for it, SHA-256) of the object; None if absent."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove the object; removing an absent object is not an error."""

    @abstractmethod
    def copy(self, src: str, dst: str) -> None:
        """Copy ``src`` to ``dst`` atomically, server-side where the backend can.

        Raises :class:`ObjectNotFound` when ``src`` is absent.
        """

    @abstractmethod
    def list(self, prefix: str) -> Iterator[tuple[str, int, datetime]]:
        """Yield ``(key, size, last_modified)`` of objects whose key starts with ``prefix``.

        ``prefix`` is a plain string prefix (``""`` lists everything), not validated as a
        key. ``last_modified`` is timezone-aware UTC. Order is by key.
        """

    @abstractmethod
    def presign_get(self, key: str, *, expires_in: int, filename: str | None = None) -> str | None:
        """A URL that GETs the object for ``expires_in`` seconds, or None without presigning.

        ``filename`` makes the response a download named so (Content-Disposition).
        """

    @abstractmethod
    def presign_put(
        self, key: str, *, expires_in: int, size: int, sha256: str | None = None
    ) -> PresignedPut | None:
        """A URL for one PUT of exactly ``size`` bytes, or None without presigning.

        With ``sha256``, the backend is asked to refuse bytes that do not hash to it
        (whether it does is backend-specific; check with :meth:`stat` before trusting).
        """

    @abstractmethod
    def create_multipart(self, key: str) -> str:
        """Start a multipart upload to ``key`` and return its upload id.

        Raises ``NotImplementedError`` when :attr:`supports_presigned_urls` is False.
        """

    @abstractmethod
    def presign_part(
        self, key: str, upload_id: str, part_number: int, *, expires_in: int
    ) -> PresignedPart:
        """A URL to PUT part ``part_number`` (1-10000) of a multipart upload.

        Raises ``NotImplementedError`` when :attr:`supports_presigned_urls` is False.
        """

    @abstractmethod
    def complete_multipart(
        self, key: str, upload_id: str, parts: builtins.list[tuple[int, str]]
    ) -> None:
        """Assemble the uploaded ``(part_number, etag)`` parts into the object, atomically.

        Raises :class:`InvalidMultipart` when parts are missing, too small or their ETags
        do not match, :class:`ObjectNotFound` when the upload id is unknown, and
        ``NotImplementedError`` when :attr:`supports_presigned_urls` is False.
        """

    @abstractmethod
    def abort_multipart(self, key: str, upload_id: str) -> None:
        """Discard a multipart upload and its parts; an unknown upload id is not an error.

        Raises ``NotImplementedError`` when :attr:`supports_presigned_urls` is False.
        """


_F = TypeVar("_F", bound=Callable[..., Any])


def outages_unavailable(is_outage: Callable[[BaseException], bool]) -> Callable[[_F], _F]:
    """A decorator for store methods: an error ``is_outage`` accepts is re-raised as the
    store's :meth:`ObjectStore.unavailable` (a 503 ``store_unavailable``).

    Generator methods are covered while they are iterated, not only when called.
    """

    def decorate(method: _F) -> _F:
        if inspect.isgeneratorfunction(method):

            @functools.wraps(method)
            def generator(self: ObjectStore, *args: Any, **kwargs: Any) -> Iterator[Any]:
                try:
                    yield from method(self, *args, **kwargs)
                except Exception as exc:
                    if is_outage(exc):
                        raise self.unavailable(exc) from exc
                    raise

            return generator  # type: ignore[return-value]

        @functools.wraps(method)
        def call(self: ObjectStore, *args: Any, **kwargs: Any) -> Any:
            try:
                return method(self, *args, **kwargs)
            except Exception as exc:
                if is_outage(exc):
                    raise self.unavailable(exc) from exc
                raise

        return call  # type: ignore[return-value]

    return decorate


def check_range(start: int, end: int) -> None:
    """Raise ``ValueError`` unless ``0 <= start <= end`` (the :meth:`read_range` contract)."""
    if not (isinstance(start, int) and isinstance(end, int)) or not 0 <= start <= end:
        raise ValueError(f"byte range must satisfy 0 <= start <= end, got [{start}, {end})")


def read_exact(stream: BinaryIO, n: int) -> bytes:
    """Read up to ``n`` bytes, looping over short reads; fewer only at end of stream."""
    chunks: list[bytes] = []
    remaining = n
    while remaining > 0:
        chunk = stream.read(remaining)
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


class DigestCheck:
    """Counts and hashes bytes as they stream by; :meth:`verify` compares with expectations."""

    def __init__(self, key: str, *, size: int | None = None, sha256: str | None = None):
        if sha256 is not None:
            check_sha256_hex(sha256)
        if size is not None and size < 0:
            raise ValueError(f"size must be >= 0, got {size}")
        self.key = key
        self.expected_size = size
        self.expected_sha256 = sha256
        self.size = 0
        self._hash = hashlib.sha256()

    def update(self, chunk: bytes) -> None:
        """Account for the next chunk; raise BlobMismatch as soon as the size is exceeded."""
        self.size += len(chunk)
        if self.expected_size is not None and self.size > self.expected_size:
            raise BlobMismatch(
                f"{self.key}: received more than the {self.expected_size} bytes declared"
            )
        self._hash.update(chunk)

    def digest(self) -> bytes:
        """The SHA-256 digest of everything seen so far."""
        return self._hash.digest()

    def verify(self) -> None:
        """Raise :class:`registry.errors.BlobMismatch` if size or digest differ from expected."""
        if self.expected_size is not None and self.size != self.expected_size:
            raise BlobMismatch(
                f"{self.key}: received {self.size} bytes but {self.expected_size} were declared"
            )
        actual = self._hash.hexdigest()
        if self.expected_sha256 is not None and actual != self.expected_sha256:
            raise BlobMismatch(
                f"{self.key}: the bytes hash to sha256 {actual}, "
                f"but {self.expected_sha256} was declared"
            )
