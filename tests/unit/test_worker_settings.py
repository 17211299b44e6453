"""Worker delivery settings that make "no job lost" true, and the train presets.

These are configuration facts a refactor could silently drop: each one is named
in docs/design.md §6/§7 and checked here on the objects the worker really builds.
"""

from __future__ import annotations

import pytest

from registry.settings import Settings


@pytest.fixture
def app(tmp_path):
    from workers.celery_app import make_celery

    settings = Settings(
        data_dir=tmp_path,
        database_url=f"sqlite:///{tmp_path / 'db.sqlite'}",
        redis_url="redis://127.0.0.1:9/0",  # never contacted: building the app is offline
        visibility_timeout_s=4321,
        job_max_attempts=7,
    )
    celery = make_celery(settings)
    yield celery
    celery.close()


def test_celery_is_configured_for_at_least_once_delivery(app):
    conf = app.conf
    assert conf.task_acks_late is True  # ack after the job ran
    assert conf.task_reject_on_worker_lost is True  # a killed child's message is requeued
    assert conf.worker_prefetch_multiplier == 1  # a busy worker hoards nothing
    assert conf.broker_transport_options["visibility_timeout"] == 4321  # from settings
    assert sorted(q.name for q in conf.task_queues) == ["cpu", "gpu"]
    assert conf.task_serializer == "json" and conf.accept_content == ["json"]
    task = app.tasks["loreg.run_job"]
    assert task.max_retries == 7


def test_transient_retries_back_off_exponentially_with_a_cap():
    from workers.celery_app import BACKOFF_MAX_S, retry_countdown

    assert [retry_countdown(n) for n in range(5)] == [2.0, 4.0, 8.0, 16.0, 32.0]
    assert retry_countdown(50) == BACKOFF_MAX_S == 300.0
    assert retry_countdown(-1) == 2.0


@pytest.mark.parametrize(
    ("preset", "r", "alpha"),
    [("small", 4, 8), ("medium", 8, 16), ("large", 16, 32), ("xlarge", 32, 64)],
)
def test_train_presets_set_rank_and_alpha(preset, r, alpha):
    from workers.jobs.train import settings_from_params

    got = settings_from_params({"preset": preset, "steps": 3})
    assert (got.r, got.lora_alpha, got.steps) == (r, alpha, 3)
    override = settings_from_params({"preset": preset, "r": 2, "lora_alpha": 5.0})
    assert (override.r, override.lora_alpha) == (2, 5.0)


def test_the_scheduled_gc_is_a_beat_entry_of_the_worker_app(app):
    from workers.celery_app import GC_TASK

    assert GC_TASK in app.tasks
    entry = app.conf.beat_schedule["loreg-gc"]
    assert entry["task"] == GC_TASK and entry["schedule"] == 3600.0  # LOREG_GC_INTERVAL_S
    assert entry["options"]["queue"] == "cpu"


@pytest.mark.parametrize("beat", [False, True])
def test_loreg_worker_beat_runs_celery_beat_in_the_worker(tmp_path, monkeypatch, beat):
    from celery import Celery

    from workers import main as worker_main

    monkeypatch.setenv("LOREG_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("LOREG_REDIS_URL", "redis://127.0.0.1:9/0")
    started: list[list[str]] = []
    monkeypatch.setattr(Celery, "start", lambda self, argv: started.append(argv) or 0)
    monkeypatch.setattr(worker_main, "install_reconciler", lambda *a, **k: None)
    monkeypatch.setattr(worker_main, "install_mirror_scheduler", lambda *a, **k: None)
    assert worker_main.main(["--beat"] if beat else []) == 0
    [argv] = started
    assert ("--beat" in argv) is beat
    assert any(a.startswith("--schedule=") for a in argv) is beat
