"""How many processes ``loreg serve`` runs, and the picklable config of each child."""

from __future__ import annotations

import os
import pickle

import pytest
from uvicorn.config import STARTUP_FAILURE

from registry.connections import GuardedH11Protocol
from registry.processes import ChildConfig
from registry.serve import cpu_cores, default_workers, worker_count
from registry.settings import ConfigError, Settings

BROKER = "redis://127.0.0.1:6379/0"


def settings(tmp_path, **values) -> Settings:
    """Embedded settings in ``tmp_path``, with ``values`` replaced."""
    return Settings(data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'db'}", **values)


def test_the_default_is_one_per_core_with_a_broker_and_one_without(tmp_path):
    assert default_workers(settings(tmp_path), cores=8) == 1
    assert default_workers(settings(tmp_path, redis_url=BROKER), cores=8) == 8
    assert default_workers(settings(tmp_path, redis_url=BROKER), cores=0) == 1
    assert default_workers(settings(tmp_path, redis_url=BROKER)) == cpu_cores()
    if hasattr(os, "sched_getaffinity"):
        assert cpu_cores() == len(os.sched_getaffinity(0))


def test_the_flag_wins_over_loreg_workers_which_wins_over_the_default(tmp_path):
    production = settings(tmp_path, redis_url=BROKER, workers=3)
    assert worker_count(production) == 3
    assert worker_count(production, 5) == 5
    assert worker_count(settings(tmp_path, redis_url=BROKER), 1) == 1
    assert worker_count(settings(tmp_path, workers=1)) == 1
    assert worker_count(settings(tmp_path), 1) == 1
    assert worker_count(settings(tmp_path)) == 1


def test_embedded_mode_refuses_more_than_one_process(tmp_path):
    with pytest.raises(ConfigError, match=r"^--workers 2 needs production mode") as flag:
        worker_count(settings(tmp_path), 2)
    assert "LOREG_REDIS_URL" in str(flag.value) and "--workers 1" in str(flag.value)
    with pytest.raises(ConfigError, match=r"^LOREG_WORKERS=4 needs production mode"):
        worker_count(settings(tmp_path, workers=4))


def test_fewer_than_one_process_is_refused(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match=r"^--workers must be at least 1, got 0"):
        worker_count(settings(tmp_path, redis_url=BROKER), 0)
    for name in [k for k in os.environ if k.startswith("LOREG_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("LOREG_WORKERS", "0")
    with pytest.raises(ConfigError, match=r"^LOREG_WORKERS must be at least 1, got '0'"):
        Settings.from_env(tmp_path)


def test_a_child_config_pickles_and_builds_its_app_and_protocol_when_loaded(tmp_path):
    config = ChildConfig(settings(tmp_path, header_timeout_s=2.5, limit_concurrency=40), workers=2)
    child = pickle.loads(pickle.dumps(config))  # what the spawn start method does
    assert (child.workers, child.limit_concurrency, child.parent_pid) == (2, 40, os.getpid())
    child.parent_pid = os.getppid()  # load as a child of this process's parent would
    child.load()
    try:
        assert issubclass(child.http_protocol_class, GuardedH11Protocol)
        assert child.http_protocol_class.header_timeout == 2.5
        assert child.app.state.ctx.settings == config.settings
    finally:
        child.app.state.ctx.close()


def test_a_child_that_cannot_build_its_app_exits_as_a_startup_failure(tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")  # the local store cannot be created under a file
    config = ChildConfig(settings(blocker), workers=2)
    with pytest.raises(SystemExit) as exited:
        config.load()
    assert exited.value.code == STARTUP_FAILURE
