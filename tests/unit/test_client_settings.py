"""Client settings from LOREG_* variables, and the progress bar."""

from __future__ import annotations

import io
import threading
from pathlib import Path

import pytest

from loreg import constants
from loreg.errors import LoregError
from loreg.progress import Progress, format_bytes

_VARS = (
    "LOREG_URL",
    "LOREG_TOKEN",
    "LOREG_CACHE_DIR",
    "LOREG_OFFLINE",
    "LOREG_NO_PROGRESS",
    "LOREG_UPLOAD_CONCURRENCY",
    "XDG_CACHE_HOME",
)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _VARS:
        monkeypatch.delenv(name, raising=False)


def test_defaults() -> None:
    assert constants.registry_url() == "http://127.0.0.1:8080"
    assert constants.registry_token() is None
    assert constants.offline_mode() is False
    assert constants.upload_concurrency() == 8
    assert constants.download_concurrency() == 8


def test_environment_overrides(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LOREG_URL", "http://reg:9000/")
    monkeypatch.setenv("LOREG_TOKEN", "  tok  ")
    monkeypatch.setenv("LOREG_CACHE_DIR", str(tmp_path / "c"))
    monkeypatch.setenv("LOREG_OFFLINE", "true")
    monkeypatch.setenv("LOREG_UPLOAD_CONCURRENCY", "3")
    assert constants.registry_url() == "http://reg:9000"
    assert constants.registry_token() == "tok"
    assert constants.default_cache_dir() == tmp_path / "c"
    assert constants.offline_mode() is True
    assert constants.upload_concurrency() == 3


def test_cache_dir_follows_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(constants.sys, "platform", "linux")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert constants.default_cache_dir() == tmp_path / "loreg"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert constants.default_cache_dir() == Path.home() / ".cache" / "loreg"
    monkeypatch.setattr(constants.sys, "platform", "darwin")
    assert constants.default_cache_dir() == Path.home() / "Library" / "Caches" / "loreg"


@pytest.mark.parametrize(("name", "value"), [("LOREG_OFFLINE", "maybe"), ("LOREG_RETRIES", "x")])
def test_bad_values_name_the_variable(monkeypatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(LoregError, match=name):
        constants.offline_mode() if name == "LOREG_OFFLINE" else constants.transfer_retries()


def test_concurrency_must_be_positive(monkeypatch) -> None:
    monkeypatch.setenv("LOREG_UPLOAD_CONCURRENCY", "0")
    with pytest.raises(LoregError, match="at least 1"):
        constants.upload_concurrency()


def test_progress_counts_from_many_threads_and_draws_when_forced() -> None:
    stream = io.StringIO()
    bar = Progress(8000, "pull x", enabled=True, stream=stream)
    threads = [
        threading.Thread(target=lambda: [bar.update(1) for _ in range(1000)]) for _ in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    bar.close()
    assert bar.done == 8000
    last = stream.getvalue().rstrip("\n").split("\r")[-1]
    assert "pull x" in last and "100%" in last and "7.8 KiB/7.8 KiB" in last


def test_progress_is_silent_when_off_or_not_a_tty(monkeypatch) -> None:
    stream = io.StringIO()  # not a TTY
    with Progress(10, "x", stream=stream) as bar:
        bar.update(10)
    assert stream.getvalue() == "" and bar.done == 10
    monkeypatch.setenv("LOREG_NO_PROGRESS", "1")

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    tty = Tty()
    with Progress(10, "x", stream=tty) as bar:
        bar.update(10)
    assert tty.getvalue() == ""


def test_format_bytes() -> None:
    assert format_bytes(512) == "512 B"
    assert format_bytes(1536) == "1.5 KiB"
    assert format_bytes(200 * 2**20) == "200.0 MiB"
