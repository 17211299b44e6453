"""Pure helpers of the web pages: filters, query strings, snippets, redirects, CSRF checks."""

from __future__ import annotations

import shlex
from urllib.parse import parse_qsl

import pytest
from hypothesis import given
from hypothesis import strategies as st
from starlette.requests import Request

from registry.web.pages.account import _next_path
from registry.web.security import CsrfRefused, check_csrf
from registry.web.snippets import snippets
from registry.web.templating import energy, human_bytes, short_digest, when, with_query


def test_human_bytes_uses_binary_units():
    assert human_bytes(None) == "–"
    assert human_bytes(0) == "0 B" and human_bytes(1023) == "1023 B"
    assert human_bytes(1536) == "1.5 KiB"
    assert human_bytes(5 * 1024**3) == "5.0 GiB"
    assert human_bytes(3 * 1024**5) == "3072.0 TiB"


def test_when_and_digest_formats():
    assert when("2026-12-06T22:41:07.5+01:00") == "2026-12-06 21:41 UTC"
    assert when("2026-12-06T22:41:07") == "2026-12-06 22:41 UTC"  # naive: stored as UTC
    assert when("not a date") == "not a date" and when(None) == "–"
    assert short_digest("sha256:" + "ab" * 32, 8) == "sha256:abababab"
    assert short_digest(None) == "–"


def test_energy_lists_ks_in_numeric_order_and_skips_unknowns():
    assert energy({"8": 1.0, "1": 0.61234, "4": None, "16": 0.9}) == "k=1 0.612 · k=8 1 · k=16 0.9"
    assert energy({}) == "–" and energy(None) == "–"


@given(
    st.dictionaries(
        st.sampled_from(["q", "tags", "cursor", "namespace"]),
        st.text(max_size=20) | st.none(),
        max_size=4,
    ),
    st.text(max_size=30),
)
def test_with_query_round_trips_every_value(params, cursor):
    url = with_query(params, cursor=cursor)
    assert url.startswith("?")
    back = dict(parse_qsl(url[1:], keep_blank_values=True))
    expected = {k: v for k, v in {**params, "cursor": cursor}.items() if v not in (None, "")}
    assert back == expected


def test_snippets_quote_for_the_shell_and_python():
    hostile = "http://h/x'; rm -rf ~"
    pairs = dict(snippets(hostile, "ns", "name", 3, 'org/"model"'))
    cli = pairs["CLI"].splitlines()
    assert shlex.split(cli[0]) == ["export", f"LOREG_URL={hostile}"]
    assert shlex.split(cli[1]) == ["loreg", "pull", "ns/name-v3"]
    assert 'from_pretrained("org/\\"model\\"")' in pairs["Python SDK"]
    assert shlex.split(pairs["hf download"].splitlines()[1]) == [
        "hf",
        "download",
        "ns/name",
        "--revision",
        "v3",
    ]
    assert 'revision="v3"' in pairs["PEFT"]
    dataset = dict(snippets("http://h", "ns", "chats", 1, None, kind="dataset"))
    assert set(dataset) == {"CLI", "Python SDK"} and "registry.pull" in dataset["Python SDK"]


@pytest.mark.parametrize(
    ("given_path", "expected"),
    [
        ("/adapters/default/x", "/adapters/default/x"),
        ("/?q=a&b=c", "/?q=a&b=c"),
        ("//evil.example/", "/"),
        ("https://evil.example/", "/"),
        ("/\\evil.example", "/"),
        ("javascript:alert(1)", "/"),
        ("", "/"),
        (None, "/"),
    ],
)
def test_sign_in_goes_on_only_to_a_path_of_this_site(given_path, expected):
    assert _next_path(given_path) == expected


def _request(cookie: str | None, **headers: str) -> Request:
    raw = [(b"host", b"loreg.test:8080")]
    if cookie is not None:
        raw.append((b"cookie", f"loreg_csrf={cookie}".encode()))
    raw += [(k.encode(), v.encode()) for k, v in headers.items()]
    scope = {
        "type": "http",
        "method": "POST",
        "scheme": "http",
        "server": ("loreg.test", 8080),
        "path": "/sign-out",
        "query_string": b"",
        "headers": raw,
    }
    return Request(scope)


def test_csrf_needs_the_cookie_value_and_this_origin():
    token = "t" * 43
    check_csrf(_request(token), token)
    check_csrf(_request(token, origin="http://loreg.test:8080"), token)
    check_csrf(_request(token, referer="http://loreg.test:8080/jobs/1"), token)
    for request, submitted in [
        (_request(None), token),  # no cookie
        (_request(token), None),  # no field
        (_request(token), "u" * 43),  # another browser's token
        (_request(token, origin="http://evil.test"), token),
        (_request(token, origin="http://loreg.test:9090"), token),  # another port
        (_request(token, referer="https://evil.test/form"), token),
    ]:
        with pytest.raises(CsrfRefused):
            check_csrf(request, submitted)
