"""Error answers of the ``/hf`` routes, in the form the stock Hub client reads.

``huggingface_hub`` shows the ``X-Error-Message`` header and the body's ``error``
string, and types the error by ``X-Error-Code`` (registry.services.hub.errors).
"""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import JSONResponse

from registry.services.hub.errors import EntryNotFound

HUB_PREFIX = "/hf/"
_MAX_HEADER_MESSAGE = 2000


def is_hub_request(request: Request) -> bool:
    """Whether the request is a Hub-protocol call (its errors use the Hub's form)."""
    return request.url.path.startswith(HUB_PREFIX)


def header_text(message: str) -> str:
    """``message`` made safe for an HTTP header: one line, ASCII, bounded."""
    one_line = " ".join(message.split())
    safe = one_line.encode("ascii", "backslashreplace").decode("ascii")
    return safe[:_MAX_HEADER_MESSAGE]


def hub_error_response(
    status: int,
    message: str,
    *,
    exc: Exception | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """``{"error": message}`` with ``X-Error-Message`` (and ``X-Error-Code`` when typed)."""
    out = {**(headers or {}), "X-Error-Message": header_text(message)}
    code = getattr(exc, "hub_code", "")
    if code:
        out["X-Error-Code"] = code
    if isinstance(exc, EntryNotFound) and exc.commit:
        out["X-Repo-Commit"] = exc.commit
    return JSONResponse({"error": message}, status_code=status, headers=out)
