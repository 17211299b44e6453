"""The scheduled gc: a thread of ``loreg serve``'s leader in embedded mode, and a Celery
beat entry whose task calls the gc service (run here without a broker).

With a zero grace period, a deleted version's blobs are removed by the next pass of
either; the beat schedule names the task at ``LOREG_GC_INTERVAL_S``.
"""

from __future__ import annotations

import hashlib

import pytest
from sqlmodel import Session, select

from registry.models import Blob
from registry.serve import start_scheduled_gc
from registry.services.gc import PeriodicGc
from tests.support.publish import publish
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
def registry_settings_overrides() -> dict:
    """No grace: an unreferenced blob may go at the next pass."""
    return {"gc_grace_s": 0}


def _stored(ctx) -> set[str]:
    with Session(ctx.engine) as session:
        return set(session.exec(select(Blob.sha256)).all())


def _published_then_deleted(api, name: str, files: dict[str, bytes]) -> set[str]:
    """Publish ``name`` and delete its version; the blobs it alone held."""
    r, _ = publish(api, name, files)
    assert r.status_code == 201, r.text
    r = api.delete(f"/v1/adapters/default/{name}")
    assert r.status_code == 200 and r.json()["unreferenced_blobs"] > 0, r.text
    return {hashlib.sha256(b).hexdigest() for b in files.values()}


def test_the_embedded_leader_runs_gc_on_a_schedule(
    registry_server, admin_api, adapter_files, other_adapter_files
):
    ctx = registry_server.ctx
    assert publish(admin_api, "kept", adapter_files)[0].status_code == 201
    kept = _stored(ctx)
    orphans = _published_then_deleted(admin_api, "gone", other_adapter_files) - kept
    assert orphans <= _stored(ctx)
    thread = PeriodicGc(ctx, 0.05).start()
    try:
        wait_until(lambda: not (orphans & _stored(ctx)), timeout=20, message="gc did not run")
        assert thread.passes >= 1 and thread.last_report is not None
    finally:
        thread.stop()
    assert _stored(ctx) == kept
    assert admin_api.get("/v1/resolve/kept-v1").status_code == 200

    # serve() starts it in embedded mode (LOREG_GC_INTERVAL_S, default hourly) ...
    started = start_scheduled_gc(ctx)
    assert isinstance(started, PeriodicGc) and started.interval_s == 3600
    started.stop()
    # ... and leaves it to Celery beat with a broker, or when the interval is 0
    assert start_scheduled_gc(_with(ctx, redis_url="redis://127.0.0.1:6379/0")) is None
    assert start_scheduled_gc(_with(ctx, gc_interval_s=0)) is None


def _with(ctx, **overrides):
    from dataclasses import replace

    return replace(ctx, settings=ctx.settings.with_overrides(**overrides))


def test_the_beat_schedule_sends_a_task_that_calls_the_gc_service(
    registry_server, admin_api, other_adapter_files
):
    from workers.celery_app import GC_TASK, beat_schedule, make_celery

    settings = registry_server.settings.with_overrides(
        redis_url="redis://127.0.0.1:6379/0", gc_interval_s=120
    )
    app = make_celery(settings)
    assert app.conf.beat_schedule == {
        "loreg-gc": {
            "task": GC_TASK,
            "schedule": 120.0,
            "options": {"queue": "cpu", "expires": 120.0},
        }
    }
    assert beat_schedule(settings.with_overrides(gc_interval_s=0)) == {}

    orphans = _published_then_deleted(admin_api, "gone", other_adapter_files)
    assert orphans <= _stored(registry_server.ctx)
    # the task as a worker runs it, without a broker: it calls collect_garbage
    report = app.tasks[GC_TASK].apply().get()
    assert report["deleted_blobs"] == len(orphans)
    assert not (orphans & _stored(registry_server.ctx))
