"""A small HTML reader for page tests: every element with its attributes, and the text."""

from __future__ import annotations

from dataclasses import dataclass
from html.parser import HTMLParser


@dataclass
class Element:
    """One start tag: its name and attributes (values None for bare attributes)."""

    tag: str
    attrs: dict[str, str | None]


class ParsedPage(HTMLParser):
    """Parses a page; ``elements`` in document order, ``text`` the visible text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[Element] = []
        self._chunks: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        """Record the element."""
        self.elements.append(Element(tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        """Collect the text."""
        self._chunks.append(data)

    @property
    def text(self) -> str:
        """The page's text, whitespace collapsed."""
        return " ".join(" ".join(self._chunks).split())

    def find(self, tag: str, **attrs: str) -> list[Element]:
        """The elements named ``tag`` whose attributes include ``attrs`` (``class_`` = class)."""
        wanted = {k.rstrip("_"): v for k, v in attrs.items()}
        return [
            e
            for e in self.elements
            if e.tag == tag and all(e.attrs.get(k) == v for k, v in wanted.items())
        ]


def parse_page(html: str) -> ParsedPage:
    """Parse ``html`` into a :class:`ParsedPage`."""
    page = ParsedPage()
    page.feed(html)
    page.close()
    return page
