"""Fast blob GETs with the standard library's ``http.client``.

httpx parses large bodies through h11 and copies every read; on a loopback S3
server that capped a 200 MiB download at ~250 MiB/s (bench/pull.py). Reading
straight into preallocated blocks with ``HTTPResponse.readinto`` is 3x faster.
This module is used only for the body of blob downloads (presigned or signed
URLs that need no credentials); every API call stays on httpx. It honours
redirects and falls back to httpx (``proxied``) when a proxy is configured.
"""

from __future__ import annotations

import http.client
import ssl
import urllib.parse
import urllib.request
from collections.abc import Iterator

from loreg._httpx import httpx
from loreg.http import USER_AGENT, raise_for_response

MAX_REDIRECTS = 5
_ERROR_BODY_LIMIT = 64 * 1024


def proxied(url: str) -> bool:
    """True when the environment routes ``url`` through a proxy (then use httpx)."""
    parts = urllib.parse.urlsplit(url)
    proxies = urllib.request.getproxies()
    if parts.scheme not in proxies and "all" not in proxies:
        return False
    return not urllib.request.proxy_bypass(parts.hostname or "")


def _connect(parts: urllib.parse.SplitResult, timeout: float) -> http.client.HTTPConnection:
    host = parts.hostname
    if host is None:
        raise ValueError(f"no host in {url_for_message(parts)}")
    if parts.scheme == "https":
        return http.client.HTTPSConnection(
            host, parts.port, timeout=timeout, context=ssl.create_default_context()
        )
    if parts.scheme == "http":
        return http.client.HTTPConnection(host, parts.port, timeout=timeout)
    raise ValueError(f"unsupported URL scheme in {url_for_message(parts)}")


def url_for_message(parts: urllib.parse.SplitResult) -> str:
    """A URL without its query string (which holds signatures)."""
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


def iter_blocks(url: str, *, timeout: float, block_size: int) -> Iterator[memoryview]:
    """GET ``url`` and yield its body as filled blocks of ``block_size`` (the last shorter).

    Each block is a fresh buffer, so consumers on other threads may keep it.
    Non-2xx answers raise the same typed errors as the API client; socket
    errors raise ``httpx.TransportError`` so callers retry them alike.
    """
    yield from open_blocks(url, timeout=timeout, block_size=block_size)


class BlockStream:
    """An answered GET whose body is read as blocks by iterating it (once).

    ``start`` is the offset of the first byte sent: the requested one when the
    server honoured ``Range`` (206), 0 when it sent the whole body (200).
    """

    def __init__(
        self,
        conn: http.client.HTTPConnection,
        resp: http.client.HTTPResponse,
        parts: urllib.parse.SplitResult,
        block_size: int,
        start: int,
    ):
        self._conn = conn
        self._resp = resp
        self._parts = parts
        self._block_size = block_size
        self.start = start

    def __iter__(self) -> Iterator[memoryview]:
        try:
            yield from _read_blocks(self._resp, self._parts, self._block_size)
        finally:
            self.close()

    def close(self) -> None:
        """Close the response and its connection."""
        self._resp.close()
        self._conn.close()


def content_range_start(value: str | None) -> int | None:
    """The first offset of a ``Content-Range: bytes S-E/T`` header, or None."""
    if not value or not value.startswith("bytes "):
        return None
    first = value[6:].split("-", 1)[0].strip()
    return int(first) if first.isdigit() else None


def open_blocks(url: str, *, timeout: float, block_size: int, start: int = 0) -> BlockStream:
    """Send the GET (``Range: bytes=start-`` when ``start`` > 0) and return its open body.

    Redirects are followed; errors raise as in :func:`iter_blocks`, at once.
    """
    for _ in range(MAX_REDIRECTS + 1):
        parts = urllib.parse.urlsplit(url)
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
        if start > 0:
            headers["Range"] = f"bytes={start}-"
        try:
            conn = _connect(parts, timeout)
            conn.request("GET", target, headers=headers)
            resp = conn.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            raise httpx.ConnectError(f"{url_for_message(parts)}: {exc}") from exc
        handed_over = False
        try:
            if resp.status in (301, 302, 303, 307, 308) and resp.getheader("Location"):
                url = urllib.parse.urljoin(url, resp.getheader("Location"))
                continue
            if resp.status >= 300:
                body = resp.read(_ERROR_BODY_LIMIT)
                request = httpx.Request("GET", url_for_message(parts))
                raise_for_response(
                    httpx.Response(
                        resp.status, content=body, headers=dict(resp.getheaders()), request=request
                    )
                )
            served = 0
            if resp.status == 206:
                first = content_range_start(resp.getheader("Content-Range"))
                if first is None:
                    raise httpx.RemoteProtocolError(
                        f"{url_for_message(parts)}: 206 answer without a valid Content-Range"
                    )
                served = first
            handed_over = True
            return BlockStream(conn, resp, parts, block_size, served)
        finally:
            if not handed_over:
                resp.close()
                conn.close()
    raise httpx.TooManyRedirects(
        f"more than {MAX_REDIRECTS} redirects for {url_for_message(parts)}"
    )


def _read_blocks(
    resp: http.client.HTTPResponse, parts: urllib.parse.SplitResult, block_size: int
) -> Iterator[memoryview]:
    declared = resp.getheader("Content-Length")
    expected = int(declared) if declared and declared.isdigit() else None
    total = 0
    while True:
        block = bytearray(block_size)
        view = memoryview(block)
        filled = 0
        try:
            while filled < block_size:
                n = resp.readinto(view[filled:])
                if not n:
                    break
                filled += n
        except (OSError, http.client.HTTPException) as exc:
            raise httpx.ReadError(f"{url_for_message(parts)}: {exc}") from exc
        total += filled
        if filled:
            yield view[:filled]
        if filled < block_size:
            # readinto() answers 0 on a connection closed early instead of raising
            if expected is not None and total < expected:
                raise httpx.ReadError(
                    f"{url_for_message(parts)}: connection closed after {total} of {expected} bytes"
                )
            return
