"""HTTP access to the registry API, and the mapping of error answers to loreg errors.

One :class:`ApiClient` wraps one ``httpx.Client`` (keep-alive connections are
reused across calls and threads). Every non-2xx answer becomes a typed
:mod:`loreg.errors` exception carrying the registry's message; a registry that
cannot be reached becomes a :class:`~loreg.errors.ServerError` that says how
to fix it.
"""

from __future__ import annotations

import email.utils
import json
import re
import ssl
import time
import urllib.request
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, urlsplit

from loreg._httpx import httpx
from loreg._version import __version__
from loreg.constants import (
    ENV_URL,
    api_timeout,
    connect_timeout,
    retry_max_s,
    transfer_retries,
)
from loreg.errors import (
    AuthenticationError,
    BrokerUnavailableError,
    ConflictError,
    DatabaseUnavailableError,
    FilesMissingError,
    LoregError,
    NotFoundError,
    PermissionDeniedError,
    RequestError,
    ServerError,
    ServiceUnavailableError,
    StoreUnavailableError,
    ValidationFailedError,
)
from loreg.retry import Kind, RetryPolicy

USER_AGENT = f"loreg/{__version__}"

_STATUS_CLASSES: dict[int, type[LoregError]] = {
    400: ValidationFailedError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    413: ValidationFailedError,
    422: ValidationFailedError,
}


_UNAVAILABLE_CLASSES: dict[str, type[ServiceUnavailableError]] = {
    "database_unavailable": DatabaseUnavailableError,
    "store_unavailable": StoreUnavailableError,
    "broker_unavailable": BrokerUnavailableError,
}
#: Methods a repeated request cannot do twice (RFC 9110 idempotent methods).
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
_XML_FIELD = re.compile(r"<(Code|Message)>([^<]{0,300})</\1>")


def error_class_for_status(status: int) -> type[LoregError]:
    """The loreg error class for an HTTP error status."""
    if status >= 500:
        return ServerError
    return _STATUS_CLASSES.get(status, RequestError)


def error_from_response(response: httpx.Response) -> LoregError:
    """Build the typed error for a non-2xx answer.

    The registry answers ``{"error": {"code", "message", "details"?}}``; other
    bodies (a proxy's HTML page, plain text, nothing) still give a message
    naming the status and the URL.
    """
    status = response.status_code
    code: str | None = None
    message: str | None = None
    details: Any = None
    try:
        body = response.json()
    except (ValueError, UnicodeDecodeError):
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        payload = body["error"]
        code = payload.get("code") if isinstance(payload.get("code"), str) else None
        if isinstance(payload.get("message"), str) and payload["message"].strip():
            message = payload["message"].strip()
        details = payload.get("details")
    elif isinstance(body, dict) and "detail" in body:
        # A bare framework answer (e.g. an unrouted path): keep its text.
        detail = body["detail"]
        message = _one_line(detail if isinstance(detail, str) else json.dumps(detail))
    if message is None:
        text = _safe_text(response)
        xml = dict(_XML_FIELD.findall(text)) if text.lstrip().startswith("<") else {}
        if xml:  # an object store's XML error: keep its code and message, not the markup
            code = code or xml.get("Code")
            text = ": ".join(v.strip() for v in (xml.get("Code"), xml.get("Message")) if v)
        text = _one_line(text)
        reason = response.reason_phrase or "error"
        where = _describe_url(response.request.url) if _has_request(response) else "the registry"
        message = f"HTTP {status} {reason} from {where}" + (f": {text}" if text else "")
    retry_after = parse_retry_after(response.headers.get("Retry-After"))
    error: LoregError
    if status == 503 and code in _UNAVAILABLE_CLASSES:
        cls = _UNAVAILABLE_CLASSES[code]
        message = f"the registry's {cls.dependency} is unavailable (503 {code}): {message}"
        error = cls(message, code=code, retry_after=retry_after)
    elif status == 409 and code == "files_missing":
        missing = details.get("missing") if isinstance(details, dict) else None
        paths = [p for p in missing if isinstance(p, str)] if isinstance(missing, list) else []
        error = FilesMissingError(message, missing=paths, status=status)
    else:
        error = error_class_for_status(status)(message, code=code, status=status)
    error.details = details
    error.retry_after = retry_after
    return error


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta seconds or an HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - time.time())


def classify_failure(exc: BaseException, method: str) -> Kind:
    """How a failed request may be retried: ``"outage"``, ``"glitch"`` or not (None).

    503 answers are outages, retried for any method except a POST that reports
    the broker down (its database row may already exist). Other 5xx and
    connection errors are glitches, retried for idempotent methods; a POST only
    when the connection was never made.
    """
    safe = method.upper() in IDEMPOTENT_METHODS
    if isinstance(exc, ServiceUnavailableError):
        return "outage" if safe or not isinstance(exc, BrokerUnavailableError) else None
    if isinstance(exc, ServerError) and exc.status == 503:
        return "outage" if safe else None
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
        return "glitch"
    if isinstance(exc, httpx.TransportError):
        return "glitch" if safe else None
    if isinstance(exc, ServerError) and exc.status is not None and exc.status >= 500:
        return "glitch" if safe else None
    return None


def default_retry_policy() -> RetryPolicy:
    """The policy of ``LOREG_RETRIES`` attempts within ``LOREG_RETRY_MAX_S`` seconds."""
    return RetryPolicy(attempts=transfer_retries(), budget_s=retry_max_s())


def raise_for_response(response: httpx.Response) -> httpx.Response:
    """Return ``response`` if it is 2xx, else raise its typed error."""
    if response.is_success:
        return response
    if not response.is_stream_consumed:
        response.read()
    raise error_from_response(response)


def unreachable_error(base_url: str, exc: Exception) -> ServerError:
    """The error for a registry that does not answer at all."""
    if isinstance(exc, httpx.TimeoutException):
        return ServerError(
            f"the registry at {base_url} did not answer in time ({type(exc).__name__}): "
            "is it overloaded? Raise LOREG_TIMEOUT or retry later"
        )
    reason = _one_line(str(exc)) or type(exc).__name__
    return ServerError(
        f"cannot reach the registry at {base_url} ({reason}): is `loreg serve` running? "
        f"Set {ENV_URL} (or --url) to its address, or LOREG_OFFLINE=1 to use the local cache"
    )


def default_timeout(read: float | None = None) -> httpx.Timeout:
    """Timeout of ``read`` seconds (default ``LOREG_TIMEOUT``) plus the connect timeout."""
    return httpx.Timeout(read if read is not None else api_timeout(), connect=connect_timeout())


def tls_verify_for(base_url: str) -> ssl.SSLContext | bool:
    """The ``verify`` argument for the API client of ``base_url``.

    True (httpx loads the CA bundle) for https registries and whenever a proxy
    is configured. An ``http://`` registry without a proxy is only ever spoken
    to in cleartext (the client follows no redirects and is handed only that
    origin's URLs), so loading the bundle, about 20 ms and most of the cost of
    ``Registry()``, buys nothing: its client gets a TLS context that still
    verifies certificates and hostnames but trusts no CA, so any TLS it were
    asked to do fails closed.
    """
    if urlsplit(base_url).scheme != "http" or urllib.request.getproxies():
        return True
    return ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)


class ApiClient:
    """JSON client of the registry API on one reused ``httpx.Client``.

    ``base_url`` is the registry root (``http://host:port``); paths passed to the
    methods start with ``/v1/``. The token, when given, is sent as
    ``Authorization: Bearer``. ``transport`` replaces the network (tests use
    ``httpx.MockTransport``).
    """

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        *,
        timeout: float | httpx.Timeout | None = None,
        transport: httpx.BaseTransport | None = None,
        retry: RetryPolicy | None = None,
    ):
        self.base_url = base_url.rstrip("/")
        self.retry = retry if retry is not None else default_retry_policy()
        parts = urlsplit(self.base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValidationFailedError(
                f"registry URL {base_url!r} is not an http(s) URL: "
                f"set {ENV_URL} (or --url) to e.g. http://127.0.0.1:8080"
            )
        self.token = token
        headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if not isinstance(timeout, httpx.Timeout):
            timeout = default_timeout(timeout)
        self._http = httpx.Client(
            base_url=self.base_url,
            headers=headers,
            timeout=timeout,
            transport=transport,
            follow_redirects=False,
            verify=tls_verify_for(self.base_url),
        )

    @property
    def http(self) -> httpx.Client:
        """The underlying ``httpx.Client`` (authenticated, based at the registry URL)."""
        return self._http

    def owns(self, url: str) -> bool:
        """True when ``url`` is relative or points at this registry (so it gets the token)."""
        parts = urlsplit(url)
        if not parts.scheme:
            return True
        base = urlsplit(self.base_url)
        return (parts.scheme, parts.netloc) == (base.scheme, base.netloc)

    def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        params: dict[str, Any] | None = None,
        content: Any = None,
        headers: dict[str, str] | None = None,
        timeout: httpx.Timeout | None = None,
    ) -> httpx.Response:
        """Send one request and return the 2xx answer; raise the typed error otherwise.

        503 answers and connection errors are retried per :attr:`retry` (see
        :func:`classify_failure` for which are safe); a streamed ``content`` is
        sent once.
        """
        kwargs: dict[str, Any] = {"params": params, "headers": headers}
        if json_body is not None:
            kwargs["json"] = json_body
        if content is not None:
            kwargs["content"] = content
        if timeout is not None:
            kwargs["timeout"] = timeout
        replayable = content is None or isinstance(content, bytes | str)

        def attempt() -> httpx.Response:
            return raise_for_response(self._http.request(method, path, **kwargs))

        def classify(exc: BaseException) -> Kind:
            return classify_failure(exc, method) if replayable else None

        try:
            return self.retry.run(attempt, classify)
        except httpx.TransportError as exc:
            raise unreachable_error(self.base_url, exc) from exc

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        """Send one request and decode its JSON answer."""
        return self._decoded(self.request(method, path, **kwargs), method, path)

    def get_with_headers(self, path: str) -> tuple[Any, httpx.Headers]:
        """``GET path``: the decoded JSON and the answer's headers (resolve's warnings)."""
        response = self.request("GET", path)
        return self._decoded(response, "GET", path), response.headers

    def _decoded(self, response: httpx.Response, method: str, path: str) -> Any:
        """The JSON of a 2xx answer (None when empty); ServerError when it is not JSON."""
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError as exc:
            raise ServerError(
                f"the registry at {self.base_url} answered {method} {path} with a body that "
                "is not JSON: is LOREG_URL pointing at a loreg registry?",
                status=response.status_code,
            ) from exc

    def get(self, path: str, *, params: dict[str, Any] | None = None) -> Any:
        """``GET path`` and return the decoded JSON."""
        return self.call("GET", path, params=params)

    def pages(
        self, path: str, *, params: dict[str, Any] | None = None, limit: int | None = None
    ) -> Iterator[Any]:
        """Every item of a paginated list (``{"items", "next_cursor"}``), fetched a page
        at a time as the caller iterates; ``limit`` is the page size asked for."""
        query = {k: v for k, v in (params or {}).items() if v is not None}
        if limit is not None:
            query["limit"] = limit
        while True:
            page = self.get(path, params=query)
            if not isinstance(page, dict) or not isinstance(page.get("items"), list):
                raise ServerError(
                    f"the registry at {self.base_url} answered GET {path} without a page "
                    "({items, next_cursor}): is it an older loreg server?",
                    status=200,
                )
            yield from page["items"]
            cursor = page.get("next_cursor")
            if not cursor:
                return
            query = {**query, "cursor": cursor}

    def post(self, path: str, body: Any = None) -> Any:
        """``POST path`` with a JSON body and return the decoded JSON."""
        return self.call("POST", path, json_body=body if body is not None else {})

    def put(self, path: str, body: Any = None) -> Any:
        """``PUT path`` with a JSON body and return the decoded JSON."""
        return self.call("PUT", path, json_body=body if body is not None else {})

    def delete(self, path: str) -> Any:
        """``DELETE path`` and return the decoded JSON."""
        return self.call("DELETE", path)

    def close(self) -> None:
        """Close the keep-alive connections."""
        self._http.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def quote_path(segment: str, *, safe: str = "") -> str:
    """Percent-encode one path segment (``safe`` characters are kept)."""
    return quote(segment, safe=safe)


def _has_request(response: httpx.Response) -> bool:
    try:
        response.request  # noqa: B018 - raises when the response has no request
    except RuntimeError:
        return False
    return True


def _describe_url(url: httpx.URL) -> str:
    """A URL without its query string (presigned queries are long and secret)."""
    return str(url.copy_with(query=None))


def _safe_text(response: httpx.Response) -> str:
    try:
        return response.text
    except Exception:  # noqa: BLE001 - undecodable bodies only lose their text
        return ""


def _one_line(text: str, limit: int = 300) -> str:
    """Collapse whitespace and cut long text (HTML error pages) to one short line."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."
