"""registry/web/readme.py: README Markdown rendered, then sanitised by nh3."""

from __future__ import annotations

import re
from html.parser import HTMLParser

from hypothesis import given, settings
from hypothesis import strategies as st
from markupsafe import Markup

from registry.web.readme import (
    ALLOWED_TAGS,
    LINK_REL,
    MAX_README_CHARS,
    render_readme,
)

DANGEROUS_TAGS = {"script", "style", "iframe", "object", "embed", "frame", "svg", "math"}
_BAD_URL = re.compile(r"^(javascript|data|vbscript):")
_SCHEME = re.compile(r"^([a-z][a-z0-9+.\-]*):")


class _Collect(HTMLParser):
    """Every start tag with its attributes (values with entities decoded)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, dict(attrs)))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _parse(html: str) -> _Collect:
    parser = _Collect()
    parser.feed(html)
    parser.close()
    return parser


def _normalised_url(url: str) -> str:
    """What a browser reads a scheme from: no tab/LF/CR, no controls or spaces at the ends."""
    return re.sub(r"[\t\n\r]", "", url).strip("".join(chr(c) for c in range(0x21))).lower()


def _assert_inert(html: str) -> None:
    parsed = _parse(html)
    for tag, attrs in parsed.elements:
        assert tag not in DANGEROUS_TAGS, html
        assert tag in ALLOWED_TAGS, (tag, html)
        for name, value in attrs.items():
            assert not name.startswith("on"), html
            assert name != "style", html
            if name in ("href", "src"):
                assert value is not None
                url = _normalised_url(value)
                assert not _BAD_URL.match(url), html
                scheme = _SCHEME.match(url)
                allowed = {"http", "https", "mailto"} if name == "href" else {"http", "https"}
                assert scheme is None or scheme.group(1) in allowed, html


def test_none_and_empty_give_empty_markup() -> None:
    for value in (None, ""):
        out = render_readme(value)
        assert isinstance(out, Markup)
        assert out == ""


def test_returns_markup_not_escaped_again() -> None:
    out = render_readme("**bold**")
    assert isinstance(out, Markup)
    assert Markup("{}").format(out) == out  # not escaped when put into a template
    assert "<strong>bold</strong>" in out


def test_basic_markdown_elements() -> None:
    text = (
        "# Title\n\n## Sub\n\nSome *em* and **strong** and ~~gone~~.\n\n"
        "- one\n- two\n\n3. three\n4. four\n\n> quoted\n\n---\n\nline  \nbreak\n"
    )
    parsed = _parse(render_readme(text))
    tags = [tag for tag, _ in parsed.elements]
    for expected in ("h2", "h3", "em", "strong", "s", "ul", "ol", "li", "blockquote", "hr"):
        assert expected in tags, expected
    assert "br" in tags
    ol_attrs = next(attrs for tag, attrs in parsed.elements if tag == "ol")
    assert ol_attrs.get("start") == "3"
    _assert_inert(render_readme(text))


def test_headings_move_down_one_level_under_the_page_title() -> None:
    out = render_readme("# A\n\n## B\n\n###### F\n")
    assert "<h2>A</h2>" in out and "<h3>B</h3>" in out
    assert "<h6>F</h6>" in out  # h6 is the lowest there is
    assert "<h1" not in out


def test_table_renders_as_table() -> None:
    text = "| a | b |\n|:--|--:|\n| 1 | 2 |\n"
    out = render_readme(text)
    tags = [tag for tag, _ in _parse(out).elements]
    assert tags[:1] == ["table"]
    for expected in ("thead", "tbody", "tr", "th", "td"):
        assert expected in tags
    # markdown-it writes alignment as style="text-align:..."; style never survives
    assert "style" not in out


def test_code_block_is_escaped_and_keeps_language_class() -> None:
    text = (
        '```python\n<script>alert("x")</script> & <b>y</b>\n```\n\nInline `<img src=x onerror=1>`.'
    )
    out = render_readme(text)
    assert '<pre><code class="language-python">' in out
    assert "&lt;script&gt;" in out
    assert "&amp;" in out
    assert "&lt;img src=x onerror=1&gt;" in out
    parsed = _parse(out)
    assert all(tag in {"p", "pre", "code"} for tag, _ in parsed.elements)
    assert '<script>alert("x")</script>' in "".join(parsed.text)  # as text, not as element


def test_code_class_other_than_language_is_dropped() -> None:
    out = render_readme('<code class="language-py evil x-y">x</code>')
    assert 'class="language-py"' in out
    assert "evil" not in out
    assert "class" not in render_readme('<code class="evil">x</code>')


def test_links_carry_rel_and_keep_safe_schemes() -> None:
    text = (
        "[a](https://example.com/x) [b](http://example.com) [c](mailto:me@example.com) "
        "[d](/adapters/ns/name) [e](docs/usage.md) [f](#section)"
    )
    parsed = _parse(render_readme(text))
    links = [attrs for tag, attrs in parsed.elements if tag == "a"]
    assert [link["href"] for link in links] == [
        "https://example.com/x",
        "http://example.com",
        "mailto:me@example.com",
        "/adapters/ns/name",
        "docs/usage.md",
        "#section",
    ]
    assert all(link["rel"] == LINK_REL for link in links)
    assert LINK_REL == "noopener noreferrer nofollow"


def test_input_rel_and_target_are_replaced() -> None:
    out = render_readme('<a href="https://e.com" rel="opener" target="_blank">x</a>')
    links = [attrs for tag, attrs in _parse(out).elements if tag == "a"]
    assert links == [{"href": "https://e.com", "rel": LINK_REL}]


def test_other_link_schemes_are_removed() -> None:
    for url in ("ftp://e.com/x", "file:///etc/passwd", "tel:123", "blob:https://e.com/1"):
        out = render_readme(f'<a href="{url}">x</a>')
        assert "href" not in out, url
        assert "x" in out


DANGEROUS_URLS = [
    "javascript:alert(1)",
    "JaVaScRiPt:alert(1)",
    " javascript:alert(1)",
    "\tjavascript:alert(1)",
    "java&#x09;script:alert(1)",
    "java&#9;script:alert(1)",
    "java&#x0A;script:alert(1)",
    "jav&#x0D;ascript:alert(1)",
    "&#106;avascript:alert(1)",
    "&#x6A;&#x61;&#x76;&#x61;&#x73;&#x63;&#x72;&#x69;&#x70;&#x74;&#x3A;alert(1)",
    "javascript&colon;alert(1)",
    "&#0000106avascript:alert(1)",
    "\x01javascript:alert(1)",
    "vbscript:msgbox(1)",
    "VBScript:msgbox(1)",
    "data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==",
    "DATA:text/html,<script>alert(1)</script>",
    "data:image/png;base64,iVBORw0KGgo=",
    " data:image/svg+xml,<svg onload=alert(1)>",
]


def test_dangerous_urls_in_raw_html_links_are_removed() -> None:
    for url in DANGEROUS_URLS:
        out = render_readme(f'<a href="{url}">x</a> <img src="{url}" alt="i">')
        _assert_inert(out)
        assert "href" not in out and "src" not in out, (url, out)


def test_dangerous_urls_in_markdown_links_are_removed() -> None:
    for url in DANGEROUS_URLS:
        out = render_readme(f"[x](<{url}>) ![i](<{url}>) <{url}>")
        _assert_inert(out)
        # markdown-it may keep a link it percent-encodes ("java%09script:..."): then it
        # must be a relative URL (no scheme at all), which a browser resolves as a path
        for _, attrs in _parse(out).elements:
            for name in ("href", "src"):
                if name in attrs:
                    assert not _SCHEME.match(_normalised_url(attrs[name] or "")), (url, out)


def test_reference_style_link_with_javascript() -> None:
    out = render_readme("[x][r]\n\n[r]: javascript:alert(1)\n")
    _assert_inert(out)
    assert "href" not in out


def test_images_keep_http_https_relative_only() -> None:
    text = (
        "![a](https://e.com/a.png) ![b](http://e.com/b.png) ![c](img/c.png) "
        "![d](mailto:x@e.com) ![e](ftp://e.com/e.png)"
    )
    images = [attrs for tag, attrs in _parse(render_readme(text)).elements if tag == "img"]
    assert [image.get("src") for image in images] == [
        "https://e.com/a.png",
        "http://e.com/b.png",
        "img/c.png",
        None,
        None,
    ]
    assert [image["alt"] for image in images] == ["a", "b", "c", "d", "e"]


def test_image_attributes_are_limited() -> None:
    out = render_readme(
        '<img src="https://e.com/a.png" alt="A" title="T" width="9" onload="x()"'
        ' style="position:fixed" class="c" id="i" srcset="data:x 1x">'
    )
    images = [attrs for tag, attrs in _parse(out).elements if tag == "img"]
    assert images == [{"src": "https://e.com/a.png", "alt": "A", "title": "T"}]


def test_script_like_elements_are_dropped_with_content() -> None:
    text = (
        "before\n\n<script>alert('s')</script>\n\n<style>body{display:none}</style>\n\n"
        '<iframe src="https://evil.example">frame text</iframe>\n\n'
        '<object data="x.swf">obj text</object>\n\n<embed src="x.swf">\n\n'
        "<svg><script>alert(2)</script></svg>\n\n<noscript>ns</noscript>\n\nafter"
    )
    out = render_readme(text)
    _assert_inert(out)
    for leftover in ("alert", "display:none", "frame text", "obj text", "evil.example"):
        assert leftover not in out, leftover
    assert "before" in out and "after" in out


def test_event_handlers_and_style_attributes_are_removed() -> None:
    text = (
        '<p onclick="alert(1)" style="color:red" ONMOUSEOVER="x()">p</p>\n\n'
        '<img src=x onerror=alert(1)>\n\n<a href="/x" onfocus="y()" autofocus>l</a>\n\n'
        '<details open ontoggle="alert(1)"><summary onclick="z()">S</summary>body</details>'
    )
    out = render_readme(text)
    _assert_inert(out)
    assert "alert" not in out
    assert "color" not in out
    parsed = _parse(out)
    details = [attrs for tag, attrs in parsed.elements if tag == "details"]
    assert details == [{"open": ""}]
    assert ("summary", {}) in parsed.elements


def test_unknown_tags_are_stripped_but_text_kept() -> None:
    out = render_readme('<div align="center"><form action="/x"><input value="v">hello</form></div>')
    parsed = _parse(out)
    assert all(tag in ALLOWED_TAGS for tag, _ in parsed.elements)
    assert "hello" in "".join(parsed.text)
    assert "form" not in out and "input" not in out


def test_comments_are_removed() -> None:
    out = render_readme("a <!-- secret --> b\n\n<!--[if IE]><script>x</script><![endif]-->")
    assert "secret" not in out
    assert "<!--" not in out


def test_malformed_html_cannot_break_out() -> None:
    for text in (
        '<a href="https://e.com" title="x" onclick="y">z</a',
        "<scr<script>ipt>alert(1)</script>",
        '<img src="x" alt="\\" onerror=alert(1)//">',
        "<p <script>alert(1)</script>>",
        '"><script>alert(1)</script>',
        "<math><mtext><table><mglyph><style><img src=x onerror=alert(1)>",
        '<svg><a href="javascript:alert(1)"><text>x</text></a></svg>',
    ):
        _assert_inert(render_readme(text))


def test_input_is_capped() -> None:
    head = "a" * (MAX_README_CHARS - 3)
    out = render_readme(head + "xyz" + "TAIL" * 100)
    assert "xyz" in out
    assert "TAIL" not in out
    assert len(out) < MAX_README_CHARS + 100


_FRAGMENTS = [
    "<script>alert(1)</script>",
    "<SCRIPT SRC=//x.js></SCRIPT>",
    "<img src=x onerror=alert(1)>",
    '<a href="javascript:alert(1)">',
    '<a href=" JaVaScRiPt:alert(1)">',
    '<a href="java&#x09;script:x">',
    "[l](javascript:alert(1))",
    "![i](data:text/html,x)",
    '<a href="data:text/html,x">',
    '<a href="vbscript:x">',
    '<div onmouseover="x">',
    '<p style="color:red">',
    "<iframe src=x>",
    "<style>x</style>",
    "<object data=x>",
    "<svg onload=alert(1)>",
    "<!--",
    "-->",
    "`",
    "```",
    "<",
    ">",
    '"',
    "'",
    "&",
    "&#",
    "\n",
    "\n\n",
    "|a|\n|-|\n",
    "<details ontoggle=x>",
    "<",
    "on",
    "=",
]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.sampled_from(_FRAGMENTS), st.text(max_size=12)), max_size=20))
def test_property_no_script_handler_or_bad_url(parts: list[str]) -> None:
    out = render_readme("".join(parts))
    _assert_inert(out)
    assert "<script" not in out.lower()
