"""ApiClient: error answers become typed loreg errors with useful messages."""

from __future__ import annotations

import httpx
import pytest

from loreg.errors import (
    AuthenticationError,
    ConflictError,
    LoregError,
    NotFoundError,
    PermissionDeniedError,
    RequestError,
    ServerError,
    ValidationFailedError,
)
from loreg.http import ApiClient, error_class_for_status

BASE = "http://registry.test"


@pytest.fixture(autouse=True)
def _no_retries(monkeypatch) -> None:
    """Error mapping only: retries of 503/5xx are tested in test_client_retry.py."""
    monkeypatch.setenv("LOREG_RETRY_MAX_S", "0")


def _client(handler, token: str | None = None) -> ApiClient:
    return ApiClient(BASE, token, timeout=5, transport=httpx.MockTransport(handler))


def _answer(status: int, code: str, message: str):
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json={"error": {"code": code, "message": message}})

    return handler


@pytest.mark.parametrize(
    ("status", "code", "cls", "exit_code"),
    [
        (400, "invalid_request", ValidationFailedError, 5),
        (401, "unauthorized", AuthenticationError, 4),
        (403, "forbidden", PermissionDeniedError, 4),
        (404, "not_found", NotFoundError, 3),
        (409, "missing_blob", ConflictError, 6),
        (410, "upload_expired", RequestError, 1),
        (413, "payload_too_large", ValidationFailedError, 5),
        (422, "shape_mismatch", ValidationFailedError, 5),
        (500, "internal", ServerError, 7),
        (503, "unavailable", ServerError, 7),
    ],
)
def test_status_maps_to_error_class(status, code, cls, exit_code) -> None:
    message = f"problem {status}: fix it like this"
    with _client(_answer(status, code, message)) as api, pytest.raises(cls) as info:
        api.get("/v1/anything")
    err = info.value
    assert type(err) is cls
    assert err.status == status
    assert err.code == code
    assert str(err) == message
    assert err.exit_code == exit_code


def test_error_details_are_kept() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        body = {"error": {"code": "shape_mismatch", "message": "2 modules", "details": [1, 2]}}
        return httpx.Response(422, json=body)

    with _client(handler) as api, pytest.raises(ValidationFailedError) as info:
        api.post("/v1/uploads/x/commit")
    assert info.value.details == [1, 2]


def test_non_json_error_body_still_gives_a_clear_message() -> None:
    html = "<html><body><h1>502 Bad Gateway</h1>\n<p>nginx</p></body></html>"

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(502, text=html, headers={"content-type": "text/html"})

    with _client(handler) as api, pytest.raises(ServerError) as info:
        api.get("/v1/resolve/medical")
    message = str(info.value)
    assert "HTTP 502" in message
    assert "registry.test/v1/resolve/medical" in message
    assert "nginx" in message
    assert "\n" not in message


def test_empty_error_body_names_the_status() -> None:
    with _client(lambda r: httpx.Response(404)) as api, pytest.raises(NotFoundError) as info:
        api.get("/v1/adapters/x/y")
    assert "HTTP 404" in str(info.value)


def test_framework_detail_body_is_used() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(405, json={"detail": "Method Not Allowed"})

    with _client(handler) as api, pytest.raises(RequestError) as info:
        api.get("/v1/x")
    assert str(info.value) == "Method Not Allowed"


def test_connection_failure_says_how_to_fix() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

    with _client(handler) as api, pytest.raises(ServerError) as info:
        api.get("/v1/health")
    message = str(info.value)
    assert BASE in message
    assert "Connection refused" in message
    assert "loreg serve" in message
    assert "LOREG_URL" in message


def test_timeout_is_a_server_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    with _client(handler) as api, pytest.raises(ServerError, match="did not answer in time"):
        api.get("/v1/health")


def test_real_unreachable_port_is_a_server_error() -> None:
    with ApiClient("http://127.0.0.1:1", timeout=2) as api, pytest.raises(ServerError) as info:
        api.get("/v1/health")
    assert "cannot reach the registry at http://127.0.0.1:1" in str(info.value)


def test_non_json_success_body_is_reported() -> None:
    api = _client(lambda r: httpx.Response(200, text="<html>"))
    with api, pytest.raises(ServerError, match="not JSON"):
        api.get("/v1/health")


def test_token_is_sent_as_bearer_only_when_given() -> None:
    seen: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("authorization"))
        return httpx.Response(200, json={})

    with _client(handler, token="abc") as api:
        api.get("/v1/whoami")
    with _client(handler) as api:
        api.get("/v1/whoami")
    assert seen == ["Bearer abc", None]


def test_owns_distinguishes_registry_urls_from_presigned_ones() -> None:
    with _client(lambda r: httpx.Response(200)) as api:
        assert api.owns("/v1/blobs/abc?signature=x")
        assert api.owns(f"{BASE}/v1/uploads/1/complete")
        assert not api.owns("http://s3.test/bucket/key?X-Amz-Signature=x")
        assert not api.owns("https://registry.test/v1/x")  # other scheme, other origin


@pytest.mark.parametrize("url", ["registry.test", "ftp://x", ""])
def test_bad_base_url_is_refused(url: str) -> None:
    with pytest.raises(ValidationFailedError, match="LOREG_URL"):
        ApiClient(url)


def test_every_status_class_is_a_loreg_error() -> None:
    for status in range(400, 600):
        assert issubclass(error_class_for_status(status), LoregError)


# --- bearer tokens the registry refuses (registry.auth.parse_bearer) -----------------


def test_overlong_token_is_refused_as_too_long() -> None:
    from registry.auth import MAX_TOKEN_LENGTH, parse_bearer
    from registry.errors import Unauthorized

    token = "lrg_" + "a" * 300
    with pytest.raises(Unauthorized) as info:
        parse_bearer(f"Bearer {token}")
    message = info.value.message
    assert "too long" in message
    assert f"{len(token)} characters" in message
    assert str(MAX_TOKEN_LENGTH) in message
    assert "start with" not in message  # it does start with lrg_: not the prefix message
    assert parse_bearer("Bearer lrg_" + "a" * (MAX_TOKEN_LENGTH - 4)) is not None  # at the limit


def test_overlong_token_without_prefix_is_still_too_long() -> None:
    from registry.auth import parse_bearer
    from registry.errors import Unauthorized

    with pytest.raises(Unauthorized, match="too long"):
        parse_bearer("Bearer " + "x" * 1000)
    with pytest.raises(Unauthorized, match="start with 'lrg_'"):
        parse_bearer("Bearer xyz")  # a short wrong token keeps the prefix hint


def test_overlong_token_over_http_is_a_401_that_says_too_long(tmp_path) -> None:
    from fastapi.testclient import TestClient

    from registry.app import create_app
    from registry.serve import prepare
    from registry.settings import Settings

    settings = Settings(
        data_dir=tmp_path,
        database_url=f"sqlite:///{tmp_path / 'loreg.db'}",
        secret_key="k" * 32,
    )
    ctx, _ = prepare(settings)
    try:
        with TestClient(create_app(context=ctx)) as http:
            r = http.get("/v1/whoami", headers={"Authorization": "Bearer lrg_" + "a" * 400})
        assert r.status_code == 401
        error = r.json()["error"]
        assert error["code"] == "unauthorized"
        assert "too long (404 characters" in error["message"]
        # and the SDK shows that message as an AuthenticationError
        with (
            _client(lambda req: httpx.Response(401, json=r.json())) as api,
            pytest.raises(AuthenticationError, match="too long"),
        ):
            api.get("/v1/whoami")
    finally:
        ctx.engine.dispose()
