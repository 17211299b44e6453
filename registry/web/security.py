"""Who is looking at a page, and the protections every page carries.

* **Sign-in**: the visitor's API token is kept in the ``loreg_token`` cookie
  (HttpOnly, SameSite=Lax, Secure on https), checked like a bearer token on every
  request; a token that stopped working makes the visitor anonymous again.
* **CSRF**: every state-changing page request is a POST carrying the ``csrf`` form
  field, which must equal the random ``loreg_csrf`` cookie (double submit: another
  site can neither read that cookie nor set it); a POST whose ``Origin`` or
  ``Referer`` names another host is refused too. A refusal is a 403.
* **Headers**: a strict Content-Security-Policy (scripts, styles and fonts from this
  origin only, no inline script or style, no framing), ``nosniff`` and a same-origin
  referrer policy on every page.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from fastapi import Request
from starlette.responses import Response

from registry.auth import ANONYMOUS, Principal, parse_bearer
from registry.errors import RegistryError, Unauthorized
from registry.services.context import Context
from registry.services.resolve import principal_of

TOKEN_COOKIE = "loreg_token"
CSRF_COOKIE = "loreg_csrf"
CSRF_FIELD = "csrf"
#: How long a sign-in lasts in the browser (the token's own expiry still applies).
SESSION_MAX_AGE_S = 30 * 24 * 3600

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' https:",
        "connect-src 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    ]
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}


class CsrfRefused(RegistryError):
    """A page POST without the right CSRF token, or sent from another site."""

    status = 403
    code = "csrf_refused"


@dataclass(frozen=True)
class Visitor:
    """The principal behind a page request, and what the page needs to say about it."""

    principal: Principal
    #: The cookie held a token that no longer works (revoked, expired, malformed).
    token_rejected: bool = False


def visitor_of(ctx: Context, request: Request) -> Visitor:
    """The visitor of a page: the cookie's token (or a bearer header), else anonymous."""
    token = request.cookies.get(TOKEN_COOKIE)
    header = request.headers.get("authorization")
    try:
        if header:
            return Visitor(principal_of(ctx, parse_bearer(header)))
        if token:
            return Visitor(principal_of(ctx, parse_bearer(f"Bearer {token}")))
    except Unauthorized:
        return Visitor(ANONYMOUS, token_rejected=token is not None)
    return Visitor(ANONYMOUS)


def csrf_token(request: Request) -> str:
    """The CSRF token of this browser (the cookie's value; a new one when it has none).

    :func:`apply_cookies` sets the cookie when the page's answer is sent.
    """
    existing = request.cookies.get(CSRF_COOKIE)
    if existing and 20 <= len(existing) <= 64:
        return existing
    fresh = getattr(request.state, "new_csrf", None)
    if fresh is None:
        fresh = request.state.new_csrf = secrets.token_urlsafe(32)
    return fresh


def _same_origin(request: Request, value: str) -> bool:
    parts = urlsplit(value)
    return parts.netloc == request.url.netloc and parts.scheme in ("http", "https")


def check_csrf(request: Request, submitted: str | None) -> None:
    """403 unless the form's ``csrf`` matches the cookie and the POST comes from this site."""
    cookie = request.cookies.get(CSRF_COOKIE)
    if not cookie or not submitted or not hmac.compare_digest(cookie, submitted):
        raise CsrfRefused(
            "this form is missing its CSRF token or it does not match this browser's: "
            "reload the page and submit it again"
        )
    origin = request.headers.get("origin")
    referer = request.headers.get("referer")
    if origin and origin != "null" and not _same_origin(request, origin):
        raise CsrfRefused(f"a form posted from another site ({origin[:100]}) is refused")
    if not origin and referer and not _same_origin(request, referer):
        raise CsrfRefused("a form posted from another site is refused")


def _set_cookie(
    request: Request, response: Response, name: str, value: str, samesite: Literal["lax", "strict"]
) -> None:
    """One of our cookies: HttpOnly, site-wide, :data:`SESSION_MAX_AGE_S`, Secure on https."""
    response.set_cookie(
        name,
        value,
        max_age=SESSION_MAX_AGE_S,
        httponly=True,
        samesite=samesite,
        secure=request.url.scheme == "https",
        path="/",
    )


def apply_cookies(request: Request, response: Response) -> None:
    """Set the CSRF cookie if this request made one, and the security headers."""
    fresh = getattr(request.state, "new_csrf", None)
    if fresh is not None:
        _set_cookie(request, response, CSRF_COOKIE, fresh, "strict")
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)


def sign_in(request: Request, response: Response, token: str) -> None:
    """Keep ``token`` in the session cookie, with a new CSRF token (no fixation)."""
    _set_cookie(request, response, TOKEN_COOKIE, token, "lax")
    _set_cookie(request, response, CSRF_COOKIE, secrets.token_urlsafe(32), "strict")


def sign_out(response: Response) -> None:
    """Forget the session token (and the CSRF token with it)."""
    response.delete_cookie(TOKEN_COOKIE, path="/")
    response.delete_cookie(CSRF_COOKIE, path="/")
