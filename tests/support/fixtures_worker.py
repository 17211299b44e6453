"""pytest plugin: real Celery job stacks (Redis, Postgres, moto S3, API, ``loreg worker``).

* :class:`RedisServer`: a private ``redis-server`` on a free port, nothing kept on
  disk, so a restart loses every message (like the production broker after a crash).
* :class:`WorkerProcess`: a ``loreg worker`` subprocess in its own process group,
  its output in a log file; ``kill()`` SIGKILLs the whole group.
* :func:`job_stack`: a fresh Postgres database and S3 bucket, a private Redis,
  and the API in-process (``ServerThread``) with short job delays; workers get
  the same settings through ``LOREG_*`` variables.
* ``worker_stack`` (fixture): a :class:`JobStack` for one test, no worker started.
* :func:`write_adapter`: a PEFT adapter of any size (larger ones make slow jobs).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx
import pytest

from tests.support.s3server import free_port
from tests.support.servers import ServerThread, temp_pg_database
from tests.support.waiting import wait_until

LOREG = str(Path(sys.executable).parent / "loreg")
REPO_ROOT = Path(__file__).resolve().parents[2]
TERMINAL = ("succeeded", "failed", "cancelled")
# Short delays so recovery happens within seconds (the names are the LOREG_* variables).
JOB_TIMING = {
    "LOREG_JOB_HEARTBEAT": "1",
    "LOREG_JOB_STALE_AFTER": "5",
    "LOREG_JOB_REQUEUE_AFTER": "3",
    "LOREG_VISIBILITY_TIMEOUT": "10",
}
TIMING_SETTINGS = {
    "job_heartbeat_s": 1.0,
    "job_stale_after_s": 5.0,
    "job_requeue_after_s": 3.0,
    "visibility_timeout_s": 10,
}


class RedisServer:
    """A ``redis-server`` subprocess on a loopback port, without persistence."""

    def __init__(self, port: int | None = None):
        exe = shutil.which("redis-server")
        if exe is None:
            pytest.skip(reason="redis-server is not installed (apt-get install redis-server)")
        self.exe = exe
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>/0``."""
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> Any:
        """A redis-py client on the server."""
        import redis

        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5)

    def start(self) -> RedisServer:
        """Start the server and wait until it answers PING."""
        self.process = subprocess.Popen(
            [
                self.exe,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                tempfile.gettempdir(),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(
            self._answers, timeout=20, message=f"redis-server did not start on port {self.port}"
        )
        return self

    def _answers(self) -> bool:
        """True once the server answers PING; raises RuntimeError if it has exited."""
        try:
            if self.client().ping():
                return True
        except Exception:  # noqa: BLE001 - not up yet
            pass
        assert self.process is not None
        if self.process.poll() is not None:
            raise RuntimeError(f"redis-server did not start on port {self.port}")
        return False

    def stop(self) -> None:
        """Stop the server (everything in it is lost)."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def restart(self) -> None:
        """Stop and start again on the same port: an empty broker."""
        self.stop()
        self.start()

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class WorkerProcess:
    """A ``loreg worker`` subprocess (own process group, output in a log file)."""

    def __init__(self, env: dict[str, str], log_path: Path, queues: str, concurrency: int):
        self.log_path = log_path
        self._log: IO[bytes] = open(log_path, "ab")  # noqa: SIM115 - closed in stop()/kill()
        self.process = subprocess.Popen(
            [LOREG, "worker", "--queues", queues, "--concurrency", str(concurrency)],
            env=env,
            cwd=REPO_ROOT,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        """Process id of the worker's main process (also its process group id)."""
        return self.process.pid

    def log_tail(self, chars: int = 4000) -> str:
        """The end of the worker's output, for assertion messages."""
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def _signal_group(self, sig: int) -> None:
        with suppress(ProcessLookupError):
            os.killpg(self.process.pid, sig)

    def kill(self) -> None:
        """SIGKILL the main process and its pool children at once (a crashed host)."""
        self._signal_group(signal.SIGKILL)
        self.process.wait(timeout=30)
        self._log.close()

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (warm shutdown); SIGKILL the group if it lingers."""
        if self.process.poll() is None:
            self._signal_group(signal.SIGTERM)
            with suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=timeout)
        self._signal_group(signal.SIGKILL)  # pool children left behind, if any
        if self.process.poll() is None:
            self.process.wait(timeout=30)
        self._log.close()


@dataclass
class JobStack:
    """A registry (API in-process) sending jobs through a private Redis to worker processes."""

    url: str
    token: str
    settings: Any
    ctx: Any
    redis: RedisServer
    env: dict[str, str]
    tmp: Path
    api: httpx.Client
    workers: list[WorkerProcess] = field(default_factory=list)

    def start_worker(self, queues: str = "gpu,cpu", concurrency: int = 1) -> WorkerProcess:
        """Start a ``loreg worker`` process with this stack's environment."""
        log_path = self.tmp / f"worker-{len(self.workers)}.log"
        worker = WorkerProcess(self.env, log_path, queues, concurrency)
        self.workers.append(worker)
        return worker

    def worker_logs(self) -> str:
        """Every worker's log tail (for assertion messages)."""
        return "\n".join(f"--- {w.log_path.name}\n{w.log_tail()}" for w in self.workers)

    def push(self, folder: Path, name: str, base_model: str = "tiny-llama") -> str:
        """Publish an adapter folder with the SDK; returns its ref."""
        import loreg

        with loreg.Registry(
            url=self.url, token=self.token, cache_dir=self.tmp / "cache", progress=False
        ) as reg:
            return reg.push(folder, name, base_model=base_model).ref

    def submit(self, body: dict[str, Any]) -> httpx.Response:
        """``POST /v1/jobs``."""
        return self.api.post("/v1/jobs", json=body)

    def submit_ok(self, body: dict[str, Any]) -> dict[str, Any]:
        """Submit a job that must be accepted (202); returns its view."""
        r = self.submit(body)
        assert r.status_code == 202, r.text
        return r.json()

    def job(self, job_id: str) -> dict[str, Any]:
        """``GET /v1/jobs/{id}``."""
        r = self.api.get(f"/v1/jobs/{job_id}")
        r.raise_for_status()
        return r.json()

    def wait(
        self, job_id: str, statuses: tuple[str, ...] = TERMINAL, timeout: float = 120.0
    ) -> dict[str, Any]:
        """Poll the job until its status is one of ``statuses``; fail with the logs if not."""

        def reached() -> dict[str, Any] | None:
            job = self.job(job_id)
            return job if job["status"] in statuses else None

        def failure() -> str:
            job = self.job(job_id)
            return (
                f"job {job_id} is {job['status']} after {timeout:.0f} s, expected one of "
                f"{statuses}: {job}\n{self.worker_logs()}"
            )

        return wait_until(reached, timeout=timeout, interval=0.1, message=failure)

    def resolve(self, ref: str) -> dict[str, Any]:
        """``GET /v1/resolve/{ref}``."""
        r = self.api.get(f"/v1/resolve/{ref}")
        r.raise_for_status()
        return r.json()

    def versions_of_job(self, job_id: str) -> list[tuple[str, int]]:
        """Every version registered with ``job_id`` as its idempotency key (from the DB)."""
        from sqlmodel import Session, select

        from registry.models import Adapter, Version

        with Session(self.ctx.engine) as session:
            rows = session.exec(
                select(Adapter.name, Version.number)
                .join(Adapter, Adapter.id == Version.adapter_id)
                .where(Version.job_id == job_id)
            ).all()
        return [(name, number) for name, number in rows]

    def versions_named(self, name: str) -> list[int]:
        """Version numbers of the adapter ``name`` (any namespace) in the DB."""
        from sqlmodel import Session, select

        from registry.models import Adapter, Version

        with Session(self.ctx.engine) as session:
            rows = session.exec(
                select(Version.number)
                .join(Adapter, Adapter.id == Version.adapter_id)
                .where(Adapter.name == name)
            ).all()
        return sorted(rows)


def worker_env(settings: Any, s3_endpoint: str) -> dict[str, str]:
    """The environment of a worker process with the same settings as the API."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOREG_")}
    env.update(
        {
            "LOREG_DATABASE_URL": settings.database_url,
            "LOREG_DATA_DIR": str(settings.data_dir / "worker"),
            "LOREG_SECRET_KEY": settings.secret_key,
            "LOREG_S3_BUCKET": settings.s3_bucket,
            "LOREG_S3_ENDPOINT_URL": s3_endpoint,
            "LOREG_S3_REGION": "us-east-1",
            "LOREG_S3_TRUST_CHECKSUMS": "0",
            "LOREG_REDIS_URL": settings.redis_url,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "PYTHONUNBUFFERED": "1",
            **JOB_TIMING,
        }
    )
    return env


@contextmanager
def job_stack(tmp: Path, s3_endpoint: str) -> Iterator[JobStack]:
    """A fresh database, bucket and Redis, the API serving them, no workers yet.

    Workers started with :meth:`JobStack.start_worker` are stopped on exit.
    """
    from registry.app import create_app
    from registry.serve import prepare
    from registry.settings import Settings

    with ExitStack() as stack:
        redis_server = stack.enter_context(RedisServer())
        database_url = stack.enter_context(temp_pg_database())
        settings = Settings(
            data_dir=tmp / f"registry-{uuid.uuid4().hex[:6]}",
            database_url=database_url,
            s3_bucket=f"loreg-test-{uuid.uuid4().hex[:12]}",
            s3_endpoint_url=s3_endpoint,
            s3_region="us-east-1",
            s3_trust_checksums=False,
            secret_key=secrets.token_hex(16),
            redis_url=redis_server.url,
            **TIMING_SETTINGS,
        )
        ctx, token = prepare(settings)
        stack.callback(ctx.close)
        server = stack.enter_context(ServerThread(create_app(context=ctx)))
        api = stack.enter_context(
            httpx.Client(
                base_url=server.url, timeout=60, headers={"Authorization": f"Bearer {token}"}
            )
        )
        jobs = JobStack(
            url=server.url,
            token=token,
            settings=settings,
            ctx=ctx,
            redis=redis_server,
            env=worker_env(settings, s3_endpoint),
            tmp=tmp,
            api=api,
        )
        try:
            yield jobs
        finally:
            for worker in jobs.workers:
                worker.stop(timeout=5)


@pytest.fixture
def worker_stack(tmp_path: Path, s3_endpoint: str) -> Iterator[JobStack]:
    """A :class:`JobStack` for one test (its own Redis, database and bucket; no worker)."""
    with job_stack(tmp_path, s3_endpoint) as stack:
        yield stack


def insert_job(ctx: Any, **fields: Any) -> str:
    """Insert a combine job row directly (queued, or in the state ``fields`` give)."""
    from sqlmodel import Session

    from registry.models import Job

    job = Job(type="combine", namespace="default", output="out", inputs=[], params={}, **fields)
    with Session(ctx.engine) as session:
        session.add(job)
        session.commit()
        return job.id


def write_adapter(
    folder: Path,
    *,
    layers: int = 2,
    targets: tuple[str, ...] = ("q_proj", "v_proj"),
    d: int = 64,
    r: int = 4,
    seed: int = 0,
    base_model: str = "tiny-llama",
) -> Path:
    """A PEFT LoRA adapter folder with random factors: ``layers × targets`` modules of d×d.

    Large ``d`` and many layers make the element-wise combine methods (ties) slow:
    that is how tests get a job that runs for seconds, without touching product code.
    """
    import torch
    from safetensors.torch import save_file

    from workers.ops.lora import LoraFactors, build_peft_state_dict

    gen = torch.Generator().manual_seed(seed)
    modules = {
        f"model.layers.{i}.self_attn.{t}": LoraFactors(
            torch.randn(r, d, generator=gen) * 0.1, torch.randn(d, r, generator=gen) * 0.1, 2.0
        )
        for i in range(layers)
        for t in targets
    }
    state, config = build_peft_state_dict(modules, base_model_name_or_path=base_model)
    folder.mkdir(parents=True, exist_ok=True)
    save_file(state, str(folder / "adapter_model.safetensors"))
    (folder / "adapter_config.json").write_text(json.dumps(config, indent=2, sort_keys=True))
    return folder
