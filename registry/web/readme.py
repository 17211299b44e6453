"""An adapter's README.md rendered as sanitised HTML for its web page.

The Markdown is parsed by ``markdown-it-py`` (CommonMark, plus tables and ``~~strike~~``;
raw HTML in the Markdown passes the parser) and everything it produces is then cleaned
by ``nh3`` against an allow-list: :data:`ALLOWED_TAGS`, a few attributes per tag, and
URLs limited to http, https, mailto (links only) and relative ones. Script-like elements
(``script``, ``style``, ``iframe``, ``object``...) are dropped with their content; event
handlers, ``style=`` and every other attribute not listed are removed; each link gets
``rel="noopener noreferrer nofollow"``.

The input is capped at :data:`MAX_README_CHARS` characters before rendering. The card
job already truncates READMEs; this is a second guard for callers that pass raw text.
"""

from __future__ import annotations

import re
from functools import lru_cache

import nh3
from markdown_it import MarkdownIt
from markupsafe import Markup

#: Characters of Markdown rendered at most (512 KiB of text); the rest is dropped.
MAX_README_CHARS = 512 * 1024

#: Elements kept in a rendered README; any other tag is removed (its text is kept,
#: except for :data:`DROPPED_WITH_CONTENT`).
ALLOWED_TAGS: frozenset[str] = frozenset(
    {
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "p",
        "br",
        "hr",
        "ul",
        "ol",
        "li",
        "blockquote",
        "pre",
        "code",
        "kbd",
        "em",
        "strong",
        "b",
        "i",
        "del",
        "s",
        "sub",
        "sup",
        "table",
        "thead",
        "tbody",
        "tr",
        "th",
        "td",
        "a",
        "img",
        "details",
        "summary",
    }
)

#: Elements removed together with everything inside them.
DROPPED_WITH_CONTENT: frozenset[str] = frozenset(
    {
        "script",
        "style",
        "iframe",
        "frame",
        "frameset",
        "object",
        "embed",
        "applet",
        "noscript",
        "template",
        "svg",
        "math",
        "textarea",
        "select",
    }
)

#: Attributes kept per element (nothing else survives, in particular no ``on*`` and no
#: ``style``). ``rel`` on links is set by the sanitiser, never taken from the input.
ALLOWED_ATTRIBUTES: dict[str, frozenset[str]] = {
    "a": frozenset({"href", "title"}),
    "img": frozenset({"src", "alt", "title"}),
    "ol": frozenset({"start"}),
    "code": frozenset({"class"}),
    "th": frozenset({"colspan", "rowspan"}),
    "td": frozenset({"colspan", "rowspan"}),
    "details": frozenset({"open"}),
}

LINK_REL = "noopener noreferrer nofollow"

#: URL schemes allowed anywhere (``href`` and ``src``); images are narrowed further.
_URL_SCHEMES = frozenset({"http", "https", "mailto"})
_SCHEMES_BY_ATTRIBUTE = {
    ("a", "href"): _URL_SCHEMES,
    ("img", "src"): frozenset({"http", "https"}),
}

# What a browser ignores when it reads a URL's scheme: tab, LF and CR anywhere, and
# C0 controls and spaces at either end (WHATWG URL standard).
_URL_IGNORED = re.compile(r"[\t\n\r]")
_URL_TRIM = "".join(chr(c) for c in range(0x21))
_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.\-]*):")
_CODE_CLASS = re.compile(r"^language-[A-Za-z0-9_+#.\-]{1,40}$")


def _url_scheme(url: str) -> str | None:
    """The scheme a browser would read from ``url`` (lower case), None if relative."""
    match = _SCHEME.match(_URL_IGNORED.sub("", url).strip(_URL_TRIM))
    return match.group(1).lower() if match else None


def _filter_attribute(tag: str, attribute: str, value: str) -> str | None:
    """Second check after nh3's own: URL schemes per element, code classes by shape."""
    allowed = _SCHEMES_BY_ATTRIBUTE.get((tag, attribute))
    if allowed is not None:
        scheme = _url_scheme(value)
        return value if scheme is None or scheme in allowed else None
    if attribute in ("href", "src"):  # on an element not listed above: never kept
        return None
    if tag == "code" and attribute == "class":
        kept = [name for name in value.split() if _CODE_CLASS.match(name)]
        return " ".join(kept) if kept else None
    return value


@lru_cache(maxsize=1)
def _markdown() -> MarkdownIt:
    """The Markdown parser: CommonMark with raw HTML, plus tables and strikethrough."""
    return MarkdownIt("commonmark", {"html": True}).enable(["table", "strikethrough"])


@lru_cache(maxsize=1)
def _cleaner() -> nh3.Cleaner:
    """The sanitiser, built once."""
    return nh3.Cleaner(
        tags=ALLOWED_TAGS,
        clean_content_tags=DROPPED_WITH_CONTENT,
        attributes=ALLOWED_ATTRIBUTES,
        attribute_filter=_filter_attribute,
        strip_comments=True,
        link_rel=LINK_REL,
        url_schemes=_URL_SCHEMES,
        url_relative="pass_through",
    )


def render_readme(markdown_text: str | None) -> Markup:
    """Render README Markdown to sanitised HTML, safe to insert into a page as is.

    Only the first :data:`MAX_README_CHARS` characters (512 KiB) are rendered. Markdown
    headings move down one level (``#`` is an ``h2``; the page's title is its ``h1``).
    ``None`` or an empty text gives an empty :class:`~markupsafe.Markup`.
    """
    if not markdown_text:
        return Markup("")
    md = _markdown()
    tokens = md.parse(markdown_text[:MAX_README_CHARS])
    for token in tokens:  # the page has its own h1: a README's headings start at h2
        if token.type in ("heading_open", "heading_close"):
            token.tag = f"h{min(int(token.tag[1]) + 1, 6)}"
    html = md.renderer.render(tokens, md.options, {})
    return Markup(_cleaner().clean(html))
