"""The resolve fast path's request parsing: which requests it takes, and the base URL
it memoises, which must be exactly what Starlette's ``request.base_url`` gives."""

from __future__ import annotations

import pytest
from starlette.requests import Request

from registry.api.deps import base_url
from registry.api.fast_resolve import _base_url, _header, taken_ref


def _scope(path: str = "/v1/resolve/default/medical@prod", **extra) -> dict:
    scope = {
        "type": "http",
        "method": "GET",
        "scheme": "http",
        "server": ("127.0.0.1", 8080),
        "root_path": "",
        "path": path,
        "query_string": b"",
        "headers": [(b"host", b"loreg.internal:8080")],
    }
    scope.update(extra)
    return scope


@pytest.mark.parametrize(
    ("scope", "ref"),
    [
        (_scope(), "default/medical@prod"),
        (_scope("/v1/resolve/medical-v3"), "medical-v3"),
        (_scope("/api/v1/resolve/medical", root_path="/api"), "medical"),
        (_scope("/v1/resolve/"), None),  # empty ref: FastAPI's route answers the 422
        (_scope(method="HEAD"), None),
        (_scope(method="POST"), None),
        (_scope("/v1/resolver/x"), None),
        (_scope(headers=[(b"content-length", b"2")]), None),  # a body: routed
        (_scope(headers=[(b"transfer-encoding", b"chunked")]), None),
        (_scope(headers=[(b"content-length", b"0")]), "default/medical@prod"),
        ({"type": "websocket", "path": "/v1/resolve/x", "headers": []}, None),
    ],
)
def test_which_requests_the_fast_path_takes(scope: dict, ref: str | None) -> None:
    assert taken_ref(scope) == ref


@pytest.mark.parametrize(
    "scope",
    [
        _scope(),
        _scope(scheme="https", headers=[(b"host", b"loreg.example.com")]),
        _scope(headers=[]),  # no Host header: the server address
        _scope(headers=[], server=("::1", 9000)),
        _scope(root_path="/api", path="/api/v1/resolve/x"),
        _scope(app_root_path="/outer", root_path="/outer/inner"),
        _scope(scheme="https", headers=[], server=("10.0.0.1", 443)),
    ],
)
def test_memoised_base_url_is_starlettes(scope: dict) -> None:
    assert _base_url(scope) == base_url(Request(scope))
    assert _base_url(scope) == base_url(Request(scope))  # from the memo: the same


def test_header_reads_the_first_value_like_starlette() -> None:
    scope = _scope(headers=[(b"authorization", b"Bearer a\xe9"), (b"authorization", b"x")])
    assert _header(scope, b"authorization") == Request(scope).headers["authorization"]
    assert _header(scope, b"cookie") is None
