"""The Jinja2 environment of the pages and the one function that renders a page.

Autoescaping is on for every template: any text from the catalog (names,
descriptions, tags, job messages) is escaped; only values wrapped in
:class:`markupsafe.Markup` by our own renderers (sanitised README HTML, the SVG
charts) go out as markup.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import jinja2
from fastapi import Request
from fastapi.responses import HTMLResponse

from loreg.vocabulary import SCOPE_LEVELS, Scope
from registry import __version__
from registry.web.security import CSRF_FIELD, Visitor, apply_cookies, csrf_token

TEMPLATES = Path(__file__).parent / "templates"


def human_bytes(size: int | None) -> str:
    """``1536`` -> ``1.5 KiB``; ``None`` -> an en dash."""
    if size is None:
        return "–"
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def when(value: datetime | str | None) -> str:
    """A timestamp as ``2026-12-06 22:41 UTC`` (an ISO string or a datetime)."""
    if value is None:
        return "–"
    moment = value
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            return value
    assert isinstance(moment, datetime)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def short_digest(digest: str | None, length: int = 12) -> str:
    """``sha256:abcdef...`` cut to ``length`` hex characters after the algorithm."""
    if not digest:
        return "–"
    algorithm, _, hexpart = digest.partition(":")
    return f"{algorithm}:{hexpart[:length]}" if hexpart else digest[:length]


def number(value: float | int | None, digits: int = 3) -> str:
    """A figure with at most ``digits`` significant digits (ints unchanged)."""
    if value is None:
        return "–"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.{digits}g}"


def energy(shares: dict[str, float | None] | None) -> str:
    """A card's ``energy_top_k`` as ``k=1 0.61 · k=4 0.95`` (ks in order; None left out)."""
    if not shares:
        return "–"
    items = sorted((int(k), v) for k, v in shares.items() if str(k).isdigit() and v is not None)
    return " · ".join(f"k={k} {v:.3g}" for k, v in items) or "–"


def segment(value: object) -> str:
    """One URL path segment, percent-encoded."""
    return quote(str(value), safe="")


def with_query(params: dict[str, Any], **changes: Any) -> str:
    """``?a=1&b=2`` from ``params`` with ``changes`` applied (None drops a key)."""
    merged = {**params, **changes}
    pairs: list[tuple[str, str]] = []
    for key, value in merged.items():
        if value is None or value == "" or value == []:
            continue
        for item in value if isinstance(value, list) else [value]:
            pairs.append((key, str(item)))
    return "?" + urlencode(pairs) if pairs else "?"


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        auto_reload=False,
    )
    env.filters.update(
        bytes=human_bytes,
        when=when,
        digest=short_digest,
        number=number,
        seg=segment,
        energy=energy,
    )
    env.globals.update(with_query=with_query, version=__version__, csrf_field=CSRF_FIELD)
    return env


ENVIRONMENT = _environment()


def render(
    request: Request,
    visitor: Visitor,
    template: str,
    *,
    status_code: int = 200,
    title: str,
    **context: Any,
) -> HTMLResponse:
    """Render ``template`` with the visitor, the CSRF token and ``context``; set headers."""
    principal = visitor.principal
    page = ENVIRONMENT.get_template(template).render(
        request=request,
        title=title,
        principal=principal,
        signed_in=principal.authenticated,
        token_rejected=visitor.token_rejected,
        is_admin=principal.can("*", "admin"),
        can_audit=any(level >= SCOPE_LEVELS[Scope.ADMIN] for level in principal.grants.values()),
        csrf=csrf_token(request),
        path=request.url.path,
        **context,
    )
    response = HTMLResponse(page, status_code=status_code)
    apply_cookies(request, response)
    return response
