"""Choosing how a job reaches a worker: Celery with a broker, else the executor given."""

from __future__ import annotations

import pytest

from registry.queue import RUN_JOB_TASK, make_app
from registry.services.dispatch import CeleryDispatcher, LocalDispatcher, make_dispatcher
from registry.settings import Settings


def _settings(tmp_path, **fields) -> Settings:
    return Settings(data_dir=tmp_path, database_url="sqlite://", **fields)


def _noop_run_job(settings: Settings, job_id: str) -> str:
    return job_id


def test_a_broker_means_celery_with_the_shared_delivery_settings(tmp_path):
    from workers.celery_app import make_celery

    settings = _settings(tmp_path, redis_url="redis://127.0.0.1:9/0", visibility_timeout_s=99)
    dispatcher = make_dispatcher(settings, _noop_run_job)
    worker = make_celery(settings)
    try:
        assert isinstance(dispatcher, CeleryDispatcher)
        sender_conf, worker_conf = dispatcher.sender.app.conf, worker.conf
        for name in ("broker_transport_options", "task_acks_late", "task_publish_retry_policy"):
            assert sender_conf[name] == worker_conf[name], name
        assert sender_conf.broker_transport_options == {"visibility_timeout": 99}
        assert RUN_JOB_TASK in worker.tasks
    finally:
        dispatcher.close()
        worker.close()


def test_no_broker_runs_the_given_executor_locally(tmp_path):
    dispatcher = make_dispatcher(_settings(tmp_path), _noop_run_job)
    try:
        assert isinstance(dispatcher, LocalDispatcher)
        assert dispatcher.run_job is _noop_run_job
    finally:
        dispatcher.close()


def test_no_broker_and_no_executor_refuses_to_enqueue(tmp_path):
    dispatcher = make_dispatcher(_settings(tmp_path))
    with pytest.raises(RuntimeError, match="no job executor"):
        dispatcher.enqueue("job-1", "cpu")


def test_the_sender_needs_a_broker_url(tmp_path):
    with pytest.raises(ValueError, match="LOREG_REDIS_URL"):
        make_app(_settings(tmp_path))
