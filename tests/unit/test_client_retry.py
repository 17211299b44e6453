"""Outages: the SDK and CLI retry 503s and connection errors, then fail with a typed error.

The registry side is a real HTTP server on a loopback socket (``Peer``) that
answers what each test scripts: 503 twice then 200, a 503 that never ends, ...
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from loreg import cli
from loreg.client import Registry
from loreg.errors import (
    BrokerUnavailableError,
    DatabaseUnavailableError,
    ServerError,
    ServiceUnavailableError,
    StoreUnavailableError,
)
from tests.support.http_peer import Answer, Peer, peer_fixture  # noqa: F401 - fixture
from tests.support.tcpproxy import TcpProxy

WHOAMI = {"authenticated": True, "token_name": "t", "default_namespace": "default", "grants": []}


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("LOREG_OFFLINE", "LOREG_DEBUG", "LOREG_TOKEN", "LOREG_URL", "LOREG_RETRY_MAX_S"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LOREG_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("LOREG_NO_PROGRESS", "1")


def _registry(url: str, tmp_path: Path) -> Registry:
    return Registry(url, token="t", cache_dir=tmp_path / "cache", progress=False)


def test_503_twice_then_200_is_retried_honouring_retry_after(peer: Peer, tmp_path: Path) -> None:
    down = Answer.error(503, "database_unavailable", "database is down", retry_after="1")
    peer.script["/v1/whoami"] = [down, down, Answer.json(WHOAMI)]
    started = time.monotonic()
    with _registry(peer.url, tmp_path) as registry:
        assert registry.whoami() == WHOAMI
    elapsed = time.monotonic() - started
    assert len(peer.requests("/v1/whoami")) == 3
    assert elapsed >= 1.9  # two waits of Retry-After: 1


@pytest.mark.parametrize(
    ("code", "cls", "words"),
    [
        (
            "database_unavailable",
            DatabaseUnavailableError,
            "the registry's database is unavailable",
        ),
        ("store_unavailable", StoreUnavailableError, "the registry's object store is unavailable"),
        ("broker_unavailable", BrokerUnavailableError, "the registry's job broker is unavailable"),
    ],
)
def test_persistent_503_gives_up_in_bounded_time_with_a_typed_error(
    peer: Peer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: str, cls: type, words: str
) -> None:
    monkeypatch.setenv("LOREG_RETRY_MAX_S", "1.5")
    peer.script["/v1/resolve/"] = [Answer.error(503, code, "it is down", retry_after="0")]
    started = time.monotonic()
    with _registry(peer.url, tmp_path) as registry, pytest.raises(cls) as info:
        registry.pull("medical")
    elapsed = time.monotonic() - started
    assert isinstance(info.value, ServiceUnavailableError) and isinstance(info.value, ServerError)
    message = str(info.value)
    assert message.startswith(f"{words} (503 {code}): it is down"), message
    assert "LOREG_RETRY_MAX_S" in message
    assert 0.5 <= elapsed < 4.0  # gives up once the next wait would pass the budget
    assert len(peer.requests("/v1/resolve/")) >= 2


def test_cli_prints_one_line_for_a_persistent_503(
    peer: Peer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LOREG_RETRY_MAX_S", "1")
    peer.script["/v1/resolve/"] = [
        Answer.error(503, "store_unavailable", "object store unreachable", retry_after="0")
    ]
    code = cli.main(["pull", "medical", "--url", peer.url])
    out, err = capsys.readouterr()
    assert code == ServerError.exit_code
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(
        "error: the registry's object store is unavailable (503 store_unavailable): "
        "object store unreachable"
    )
    assert "a bug in loreg" not in err and "Traceback" not in err
    assert out == ""


def test_post_is_not_retried_on_broker_unavailable(peer: Peer, tmp_path: Path) -> None:
    """The job row may already be committed: a second POST could make a second job."""
    peer.script["/v1/jobs"] = [
        Answer.error(503, "broker_unavailable", "redis is down", retry_after="0")
    ]
    with _registry(peer.url, tmp_path) as registry, pytest.raises(BrokerUnavailableError):
        registry.api.post("/v1/jobs", {"type": "compress"})
    assert len(peer.requests("/v1/jobs")) == 1


def test_post_is_retried_on_database_unavailable(peer: Peer, tmp_path: Path) -> None:
    down = Answer.error(503, "database_unavailable", "db down", retry_after="0")
    peer.script["/v1/uploads"] = [down, Answer.json({"upload_id": "u1", "blobs": []}, 201)]
    with _registry(peer.url, tmp_path) as registry:
        assert registry.api.post("/v1/uploads", {})["upload_id"] == "u1"
    assert len(peer.requests("/v1/uploads")) == 2


def test_get_is_retried_after_connection_refused(peer: Peer, tmp_path: Path) -> None:
    peer.script["/v1/whoami"] = [Answer.json(WHOAMI)]
    proxy = TcpProxy("127.0.0.1", peer.server.server_address[1])  # not listening yet: refused
    timer = threading.Timer(0.6, proxy.restore)
    timer.start()
    try:
        with _registry(proxy.url, tmp_path) as registry:
            assert registry.whoami() == WHOAMI
    finally:
        timer.join()
        proxy.cut()
    assert len(peer.requests("/v1/whoami")) == 1


def test_connection_refused_still_fails_in_bounded_time(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("LOREG_RETRY_MAX_S", "1")
    proxy = TcpProxy("127.0.0.1", 9)  # never listens
    started = time.monotonic()
    with (
        _registry(proxy.url, tmp_path) as registry,
        pytest.raises(ServerError, match="cannot reach"),
    ):
        registry.whoami()
    assert time.monotonic() - started < 3.0


def test_retry_budget_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from loreg import constants
    from loreg.errors import LoregError

    monkeypatch.setenv("LOREG_RETRY_MAX_S", "7.5")
    assert constants.retry_max_s() == 7.5
    monkeypatch.setenv("LOREG_RETRY_MAX_S", "0")
    assert constants.retry_max_s() == 0.0
    monkeypatch.setenv("LOREG_RETRY_MAX_S", "soon")
    with pytest.raises(LoregError, match="LOREG_RETRY_MAX_S"):
        constants.retry_max_s()
