"""Blob transfers: parallel verified downloads into the cache, and the three upload methods.

Downloads: one streaming GET per blob (8 MiB blocks handed to a thread that
hashes and writes while the next bytes arrive), blobs in parallel, sha256 and
size checked before the atomic rename into the cache.

Uploads (``docs/http-api.md``, publish step 2): ``put`` (presigned PUT, then
``complete_url``), ``multipart`` (parts in parallel, ETags collected, then
``complete_url``) and ``api`` (PUT to the registry with the bearer token). Bodies
are streamed from disk; a multipart part is read from its own offset.

Relative URLs (``/v1/...``) and URLs on the registry's origin go through the
authenticated API client; other absolute URLs (S3 presigned) through a plain
client that never sends the token. Connection errors and 5xx are retried.
"""

from __future__ import annotations

import hashlib
import queue
import threading
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx

from loreg.cache import Cache, check_sha256
from loreg.constants import CHUNK_SIZE
from loreg.errors import IntegrityError, LoregError, ServerError
from loreg.fastget import iter_blocks, proxied
from loreg.http import USER_AGENT, ApiClient, raise_for_response, unreachable_error
from loreg.progress import Progress

T = TypeVar("T")
_QUEUE_BLOCKS = 3


class TransferCancelled(LoregError):
    """Raised inside workers once another transfer failed or the user interrupted."""


@dataclass(frozen=True)
class BlobTarget:
    """One blob to download: where from, and what it must be."""

    sha256: str
    size: int
    url: str
    label: str


def _retriable(exc: BaseException) -> bool:
    if isinstance(exc, httpx.TransportError):
        return True
    return isinstance(exc, ServerError) and exc.status is not None and exc.status >= 500


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
        self.backoff_s = backoff_s
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

    def close(self) -> None:
        """Close the plain client (the API client belongs to the caller)."""
        if self._plain is not None:
            self._plain.close()

    def _with_retries(
        self, what: str, url: str, attempt: Callable[[], T], cancel: threading.Event
    ) -> T:
        """Run ``attempt`` until it succeeds, retrying connection errors and 5xx."""
        for number in range(1, self.retries + 1):
            if cancel.is_set():
                raise TransferCancelled("transfer cancelled")
            try:
                return attempt()
            except Exception as exc:
                if not _retriable(exc) or number == self.retries:
                    if isinstance(exc, httpx.TransportError):
                        if self.api.owns(url):
                            raise unreachable_error(self.api.base_url, exc) from exc
                        host = httpx.URL(url).host
                        raise ServerError(
                            f"{what} failed after {number} attempt(s): cannot reach {host} ({exc})"
                        ) from exc
                    raise
                cancel.wait(min(self.backoff_s * 2 ** (number - 1), 8.0))
        raise AssertionError("unreachable")  # pragma: no cover

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
        tasks = [self._download_task(t, cache, progress) for t in unique.values()]
        self._run_all(tasks, concurrency)
        return list(unique)

    def _download_task(
        self, target: BlobTarget, cache: Cache, progress: Progress | None
    ) -> Callable[[threading.Event], None]:
        def task(cancel: threading.Event) -> None:
            self._with_retries(
                f"download of {target.label}",
                target.url,
                lambda: self._download_once(target, cache, progress, cancel),
                cancel,
            )

        return task

    def _download_once(
        self, target: BlobTarget, cache: Cache, progress: Progress | None, cancel: threading.Event
    ) -> None:
        """One attempt: stream to a temp file, verify, rename; the temp file never survives."""
        if cache.has_blob(target.sha256, target.size):
            return  # another process finished it meanwhile
        temp = cache.new_temp_path(target.sha256)
        counted = [0]

        def on_bytes(n: int) -> None:
            counted[0] += n
            if progress is not None:
                progress.update(n)

        try:
            if self._transport is None and not proxied(target.url):
                # the body path on the stdlib: ~3x httpx's throughput (see loreg.fastget)
                digest = write_verified(
                    iter_blocks(
                        target.url, timeout=self.timeout.read or 60.0, block_size=CHUNK_SIZE
                    ),
                    temp,
                    expected_size=target.size,
                    on_bytes=on_bytes,
                    cancel=cancel,
                    label=target.label,
                )
            else:
                client = self.client_for(target.url)
                headers = {"Accept-Encoding": "identity"}
                with client.stream(
                    "GET", target.url, headers=headers, timeout=self.timeout
                ) as resp:
                    raise_for_response(resp)
                    digest = write_verified(
                        resp.iter_bytes(),
                        temp,
                        expected_size=target.size,
                        on_bytes=on_bytes,
                        cancel=cancel,
                        label=target.label,
                    )
            if digest != target.sha256:
                raise IntegrityError(
                    f"{target.label}: downloaded bytes have sha256 {digest} but the registry "
                    f"announced {target.sha256}; nothing was kept. The stored blob may be "
                    "corrupt: tell the registry's operator"
                )
            cache.commit_blob(temp, target.sha256)
        except BaseException:
            if progress is not None and counted[0]:
                progress.update(-counted[0])
            raise
        finally:
            temp.unlink(missing_ok=True)

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
    chunks: Iterator[bytes],
    dest: Path,
    *,
    expected_size: int,
    on_bytes: Callable[[int], None] | None = None,
    cancel: threading.Event | None = None,
    label: str = "blob",
) -> str:
    """Write a byte stream to ``dest`` and return its sha256 hex.

    The network is read on the calling thread; 8 MiB blocks go to two threads,
    one hashing and one writing (both release the GIL), so receiving, hashing
    and writing all overlap. More or fewer bytes than ``expected_size`` raise
    :class:`IntegrityError`.
    """
    hasher = hashlib.sha256()
    failure: list[BaseException] = []
    fh = open(dest, "wb")  # noqa: SIM115 - closed below, after the writer thread ends
    hash_stage = _Stage("loreg-hash", hasher.update, failure)
    write_stage = _Stage("loreg-write", fh.write, failure)
    received = 0
    pending: list[bytes] = []
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

    def __init__(self, name: str, fn: Callable[[bytes], object], failure: list[BaseException]):
        self._fn = fn
        self._failure = failure
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=_QUEUE_BLOCKS)
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def put(self, block: bytes) -> None:
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
