"""Mirroring from an upstream Hub: ``mirror_import`` jobs and the mirror list, end to end.

The upstream "Hugging Face Hub" is a second loreg (SQLite + local store) serving its
``/hf`` endpoint; the downstream is ``registry_server`` (both backends) with
``hub_url`` = ``<upstream>/hf``. Jobs run through the real runner and the stock
``huggingface_hub`` client in a subprocess whose environment turns the client's
offline mode off (``HF_HUB_OFFLINE=0``; this test process keeps it on, and a job
run here is checked to refuse with that advice) and points its home at a temp dir,
so no request leaves the machine and no stored token is used.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import secrets
import subprocess
import sys
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlmodel import Session, select

import loreg
from loreg.cli.main import main as cli
from registry.models import Adapter, Blob, Mirror, Namespace, Version, VersionFile, utcnow
from registry.services import mirrors
from registry.storage.base import blob_key
from tests.support.fixtures_worker import JobStack
from tests.support.servers import RunningRegistry, ServerThread
from tests.support.tiny import save_adapter
from workers.runner import run_job

REPO = "up-org/some-lora"
SQLITE_ONLY = pytest.mark.parametrize("registry_server", ["sqlite_local"], indirect=True)
RUNNER = (
    "import json, sys\n"
    "from registry.services.context import Context\n"
    "from registry.settings import Settings\n"
    "from workers.runner import run_job\n"
    "print(run_job(Context.from_settings(Settings(**json.loads(sys.argv[1]))), sys.argv[2]))\n"
)


class _Held:
    """Keeps submitted jobs queued: each test runs them itself (in a subprocess)."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    def enqueue(self, job_id: str, queue: str) -> None:
        self.sent.append(job_id)

    def close(self) -> None:
        pass


@contextmanager
def _upstream_hub(tmp_path: Path, wrap: Callable[[Any], Any] | None = None):
    """A loreg on SQLite + local store serving as the upstream hub (``wrap``: around its
    app); its namespace ``up-org`` is private."""
    from registry.app import create_app
    from registry.serve import prepare
    from registry.settings import Settings

    data_dir = tmp_path / f"upstream-{uuid.uuid4().hex[:6]}"
    settings = Settings(
        data_dir=data_dir,
        database_url=f"sqlite:///{data_dir / 'loreg.db'}",
        secret_key=secrets.token_hex(16),
    )
    with ExitStack() as stack:
        ctx, token = prepare(settings)
        assert token is not None
        stack.callback(ctx.engine.dispose)
        app = create_app(context=ctx)
        server = stack.enter_context(ServerThread(wrap(app) if wrap else app))
        up = RunningRegistry(server.url, token, settings, ctx, "sqlite_local")
        with _sdk(up, tmp_path) as reg:
            reg.api.post("/v1/namespaces", {"name": "up-org", "private": True})
        yield up


@pytest.fixture
def upstream(tmp_path) -> Iterator[RunningRegistry]:
    """The upstream hub (see :func:`_upstream_hub`)."""
    with _upstream_hub(tmp_path) as up:
        yield up


@pytest.fixture
def registry_settings_overrides(upstream) -> dict:
    """The downstream's upstream hub is the upstream loreg's /hf, with its admin token."""
    return {"hub_url": f"{upstream.url}/hf", "hub_token": upstream.admin_token, "mirror_poll_s": 0}


@pytest.fixture
def down(registry_server, tmp_path) -> Iterator[loreg.Registry]:
    """An SDK client on the downstream registry (jobs held for the test to run)."""
    registry_server.ctx._dispatcher = _Held()
    with _sdk(registry_server, tmp_path) as reg:
        yield reg


def _sdk(server: RunningRegistry, tmp_path: Path) -> loreg.Registry:
    return loreg.Registry(
        url=server.url,
        token=server.admin_token,
        cache_dir=tmp_path / f"cache-{uuid.uuid4().hex[:6]}",
        progress=False,
    )


def _push_upstream(upstream: RunningRegistry, tmp_path: Path, seed: int) -> dict[str, Any]:
    """Publish a tiny adapter as the next version of ``up-org/some-lora``; its resolve view."""
    folder = save_adapter(tmp_path / f"adapter-{seed}", seed=seed)
    (folder / "README.md").write_text(
        f"---\ntags:\n- medical\n- seed-{seed}\n---\n# some-lora\n\nA tiny LoRA, seed {seed}.\n"
    )
    with _sdk(upstream, tmp_path) as reg:
        ref = reg.push(folder, "some-lora", namespace="up-org").ref
        return reg.resolve(ref)


def _commit(resolved: dict[str, Any]) -> str:
    """The upstream's Hub commit id of a version: its digest's first 40 hex digits."""
    return resolved["digest"].removeprefix("sha256:")[:40]


def _run_elsewhere(settings: Any, job_id: str, tmp_path: Path) -> str:
    """Run a job with the real runner in a subprocess whose Hugging Face client is online."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOREG_", "HF_"))}
    env.update(
        HF_HUB_OFFLINE="0",
        TRANSFORMERS_OFFLINE="0",
        HF_HOME=str(tmp_path / "hf-home"),
        HF_HUB_DISABLE_TELEMETRY="1",
    )
    values = json.dumps(settings.model_dump(mode="json"))
    done = subprocess.run(
        [sys.executable, "-c", RUNNER, values, job_id],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout.strip().splitlines()[-1]


def _versions(down: loreg.Registry, name: str = "acme/some-lora") -> list[int]:
    return sorted(v["version"] for v in down.versions(name))


def _file_hashes(resolved: dict[str, Any]) -> dict[str, str]:
    return {f["path"]: f["sha256"] for f in resolved["files"]}


def test_import_publishes_the_upstream_commit_once_with_mirrored_from_lineage(
    registry_server, upstream, down, tmp_path, capsys
):
    pushed = _push_upstream(upstream, tmp_path, seed=1)
    code = cli(
        [
            "mirror",
            "import",
            f"hf://{REPO}",
            "--as",
            "acme/some-lora",
            "--url",
            registry_server.url,
            "--token",
            registry_server.admin_token,
            "--json",
        ]
    )
    assert code == 0
    job = json.loads(capsys.readouterr().out)
    assert (job["type"], job["status"], job["namespace"], job["output"]) == (
        "mirror_import",
        "queued",
        "acme",
        "some-lora",
    )
    assert job["params"] == {"repo": REPO}
    assert _run_elsewhere(registry_server.settings, job["id"], tmp_path) == "succeeded"
    done = down.job(job["id"])
    commit = _commit(pushed)
    assert done["result"]["ref"] == "acme/some-lora-v1"
    assert done["result"]["skipped"] is False
    assert done["result"]["upstream"] == {
        "upstream_url": f"{upstream.url}/hf",
        "repo": REPO,
        "revision": None,
        "commit": commit,
    }
    assert done["result"]["left_out"] == []

    mirrored = down.resolve("acme/some-lora-v1")
    assert _file_hashes(mirrored) == _file_hashes(pushed)  # every file, the same bytes
    # the upstream card's metadata fills tags and description
    assert mirrored["description"] == "A tiny LoRA, seed 1."
    assert mirrored["metadata"]["tags"] == ["medical", "seed-1"]
    folder = down.pull("acme/some-lora-v1")
    for f in pushed["files"]:
        assert hashlib.sha256((folder / f["path"]).read_bytes()).hexdigest() == f["sha256"]
    [edge] = [e for e in mirrored["lineage"] if e["relation"] == "mirrored_from"]
    assert edge["parent"] == {
        "kind": "upstream",
        "ref": f"hf://{REPO}@{commit}",
        "digest": None,
        "private": False,
    }
    assert edge["params"]["commit"] == commit
    assert edge["params"]["upstream_url"] == f"{upstream.url}/hf"
    ancestry = down.lineage("acme/some-lora-v1")
    assert [e["parent"]["kind"] for e in ancestry["edges"]] == ["upstream"]

    # the same upstream commit again (now named by its commit): nothing new
    again = down.mirror_import(f"hf://{REPO}@{commit}", "acme/some-lora")
    assert _run_elsewhere(registry_server.settings, again["id"], tmp_path) == "succeeded"
    result = down.job(again["id"])["result"]
    assert (result["skipped"], result["ref"]) == (True, "acme/some-lora-v1")
    assert "nothing new" in down.job(again["id"])["message"]
    assert _versions(down) == [1]


def test_mirror_syncs_are_idempotent_and_follow_new_upstream_versions(
    registry_server, upstream, down, tmp_path
):
    first = _push_upstream(upstream, tmp_path, seed=1)
    mirror = down.add_mirror(f"hf://{REPO}@main", "acme/some-lora", every="6h")
    assert (mirror["repo"], mirror["revision"], mirror["interval_s"]) == (REPO, "main", 6 * 3600)
    assert down.mirrors()[0]["id"] == mirror["id"]

    # one tick of the scheduler loop submits the due mirror's sync; the next finds none due
    ctx = registry_server.ctx
    sent: list[tuple[str, str]] = []
    [job_id] = mirrors.scheduled_pass(ctx, lambda job, queue: sent.append((job, queue)))
    assert sent == [(job_id, "cpu")]
    assert mirrors.scheduled_pass(ctx, lambda *_: None) == []
    assert _run_elsewhere(registry_server.settings, job_id, tmp_path) == "succeeded"
    assert _versions(down) == [1]
    [listed] = down.mirrors()
    assert (listed["last_status"], listed["last_commit"]) == ("succeeded", _commit(first))
    assert listed["last_synced_at"] is not None

    # a re-sync of the unchanged upstream changes nothing
    [sync] = down.sync_mirrors(mirror["id"])
    assert sync["submitted"] is True
    assert _run_elsewhere(registry_server.settings, sync["job"]["id"], tmp_path) == "succeeded"
    assert down.job(sync["job"]["id"])["result"]["skipped"] is True
    assert _versions(down) == [1]

    # a new upstream version is picked up by the next sync
    second = _push_upstream(upstream, tmp_path, seed=2)
    [sync] = down.sync_mirrors(mirror["id"])
    [still] = down.sync_mirrors(mirror["id"])  # the first is still queued: no second job
    assert (still["submitted"], still["job"]["id"]) == (False, sync["job"]["id"])
    assert _run_elsewhere(registry_server.settings, sync["job"]["id"], tmp_path) == "succeeded"
    assert _versions(down) == [1, 2]
    assert _file_hashes(down.resolve("acme/some-lora-v2")) == _file_hashes(second)
    [listed] = down.mirrors()
    assert listed["last_commit"] == _commit(second)

    # two scheduler loops at one due time: only one claim wins
    with Session(ctx.engine) as session:
        row = session.get(Mirror, mirror["id"])
        assert row is not None
        row.next_sync_at = utcnow() - timedelta(seconds=1)
        session.add(row)
        session.commit()
        session.refresh(row)
        now = utcnow()
        assert mirrors._claim(session, row, now) is True
        assert mirrors._claim(session, row, now) is False
        session.rollback()

    down.remove_mirror(mirror["id"])
    assert down.mirrors() == []
    assert _versions(down) == [1, 2]  # the mirrored versions stay


def _store_blob(ctx: Any, session: Session, data: bytes) -> str:
    import io

    sha = hashlib.sha256(data).hexdigest()
    ctx.store.put(blob_key(sha), io.BytesIO(data), size=len(data), sha256=sha)
    if session.get(Blob, sha) is None:
        session.add(Blob(sha256=sha, size=len(data)))
    return sha


PICKLE = b"\x80\x04\x95" + secrets.token_bytes(64)


def _hub_repo(upstream: RunningRegistry, name: str, files: dict[str, bytes]) -> None:
    """An upstream repo ``up-org/<name>`` holding ``files`` as they are (pickles too).

    loreg refuses to publish a pickle, so the rows are written directly: the upstream
    plays a Hub that stores whatever it was given (as huggingface.co does).
    """
    with Session(upstream.ctx.engine) as session:
        ns = session.exec(select(Namespace).where(Namespace.name == "up-org")).one()
        adapter = Adapter(namespace_id=ns.id, name=name)
        session.add(adapter)
        session.flush()
        version = Version(
            adapter_id=adapter.id,
            number=1,
            digest="sha256:" + hashlib.sha256(name.encode()).hexdigest(),
            size=sum(len(b) for b in files.values()),
        )
        session.add(version)
        session.flush()
        for path, data in files.items():
            sha = _store_blob(upstream.ctx, session, data)
            session.add(
                VersionFile(version_id=version.id, path=path, blob_sha256=sha, size=len(data))
            )
        session.commit()


@SQLITE_ONLY
def test_a_pickle_only_upstream_fails_the_job_with_a_clear_message(
    registry_server, upstream, down, tmp_path
):
    config = {"peft_type": "LORA", "r": 2, "lora_alpha": 4, "target_modules": ["q_proj"]}
    _hub_repo(
        upstream,
        "pickled",
        {"adapter_config.json": json.dumps(config).encode(), "adapter_model.bin": PICKLE},
    )
    job = down.mirror_import("hf://up-org/pickled", "acme/pickled")
    assert _run_elsewhere(registry_server.settings, job["id"], tmp_path) == "failed"
    error = down.job(job["id"])["error"]
    assert "adapter_model.bin" in error and "pickle" in error, error
    assert "adapter_model.safetensors" in error, error
    with pytest.raises(loreg.NotFoundError):
        down.resolve("acme/pickled")


@SQLITE_ONLY
def test_a_private_upstream_without_a_token_is_not_found_and_names_the_token_setting(
    registry_server, upstream, down, tmp_path
):
    _push_upstream(upstream, tmp_path, seed=1)
    job = down.mirror_import(f"hf://{REPO}", "acme/some-lora")
    no_token = registry_server.settings.with_overrides(hub_token=None)
    assert _run_elsewhere(no_token, job["id"], tmp_path) == "failed"
    error = down.job(job["id"])["error"]
    assert "not found" in error and "LOREG_HUB_TOKEN" in error, error
    missing = down.mirror_import("hf://up-org/no-such-lora", "acme/other")
    assert _run_elsewhere(registry_server.settings, missing["id"], tmp_path) == "failed"
    assert "not found" in down.job(missing["id"])["error"]


@SQLITE_ONLY
def test_an_offline_worker_refuses_with_advice_instead_of_failing_obscurely(
    registry_server, upstream, down, tmp_path
):
    assert os.environ.get("HF_HUB_OFFLINE") == "1"  # this process: huggingface_hub offline
    job = down.mirror_import(f"hf://{REPO}", "acme/some-lora")
    assert run_job(registry_server.ctx, job["id"]) == "failed"
    assert "HF_HUB_OFFLINE" in down.job(job["id"])["error"]


@SQLITE_ONLY
def test_bad_mirror_requests_are_4xx_naming_the_problem(registry_server, down):
    for body, field in (
        ({"type": "mirror_import", "output": "x", "params": {"repo": "datasets/a/b"}}, "model"),
        ({"type": "mirror_import", "output": "x", "params": {}}, "params.repo"),
        ({"type": "mirror_import", "output": "x", "params": {"repo": "a/b", "rank": 2}}, "rank"),
    ):
        r = down.api._http.post("/v1/jobs", json=body)
        assert r.status_code == 422, r.text
        assert field in r.json()["error"]["message"], r.text
    down.add_mirror(f"hf://{REPO}", "acme/some-lora")
    r = down.api._http.post(
        "/v1/mirrors", json={"repo": REPO, "name": "some-lora", "namespace": "acme"}
    )
    assert r.status_code == 409 and "already mirrors" in r.text, r.text
    r = down.api._http.post("/v1/mirrors", json={"repo": "no slash", "name": "x"})
    assert r.status_code == 422, r.text
    mirror_id = down.mirrors()[0]["id"]
    with httpx.Client(base_url=registry_server.url) as anonymous:
        assert [m["id"] for m in anonymous.get("/v1/mirrors").json()] == [mirror_id]
        assert anonymous.get(f"/v1/mirrors/{mirror_id}").status_code == 200
        assert anonymous.delete(f"/v1/mirrors/{mirror_id}").status_code == 401
        assert anonymous.post(f"/v1/mirrors/{mirror_id}/sync").status_code == 401
        assert anonymous.post("/v1/mirrors/sync").json() == []
    assert down.api._http.delete("/v1/mirrors/999").status_code == 404
    assert down.api._http.get("/v1/mirrors/0").status_code == 422


@SQLITE_ONLY
def test_files_the_registry_does_not_store_are_left_out_and_reported(
    registry_server, upstream, down, tmp_path
):
    folder = save_adapter(tmp_path / "adapter-mixed", seed=3)
    kept = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
    _hub_repo(upstream, "mixed", {**kept, "adapter_model.bin": PICKLE, "train.exe": b"MZ\x90\x00"})
    job = down.mirror_import("hf://up-org/mixed", "acme/mixed")
    assert _run_elsewhere(registry_server.settings, job["id"], tmp_path) == "succeeded"
    result = down.job(job["id"])["result"]
    left_out = {item["path"]: item["reason"] for item in result["left_out"]}
    assert set(left_out) == {"adapter_model.bin", "train.exe"}
    assert "pickle" in left_out["adapter_model.bin"]
    assert "not a kind of file" in left_out["train.exe"]
    mirrored = down.resolve(result["ref"])
    assert _file_hashes(mirrored) == {p: hashlib.sha256(b).hexdigest() for p, b in kept.items()}


class StalledLink:
    """ASGI wrapper of the upstream: counts file GETs; the GET of ``stall`` waits until
    :attr:`released` (a transfer that hangs mid-job, so the worker can be killed in it)."""

    def __init__(self, app: Any, stall: str):
        self.app = app
        self.stall = stall
        self.gets: Counter[str] = Counter()
        self.reached = threading.Event()
        self.released = threading.Event()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "GET" and "/resolve/" in scope["path"]:
            name = scope["path"].rsplit("/", 1)[-1]
            self.gets[name] += 1
            if name == self.stall:
                self.reached.set()
                while not self.released.is_set():
                    await asyncio.sleep(0.05)
        await self.app(scope, receive, send)


def test_a_worker_killed_mid_transfer_is_retried_and_ends_with_one_version(
    worker_stack: JobStack, tmp_path
):
    stack = worker_stack
    links: list[StalledLink] = []

    def stalled(app: Any) -> StalledLink:
        links.append(StalledLink(app, "adapter_model.safetensors"))
        return links[0]

    with _upstream_hub(tmp_path, wrap=stalled) as up:
        link = links[0]
        try:
            pushed = _push_upstream(up, tmp_path, seed=1)
            stack.env.update(
                LOREG_HUB_URL=f"{up.url}/hf",
                LOREG_HUB_TOKEN=up.admin_token,
                LOREG_MIRROR_POLL_S="0",
                HF_HUB_OFFLINE="0",
                TRANSFORMERS_OFFLINE="0",
                HF_HOME=str(tmp_path / "hf-home"),
                HF_HUB_DISABLE_TELEMETRY="1",
            )
            first = stack.start_worker()
            job_id = stack.submit_ok(
                {"type": "mirror_import", "params": {"repo": REPO}, "output": "some-lora"}
            )["id"]
            assert link.reached.wait(60), stack.worker_logs()
            first.kill()  # mid-transfer: the weights are on their way
            assert stack.versions_of_job(job_id) == []
            link.released.set()

            stack.start_worker()  # same data dir: the same Hugging Face cache
            job = stack.wait(job_id, timeout=120)
            assert job["status"] == "succeeded", (job, stack.worker_logs())
            assert job["attempts"] >= 2
            assert stack.versions_named("some-lora") == [1]
            assert stack.versions_of_job(job_id) == [("some-lora", 1)]
            mirrored = stack.resolve(job["result"]["ref"])
            assert _file_hashes(mirrored) == _file_hashes(pushed)
            # the files the first attempt finished came from the cache, not the upstream
            assert link.gets["adapter_config.json"] == 1, link.gets
            assert link.gets["adapter_model.safetensors"] == 2, link.gets
        finally:
            link.released.set()
