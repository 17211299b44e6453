"""Blob transfers: parallel verified downloads into the cache, and the three upload methods.

Downloads: one streaming GET per blob (8 MiB blocks handed to a thread that
hashes and writes while the next bytes arrive), blobs in parallel, sha256 and
size checked before the atomic rename into the cache. A download writes to
the blob's resumable temp file; one killed midway is resumed with a ``Range``
request (and restarted from zero when the server sends the whole body, the
partial is too long, or the finished file's sha256 is wrong). A blob the store
answers 403/404/410 for raises :class:`FilesMissingError` naming the file and
version; a full disk raises :class:`DiskFullError` naming the cache folder.

Uploads (``docs/http-api.md``, publish step 2): ``put`` (presigned PUT, then
``complete_url``), ``multipart`` (parts in parallel, ETags collected, then
``complete_url``) and ``api`` (PUT to the registry with the bearer token). Bodies
are streamed from disk; a multipart part is read from its own offset.

Relative URLs (``/v1/...``) and URLs on the registry's origin go through the
authenticated API client; other absolute URLs (S3 presigned) through a plain
client that never sends the token. Connection errors and 5xx are retried
(``LOREG_RETRIES`` attempts), 503s until ``LOREG_RETRY_MAX_S`` (see loreg.retry).
"""

from __future__ import annotations

import contextlib
import hashlib
import queue
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from loreg._httpx import httpx
from loreg.cache import Cache, Partial, check_sha256, disk_full_error, is_disk_full
from loreg.constants import CHUNK_SIZE, retry_max_s
from loreg.errors import (
    DiskFullError,
    FilesMissingError,
    IntegrityError,
    LoregError,
    RequestError,
    ServerError,
)
from loreg.fastget import content_range_start, open_blocks, proxied
from loreg.http import (
    USER_AGENT,
    ApiClient,
    classify_failure,
    raise_for_response,
    unreachable_error,
)
from loreg.progress import Progress
from loreg.retry import Kind, RetryPolicy

T = TypeVar("T")
_QUEUE_BLOCKS = 3

#: A piece of a body: bytes from httpx, or a memoryview block from ``loreg.fastget``.
Chunk = bytes | memoryview


class TransferCancelled(LoregError):
    """Raised inside workers once another transfer failed or the user interrupted."""


@dataclass(frozen=True)
class BlobTarget:
    """One blob to download: where from, and what it must be."""

    sha256: str
    size: int
    url: str
    label: str
    #: The version (or base model) the file belongs to, for messages.
    owner: str = ""


class _RestartFromZero(Exception):
    """A resumed download cannot continue where the partial file ends."""


def _classify(exc: BaseException) -> Kind:
    """Transfers are idempotent (GET, PUT, repeatable completes): retry as a GET."""
    return classify_failure(exc, "GET")


class Transfers:
    """Runs downloads and uploads for one registry.

    ``api`` is the registry's :class:`ApiClient`; ``transport`` (tests) replaces
    the network of the plain client used for presigned URLs too.
    """

    def __init__(
        self,
        api: ApiClient,
        *,
        timeout: httpx.Timeout,
        retries: int = 3,
        backoff_s: float = 0.5,
        transport: httpx.BaseTransport | None = None,
    ):
        self.api = api
        self.timeout = timeout
        self.retries = max(1, retries)
        self.policy = RetryPolicy(attempts=self.retries, budget_s=retry_max_s(), base_s=backoff_s)
        self._plain: httpx.Client | None = None
        self._transport = transport
        self._plain_lock = threading.Lock()

    # ------------------------------------------------------------- plumbing
    def client_for(self, url: str) -> httpx.Client:
        """The authenticated registry client for registry URLs, a plain one otherwise."""
        if self.api.owns(url):
            return self.api.http
        with self._plain_lock:
            if self._plain is None:
                self._plain = httpx.Client(
                    timeout=self.timeout,
                    transport=self._transport,
                    headers={"User-Agent": USER_AGENT},
                    follow_redirects=True,
                )
            return self._plain

    @property
    def backoff_s(self) -> float:
        """First wait between two attempts (doubles each time, with jitter)."""
        return self.policy.base_s

    @backoff_s.setter
    def backoff_s(self, value: float) -> None:
        self.policy.base_s = value

    def close(self) -> None:
        """Close the plain client (the API client belongs to the caller)."""
        if self._plain is not None:
            self._plain.close()

    def _with_retries(
        self, what: str, url: str, attempt: Callable[[], T], cancel: threading.Event
    ) -> T:
        """Run ``attempt`` until it succeeds, retrying as :mod:`loreg.retry` says."""
        tries = [0]

        def once() -> T:
            if cancel.is_set():
                raise TransferCancelled("transfer cancelled")
            tries[0] += 1
            return attempt()

        try:
            return self.policy.run(once, _classify, sleep=cancel.wait)
        except httpx.TransportError as exc:
            if self.api.owns(url):
                raise unreachable_error(self.api.base_url, exc) from exc
            host = httpx.URL(url).host
            raise ServerError(
                f"{what} failed after {tries[0]} attempt(s): cannot reach {host} ({exc})"
            ) from exc

    def _run_all(self, tasks: list[Callable[[threading.Event], T]], concurrency: int) -> list[T]:
        """Run tasks in a thread pool; the first failure cancels the rest and is raised.

        Each task gets the batch's cancel event and stops at its next block once it
        is set (another task failed, or the caller was interrupted).
        """
        if not tasks:
            return []
        cancel = threading.Event()
        pool = ThreadPoolExecutor(max_workers=max(1, min(concurrency, len(tasks))))
        try:
            futures: list[Future[T]] = [pool.submit(task, cancel) for task in tasks]
            wait(futures, return_when=FIRST_EXCEPTION)
            if any(f.done() and f.exception() is not None for f in futures):
                cancel.set()
                wait(futures)
                errors = [e for f in futures if (e := f.exception()) is not None]
                real = [e for e in errors if not isinstance(e, TransferCancelled)]
                raise (real or errors)[0]
            results = [f.result() for f in futures]
        except BaseException:
            cancel.set()
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        pool.shutdown(wait=True)
        return results

    # ------------------------------------------------------------ downloads
    def download(
        self,
        targets: list[BlobTarget],
        cache: Cache,
        *,
        concurrency: int,
        progress: Progress | None = None,
    ) -> list[str]:
        """Download every target not already cached; returns the sha256s fetched."""
        unique: dict[str, BlobTarget] = {}
        for target in targets:
            check_sha256(target.sha256)
            if not cache.has_blob(target.sha256, target.size):
                unique.setdefault(target.sha256, target)
        needed = sum(t.size for t in unique.values())
        tasks = [self._download_task(t, cache, progress, needed) for t in unique.values()]
        try:
            self._run_all(tasks, concurrency)
        except DiskFullError:
            for sha in unique:  # the disk is full: keep no partial file for later
                with contextlib.suppress(OSError):
                    cache.drop_partial(sha)
            raise
        return list(unique)

    def _download_task(
        self, target: BlobTarget, cache: Cache, progress: Progress | None, needed: int
    ) -> Callable[[threading.Event], None]:
        def task(cancel: threading.Event) -> None:
            try:
                self._with_retries(
                    f"download of {target.label}",
                    target.url,
                    lambda: self._download_once(target, cache, progress, cancel),
                    cancel,
                )
            except OSError as exc:
                if is_disk_full(exc):
                    raise disk_full_error(cache.root, needed) from exc
                raise
            except (RequestError, FilesMissingError) as exc:
                raise _missing_error(target, exc, from_registry=self.api.owns(target.url)) from exc

        return task

    def _download_once(
        self, target: BlobTarget, cache: Cache, progress: Progress | None, cancel: threading.Event
    ) -> None:
        """One attempt: resume or start the blob's temp file, verify it, rename it into place.

        The temp file survives a failed transfer (connection lost, Ctrl-C) for the
        next attempt to resume; a wrong or oversized one, or a full disk, drops it.
        """
        if cache.has_blob(target.sha256, target.size):
            return  # another process finished it meanwhile
        counted = [0]

        def on_bytes(n: int) -> None:
            counted[0] += n
            if progress is not None:
                progress.update(n)

        try:
            with cache.claim_partial(target.sha256) as partial:
                self._fetch_verified(target, cache, partial, on_bytes, cancel)
        except BaseException:
            if progress is not None and counted[0]:
                progress.update(-counted[0])
            raise

    def _fetch_verified(
        self,
        target: BlobTarget,
        cache: Cache,
        partial: Partial,
        on_bytes: Callable[[int], None],
        cancel: threading.Event,
    ) -> None:
        for from_zero in (False, True):
            offset = 0 if from_zero else _usable_prefix(partial, target.size)
            try:
                digest = self._fetch(target, partial.path, offset, on_bytes, cancel)
            except _RestartFromZero:
                partial.discard()
                continue
            except IntegrityError:
                partial.discard()
                if offset and not from_zero:
                    continue
                raise
            except OSError as exc:
                if is_disk_full(exc):
                    partial.path.unlink(missing_ok=True)  # free the space; we stop here
                raise
            if digest == target.sha256:
                cache.commit_blob(partial.path, target.sha256)
                return
            partial.discard()
            if offset and not from_zero:
                continue  # the kept prefix was wrong: once more, from zero
            raise IntegrityError(
                f"{target.label}: downloaded bytes have sha256 {digest} but the registry "
                f"announced {target.sha256}; nothing was kept. The stored blob may be "
                "corrupt: tell the registry's operator"
            )

    def _fetch(
        self,
        target: BlobTarget,
        path: Path,
        offset: int,
        on_bytes: Callable[[int], None],
        cancel: threading.Event,
    ) -> str:
        """GET the blob from ``offset`` (the bytes before it are on disk) into ``path``."""
        hasher = hashlib.sha256()
        if offset:
            _hash_prefix(path, offset, hasher)
            on_bytes(offset)
            if offset == target.size:
                return hasher.hexdigest()
        with contextlib.ExitStack() as stack:
            try:
                served, chunks = self._open(target.url, offset, stack)
            except RequestError as exc:
                if offset and exc.status == 416:
                    raise _RestartFromZero() from exc
                raise
            if served != offset:
                if served != 0:
                    raise _RestartFromZero()
                on_bytes(-offset)  # the server sends everything: start over cleanly
                offset, hasher = 0, hashlib.sha256()
            return write_verified(
                chunks,
                path,
                expected_size=target.size,
                on_bytes=on_bytes,
                cancel=cancel,
                label=target.label,
                offset=offset,
                hasher=hasher,
            )

    def _open(
        self, url: str, offset: int, stack: contextlib.ExitStack
    ) -> tuple[int, Iterable[Chunk]]:
        """Start the GET; returns (offset of the first byte sent, body chunks)."""
        if self._transport is None and not proxied(url):
            # the body path on the stdlib: ~3x httpx's throughput (see loreg.fastget)
            stream = open_blocks(
                url, timeout=self.timeout.read or 60.0, block_size=CHUNK_SIZE, start=offset
            )
            stack.callback(stream.close)
            return stream.start, stream
        headers = {"Accept-Encoding": "identity"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
        client = self.client_for(url)
        resp = stack.enter_context(client.stream("GET", url, headers=headers, timeout=self.timeout))
        raise_for_response(resp)
        served = 0
        if resp.status_code == 206:
            start = content_range_start(resp.headers.get("Content-Range"))
            if start is None:
                raise httpx.RemoteProtocolError("206 answer without a valid Content-Range")
            served = start
        return served, resp.iter_bytes()

    # -------------------------------------------------------------- uploads
    def upload(
        self,
        blobs: list[Mapping[str, Any]],
        sources: Mapping[str, Path],
        *,
        concurrency: int,
        progress: Progress | None = None,
    ) -> list[str]:
        """Send every blob whose ``present`` is false, per its ``upload`` method.

        ``blobs`` is the ``blobs`` list of ``POST /v1/uploads``; ``sources`` maps
        sha256 to a local file. Returns the sha256s sent.
        """
        tasks: list[Callable[[threading.Event], Any]] = []
        multipart: list[tuple[Mapping[str, Any], Path, int, int]] = []
        sent: list[str] = []
        for blob in blobs:
            if blob.get("present"):
                continue
            sha = check_sha256(blob.get("sha256"))
            path = sources.get(sha)
            if path is None:
                raise ServerError(f"the registry asked for blob {sha}, which is not in this push")
            size = int(blob.get("size", path.stat().st_size))
            spec = blob.get("upload") or {}
            method = spec.get("method")
            sent.append(sha)
            if method in ("put", "api"):
                tasks.append(self._put_task(spec, path, size, progress))
            elif method == "multipart":
                first = len(tasks)
                tasks.extend(self._part_tasks(spec, path, size, progress))
                multipart.append((spec, path, first, len(tasks)))
            else:
                raise ServerError(f"the registry asked for an unknown upload method {method!r}")
        results = self._run_all(tasks, concurrency)
        for spec, _path, first, last in multipart:
            parts = sorted(results[first:last], key=lambda p: p["part_number"])
            self._complete(spec, {"parts": parts}, threading.Event())
        return sent

    def _put_task(
        self,
        spec: Mapping[str, Any],
        path: Path,
        size: int,
        progress: Progress | None,
    ) -> Callable[[threading.Event], None]:
        url = _require(spec, "url")
        headers = {str(k): str(v) for k, v in (spec.get("headers") or {}).items()}

        def task(cancel: threading.Event) -> None:
            self._with_retries(
                f"upload of {path.name}",
                url,
                lambda: self._send_range(url, headers, path, 0, size, progress, cancel),
                cancel,
            )
            self._complete(spec, {}, cancel)  # ``put``; ``api`` has no complete_url

        return task

    def _part_tasks(
        self, spec: Mapping[str, Any], path: Path, size: int, progress: Progress | None
    ) -> list[Callable[[threading.Event], dict[str, Any]]]:
        part_size = int(_require(spec, "part_size"))
        parts = sorted(spec.get("parts") or [], key=lambda p: int(p["part_number"]))
        expected = max(1, -(-size // part_size)) if part_size > 0 else -1
        if len(parts) != expected:
            raise ServerError(
                f"the registry sent {len(parts)} multipart URLs of {part_size} bytes for "
                f"{path.name} ({size} bytes); expected {expected}"
            )
        tasks = []
        for part in parts:
            number = int(part["part_number"])
            offset = (number - 1) * part_size
            length = max(0, min(part_size, size - offset))
            tasks.append(self._part_task(part["url"], number, path, offset, length, progress))
        return tasks

    def _part_task(
        self, url: str, number: int, path: Path, offset: int, length: int, progress: Progress | None
    ) -> Callable[[threading.Event], dict[str, Any]]:
        def task(cancel: threading.Event) -> dict[str, Any]:
            response = self._with_retries(
                f"upload of {path.name} part {number}",
                url,
                lambda: self._send_range(url, {}, path, offset, length, progress, cancel),
                cancel,
            )
            etag = response.headers.get("ETag")
            if not etag:
                raise ServerError(f"the object store sent no ETag for part {number} of {path.name}")
            return {"part_number": number, "etag": etag}

        return task

    def _send_range(
        self,
        url: str,
        headers: Mapping[str, str],
        path: Path,
        offset: int,
        length: int,
        progress: Progress | None,
        cancel: threading.Event,
    ) -> httpx.Response:
        """PUT ``length`` bytes of ``path`` from ``offset``, streamed; undo progress on failure."""
        counted = [0]

        def on_bytes(n: int) -> None:
            counted[0] += n
            if progress is not None:
                progress.update(n)

        body = read_range(path, offset, length, on_bytes=on_bytes, cancel=cancel)
        all_headers = {**headers, "Content-Length": str(length)}
        try:
            response = self.client_for(url).put(
                url, content=body, headers=all_headers, timeout=self.timeout
            )
            return raise_for_response(response)
        except BaseException:
            if progress is not None and counted[0]:
                progress.update(-counted[0])
            raise

    def _complete(
        self, spec: Mapping[str, Any], body: dict[str, Any], cancel: threading.Event
    ) -> None:
        url = spec.get("complete_url")
        if not url:
            return
        client = self.client_for(url)
        self._with_retries(
            "upload completion",
            url,
            lambda: raise_for_response(client.post(url, json=body, timeout=self.timeout)),
            cancel,
        )


def write_verified(
    chunks: Iterable[Chunk],
    dest: Path,
    *,
    expected_size: int,
    on_bytes: Callable[[int], None] | None = None,
    cancel: threading.Event | None = None,
    label: str = "blob",
    offset: int = 0,
    hasher: Any = None,
) -> str:
    """Write a byte stream to ``dest`` and return its sha256 hex.

    The network is read on the calling thread; 8 MiB blocks go to two threads,
    one hashing and one writing (both release the GIL), so receiving, hashing
    and writing all overlap. More or fewer bytes than ``expected_size`` raise
    :class:`IntegrityError`. With ``offset`` > 0 the stream continues a file
    whose first ``offset`` bytes are already in ``dest`` and fed to ``hasher``.
    When the stream fails midway, the bytes received so far stay written (so a
    later attempt can resume).
    """
    hasher = hasher if hasher is not None else hashlib.sha256()
    failure: list[BaseException] = []
    fh = open(dest, "r+b" if offset else "wb")  # noqa: SIM115 - closed below
    if offset:
        fh.seek(offset)
        fh.truncate()
    hash_stage = _Stage("loreg-hash", hasher.update, failure)
    write_stage = _Stage("loreg-write", fh.write, failure)
    received = offset
    pending: list[Chunk] = []
    pending_len = 0
    try:
        for chunk in chunks:
            if cancel is not None and cancel.is_set():
                raise TransferCancelled("transfer cancelled")
            if failure:
                break
            received += len(chunk)
            if received > expected_size:
                raise IntegrityError(
                    f"{label}: the server sent more than the announced {expected_size} bytes"
                )
            pending.append(chunk)
            pending_len += len(chunk)
            if pending_len >= CHUNK_SIZE:
                block = pending[0] if len(pending) == 1 else b"".join(pending)
                hash_stage.put(block)
                write_stage.put(block)
                pending, pending_len = [], 0
            if on_bytes is not None:
                on_bytes(len(chunk))
        if pending and not failure:
            block = b"".join(pending)
            hash_stage.put(block)
            write_stage.put(block)
            pending = []
    except (httpx.TransportError, TransferCancelled, KeyboardInterrupt):
        if pending and not failure:  # keep what arrived, for a resume
            write_stage.put(b"".join(pending))
        raise
    finally:
        hash_stage.finish()
        write_stage.finish()
        fh.close()
    if failure:
        raise failure[0]
    if received != expected_size:
        raise IntegrityError(
            f"{label}: received {received} bytes but the registry announced {expected_size}"
        )
    return hasher.hexdigest()


class _Stage:
    """A thread applying ``fn`` to each block put on its small queue, in order.

    After an error it records it in ``failure`` and drains the queue, so the
    producer never blocks on a dead consumer.
    """

    def __init__(self, name: str, fn: Callable[[Chunk], object], failure: list[BaseException]):
        self._fn = fn
        self._failure = failure
        self._queue: queue.Queue[Chunk | None] = queue.Queue(maxsize=_QUEUE_BLOCKS)
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def put(self, block: Chunk) -> None:
        self._queue.put(block)

    def finish(self) -> None:
        self._queue.put(None)
        self._thread.join()

    def _run(self) -> None:
        failed = False
        while (block := self._queue.get()) is not None:
            if failed:
                continue
            try:
                self._fn(block)
            except BaseException as exc:  # disk full, permissions: reported by the producer
                self._failure.append(exc)
                failed = True


def _usable_prefix(partial: Partial, size: int) -> int:
    """Bytes of a resumable partial file worth keeping (0: start over, file emptied)."""
    if not partial.resumable:
        return 0
    try:
        have = partial.path.stat().st_size
    except FileNotFoundError:
        return 0
    if have > size:
        with open(partial.path, "r+b") as fh:
            fh.truncate(0)
        return 0
    return have


def _hash_prefix(path: Path, length: int, hasher: Any) -> None:
    """Feed the first ``length`` bytes of ``path`` to ``hasher``."""
    with open(path, "rb") as fh:
        left = length
        while left > 0:
            block = fh.read(min(CHUNK_SIZE, left))
            if not block:
                raise IntegrityError(f"{path} shrank while it was being resumed")
            hasher.update(block)
            left -= len(block)


def _missing_error(target: BlobTarget, exc: LoregError, *, from_registry: bool) -> LoregError:
    """A 403/404/410 for a blob the registry lists: name the file and version, not the XML.

    Object stores answer 403 for a missing key when the reader may not list the
    bucket, so 403 is reported alike. The store's own message is left out (only
    its code); the registry's (local store) message is kept.
    """
    if isinstance(exc, FilesMissingError) or exc.status not in (403, 404, 410):
        return exc
    owner = f" of {target.owner}" if target.owner else ""
    detail = f"HTTP {exc.status}" + (f" {exc.code}" if exc.code else "")
    if from_registry:
        detail += f": {exc.message}"
    refused = " or refused by it" if exc.status == 403 else ""
    return FilesMissingError(
        f"file {target.label!r}{owner} is missing from the registry's object store{refused} "
        f"({detail}); the registry still lists it: ask its operator to check the store "
        "(loreg fsck) and push the version's files again",
        missing=[target.label],
        status=exc.status,
    )


def read_range(
    path: Path,
    offset: int,
    length: int,
    *,
    on_bytes: Callable[[int], None] | None = None,
    cancel: threading.Event | None = None,
) -> Iterator[bytes]:
    """Yield ``length`` bytes of ``path`` from ``offset`` in 8 MiB blocks (never all at once)."""
    with open(path, "rb") as fh:
        fh.seek(offset)
        left = length
        while left > 0:
            if cancel is not None and cancel.is_set():
                raise TransferCancelled("transfer cancelled")
            block = fh.read(min(CHUNK_SIZE, left))
            if not block:
                raise LoregError(f"{path} shrank while it was being uploaded: push it again")
            left -= len(block)
            if on_bytes is not None:
                on_bytes(len(block))
            yield block


def _require(spec: Mapping[str, Any], key: str) -> Any:
    value = spec.get(key)
    if value in (None, ""):
        raise ServerError(f"the registry's upload instructions lack {key!r}")
    return value
