"""Computed cards end to end, on Postgres + S3 and SQLite + local (docs/design.md, Cards).

Every figure is checked against numbers computed here from the tensors the test
wrote (a dense float64 SVD of s·B·A per module), not against the card code. The
card jobs run in-process with ``run_job`` (the dispatcher only records what it is
sent), except in the embedded-executor test, which lets the server's own local
executor run them. The store is instrumented through a real subclass of the
backend's store class, to check that the job reads by range: the header, then one
tensor at a time, never the whole file.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import threading
import time
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import save
from sqlmodel import Session, select

import loreg
from loreg import cli
from registry.models import Adapter, Job, Version, VersionCard
from registry.storage.base import blob_key
from tests.support.dispatch import RecordingDispatcher
from tests.support.publish import publish
from workers.runner import run_job

PREFIX = "base_model.model."
REL = 1e-6
README = "# Ünïcode card test\n\nA hand-made adapter whose card is checked against the math.\n"


# ------------------------------------------------------------------ the adapter


#: (module, d, k, rank, dtype): rank 2 for layer 1's q_proj (rank_pattern), bf16 and fp16 too.
MODULES = [
    ("model.layers.0.self_attn.q_proj", 32, 24, 4, torch.float32),
    ("model.layers.0.self_attn.v_proj", 16, 24, 4, torch.bfloat16),
    ("model.layers.1.self_attn.q_proj", 32, 24, 2, torch.float32),
    ("model.layers.1.self_attn.v_proj", 16, 24, 4, torch.float16),
]
CONFIG = {
    "peft_type": "LORA",
    "task_type": "CAUSAL_LM",
    "r": 4,
    "lora_alpha": 8,
    "use_rslora": True,
    "target_modules": ["q_proj", "v_proj"],
    "rank_pattern": {"model.layers.1.self_attn.q_proj": 2},
    "alpha_pattern": {"v_proj": 32},
    "lora_dropout": 0.0,
    "bias": "none",
    "base_model_name_or_path": None,
}


def make_adapter(seed: int = 0) -> tuple[dict[str, bytes], dict[str, tuple[torch.Tensor, ...]]]:
    """The adapter's files and ``{module: (A, B)}`` as stored (layer 0 v_proj rank-deficient)."""
    gen = torch.Generator().manual_seed(seed)
    tensors: dict[str, torch.Tensor] = {}
    factors = {}
    for module, d, k, r, dtype in MODULES:
        A = torch.randn(r, k, generator=gen, dtype=torch.float64)
        B = torch.randn(d, r, generator=gen, dtype=torch.float64)
        if module.endswith("0.self_attn.v_proj"):
            B[:, 3] = B[:, 0] + B[:, 1]  # rank 3 < r
        A, B = A.to(dtype), B.to(dtype)
        tensors[f"{PREFIX}{module}.lora_A.weight"] = A.contiguous()
        tensors[f"{PREFIX}{module}.lora_B.weight"] = B.contiguous()
        factors[module] = (A, B)
    files = {
        "adapter_config.json": json.dumps(CONFIG).encode(),
        "adapter_model.safetensors": save(tensors),
        "README.md": README.encode(),
    }
    return files, factors


def expected_module(module: str, A: torch.Tensor, B: torch.Tensor) -> dict[str, Any]:
    """What the card must say of one module, from the dense float64 delta."""
    r = A.shape[0]
    alpha = 32.0 if module.endswith("v_proj") else 8.0
    s = alpha / math.sqrt(r)  # rsLoRA
    dense = s * (B.double().numpy() @ A.double().numpy())
    sigma = np.linalg.svd(dense, compute_uv=False)[:r]
    p = sigma[sigma > 0] / sigma.sum()
    return {
        "rank": r,
        "alpha": alpha,
        "scaling": s,
        "sigma": sigma,
        "norm": float(np.linalg.norm(dense)),
        "effective_rank": float(np.exp(-np.sum(p * np.log(p)))),
        "numerical_rank": int(np.linalg.matrix_rank(dense)),
        "energy1": float(sigma[0] ** 2 / np.sum(sigma**2)),
        "parameter_count": (B.shape[0] + A.shape[1]) * r,
    }


def assert_card_matches(card: dict[str, Any], factors: dict[str, tuple[torch.Tensor, ...]]):
    """Every module's figures and the totals against the math."""
    by_name = {m["name"]: m for m in card["modules"]}
    assert sorted(by_name) == sorted(factors)
    total_sq = 0.0
    for module, (A, B) in factors.items():
        want, got = expected_module(module, A, B), by_name[module]
        assert got["rank"] == want["rank"] and got["alpha"] == want["alpha"]
        assert got["scaling"] == pytest.approx(want["scaling"], rel=1e-12)
        assert got["parameter_count"] == want["parameter_count"]
        sigma = np.array(got["singular_values"])
        top = want["sigma"][0]
        for g, w in zip(sigma, want["sigma"], strict=True):
            assert abs(g - w) <= REL * (w if w > 1e-9 * top else top), (module, g, w)
        assert got["frobenius_norm"] == pytest.approx(want["norm"], rel=REL)
        assert got["effective_rank"] == pytest.approx(want["effective_rank"], rel=REL)
        assert got["numerical_rank"] == want["numerical_rank"]
        assert got["energy_top_k"]["1"] == pytest.approx(want["energy1"], rel=REL)
        total_sq += want["norm"] ** 2
    assert card["frobenius_norm"] == pytest.approx(math.sqrt(total_sq), rel=REL)
    assert card["ranks"] == [2, 4] and card["alphas"] == [8.0, 32.0]
    assert card["use_rslora"] is True and card["storage"] == "peft"
    assert card["dtypes"] == ["BF16", "F16", "F32"]
    assert card["lora_parameter_count"] == sum(A.numel() + B.numel() for A, B in factors.values())
    assert card["module_count"] == 4


# ------------------------------------------------------------------ helpers


@pytest.fixture
def recorded(registry_server) -> RecordingDispatcher:
    """Card jobs are recorded, not run: each test runs them with ``run_job``."""
    recorder = RecordingDispatcher()
    registry_server.ctx._dispatcher = recorder
    return recorder


def card_path(name: str, number: int, namespace: str = "default") -> str:
    return f"/v1/adapters/{namespace}/{name}/versions/{number}/card"


def publish_ok(api, name: str, files: dict[str, bytes]) -> dict[str, Any]:
    r, _ = publish(api, name, files)
    assert r.status_code in (200, 201), r.text
    return r.json()


def card_jobs(api) -> list[dict[str, Any]]:
    r = api.get("/v1/jobs", params={"type": "card", "limit": 200})
    assert r.status_code == 200, r.text
    return r.json()["items"]


def run_card(ctx, job_id: str) -> str:
    return run_job(ctx, job_id)


def view_version_id(ctx, name: str) -> int:
    """The id of version 1 of ``default/name`` (its card row's key)."""
    with Session(ctx.engine) as session:
        return session.exec(
            select(Version.id)
            .join(Adapter, Adapter.id == Version.adapter_id)
            .where(Adapter.name == name, Version.number == 1)
        ).one()


# ------------------------------------------------------------------ tests


def test_publish_makes_a_pending_card_then_a_ready_one(
    registry_server, admin_api, recorded, tmp_path, capsys
):
    files, factors = make_adapter()
    publish_ok(admin_api, "handmade", files)
    # pending at once, with a queued card job on the cpu queue, sent after the commit
    pending = admin_api.get(card_path("handmade", 1)).json()
    assert pending["card_status"] == "pending" and pending["card"] is None
    [job] = card_jobs(admin_api)
    assert (job["type"], job["status"], job["queue"]) == ("card", "queued", "cpu")
    assert recorded.sent == [(job["id"], "cpu")] and pending["job_id"] == job["id"]
    # the registry's own jobs stay out of the default job list
    assert all(j["type"] != "card" for j in admin_api.get("/v1/jobs").json()["items"])
    detail = admin_api.get("/v1/adapters/default/handmade").json()
    assert detail["recent_versions"]["items"][0]["card_status"] == "pending"

    assert run_card(registry_server.ctx, job["id"]) == "succeeded"
    view = admin_api.get(card_path("handmade", 1)).json()
    assert view["card_status"] == "ready", view
    card = view["card"]
    assert_card_matches(card, factors)
    assert view["readme"] == README and card["readme_truncated"] is False
    weights = files["adapter_model.safetensors"]
    assert card["weights_bytes"] == len(weights)
    assert card["size_bytes"] == sum(len(b) for b in files.values())
    assert card["parameter_count"] == card["lora_parameter_count"]
    assert admin_api.get(f"/v1/jobs/{job['id']}").json()["result"]["card_status"] == "ready"
    detail = admin_api.get("/v1/adapters/default/handmade").json()
    assert detail["recent_versions"]["items"][0]["card_status"] == "ready"
    # not in the resolve answer (its bytes are a contract)
    assert "card_status" not in admin_api.get("/v1/resolve/handmade-v1").json()

    def registry(args):
        return loreg.Registry(
            url=registry_server.url,
            token=registry_server.admin_token,
            cache_dir=tmp_path / "cache",
            progress=False,
        )

    with registry(None) as sdk:  # the SDK's view is the API's
        assert sdk.card("handmade") == admin_api.get(card_path("handmade", 1)).json()
    assert cli.main(["show", "handmade-v1", "--modules"], registry_factory=registry) == 0
    out = capsys.readouterr().out
    assert "card: ready" in out and "card ready" in out  # the block, and the versions line
    assert "model.layers.1.self_attn.q_proj" in out and "ranks: 2, 4" in out
    assert cli.main(["show", "handmade-v1", "--json"], registry_factory=registry) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["card"]["card_status"] == "ready"
    assert shown["card"]["card"]["module_count"] == 4


def test_card_text_is_the_readme_and_the_facts(registry_server, admin_api, recorded):
    from registry.services import cards

    files, _ = make_adapter(seed=3)
    publish_ok(admin_api, "texty", files)
    [job] = card_jobs(admin_api)
    with Session(registry_server.ctx.engine) as session:
        row = session.exec(select(VersionCard)).one()
        assert cards.card_text(session, row.version_id) is None  # not ready yet
    assert run_card(registry_server.ctx, job["id"]) == "succeeded"
    with Session(registry_server.ctx.engine) as session:
        text = cards.card_text(session, row.version_id)
    assert text is not None and README.strip() in text and "LORA" in text
    # the card job rewrote the search document: the README's words now find the adapter
    word = max(README.split(), key=len).strip(".,:;!?#*`()").lower()
    hits = admin_api.get("/v1/search", params={"q": word}).json()["items"]
    assert [h["name"] for h in hits] == ["texty"], (word, hits)


class RangeCounter:
    """What the instrumented store was asked for: every range read and every full open."""

    def __init__(self) -> None:
        self.ranges: list[tuple[str, int, int]] = []
        self.opens: list[str] = []
        self.lock = threading.Lock()


def instrument(ctx) -> RangeCounter:
    """Swap the context's store for a real subclass of its class that counts its reads."""
    counter = RangeCounter()
    base = type(ctx.store)

    class CountingStore(base):  # type: ignore[misc, valid-type]
        def read_range(self, key: str, start: int, end: int) -> bytes:
            with counter.lock:
                counter.ranges.append((key, start, end))
            return super().read_range(key, start, end)

        def open(self, key: str, **kwargs: Any):
            with counter.lock:
                counter.opens.append(key)
            return super().open(key, **kwargs)

    store = object.__new__(CountingStore)
    store.__dict__.update(ctx.store.__dict__)
    ctx.store = store
    return counter


def test_the_job_reads_the_header_then_one_tensor_at_a_time(registry_server, admin_api, recorded):
    from registry.validation.safetensors_header import parse_safetensors_bytes

    files, factors = make_adapter(seed=5)
    publish_ok(admin_api, "ranged", files)
    [job] = card_jobs(admin_api)
    counter = instrument(registry_server.ctx)
    assert run_card(registry_server.ctx, job["id"]) == "succeeded"
    assert_card_matches(admin_api.get(card_path("ranged", 1)).json()["card"], factors)

    weights = files["adapter_model.safetensors"]
    key = blob_key(hashlib.sha256(weights).hexdigest())
    assert key not in counter.opens  # never streamed whole
    header = parse_safetensors_bytes(weights)
    data_start = 8 + header.header_size
    tensor_ranges = {(data_start + t.start, data_start + t.end) for t in header.tensors.values()}
    reads = [(s, e) for k, s, e in counter.ranges if k == key]
    assert reads[:2] == [(0, 8), (8, data_start)]  # the length, then the header
    # then each tensor once, by exactly its own range, and nothing else
    assert sorted(reads[2:]) == sorted(tensor_ranges)
    largest = max(t.end - t.start for t in header.tensors.values())
    assert max(e - s for s, e in reads) <= max(largest, header.header_size) < len(weights)
    readme_key = blob_key(hashlib.sha256(files["README.md"]).hexdigest())
    assert [(s, e) for k, s, e in counter.ranges if k == readme_key] == [(0, len(README.encode()))]


def test_a_missing_blob_fails_the_card_and_a_retry_makes_it_ready(
    registry_server, admin_api, recorded
):
    ctx = registry_server.ctx
    files, factors = make_adapter(seed=9)
    publish_ok(admin_api, "lost", files)
    [job] = card_jobs(admin_api)
    weights = files["adapter_model.safetensors"]
    key = blob_key(hashlib.sha256(weights).hexdigest())
    ctx.store.delete(key)

    assert run_card(ctx, job["id"]) == "failed"  # a failed job, not a crashed worker
    view = admin_api.get(card_path("lost", 1)).json()
    assert view["card_status"] == "failed" and view["card"] is None
    assert "missing from the store" in view["error"]
    assert "missing from the store" in admin_api.get(f"/v1/jobs/{job['id']}").json()["error"]
    detail = admin_api.get("/v1/adapters/default/lost").json()
    assert detail["recent_versions"]["items"][0]["card_status"] == "failed"

    # retrying while the bytes are still gone fails again (through the SDK)
    with loreg.Registry(
        url=registry_server.url, token=registry_server.admin_token, progress=False
    ) as sdk:
        retried = sdk.recompute_card("lost-v1")
    assert retried["card_status"] == "pending" and retried["job_id"] != job["id"]
    assert run_card(ctx, retried["job_id"]) == "failed"
    assert admin_api.get(card_path("lost", 1)).json()["card_status"] == "failed"
    # the bytes come back; recomputing (write scope) makes a new job and a ready card
    ctx.store.put(key, io.BytesIO(weights), size=len(weights))
    again = admin_api.post(card_path("lost", 1))
    assert again.status_code == 202, again.text
    assert again.json()["card_status"] == "pending"
    assert again.json()["job_id"] not in (job["id"], retried["job_id"])
    new_job = again.json()["job_id"]
    assert recorded.sent[-1] == (new_job, "cpu")
    # the superseded job cannot overwrite the new one's row
    with Session(ctx.engine) as session:
        from registry.services import cards

        assert not cards.record_failed(session, view_version_id(ctx, "lost"), job["id"], "old")
    assert run_card(ctx, new_job) == "succeeded"
    view = admin_api.get(card_path("lost", 1)).json()
    assert view["card_status"] == "ready" and view["error"] is None
    assert_card_matches(view["card"], factors)


def test_a_card_job_whose_attempts_ran_out_reads_failed(registry_server, admin_api, recorded):
    ctx = registry_server.ctx
    files, _ = make_adapter(seed=2)
    publish_ok(admin_api, "stuck", files)
    [job] = card_jobs(admin_api)
    with Session(ctx.engine) as session:  # the runner gave up on it (no handler ran)
        row = session.get(Job, job["id"])
        row.status, row.error = "failed", "gave up after 5 attempts"
        session.add(row)
        session.commit()
    view = admin_api.get(card_path("stuck", 1)).json()
    assert view["card_status"] == "failed" and "gave up after 5 attempts" in view["error"]


def test_backfill_gives_old_versions_a_card(registry_server, admin_api, recorded, capsys, tmp_path):
    ctx = registry_server.ctx
    made = [make_adapter(seed=s) for s in (11, 12, 13)]
    for n, (files, _) in enumerate(made):
        publish_ok(admin_api, f"old{n}", files)
    # as if published before cards existed: no card rows, no card jobs
    with Session(ctx.engine) as session:
        for row in session.exec(select(VersionCard)).all():
            session.delete(row)
        for job in session.exec(select(Job).where(Job.type == "card")).all():
            session.delete(job)
        session.commit()
    before = admin_api.get(card_path("old0", 1)).json()
    assert before["card_status"] == "pending" and before["job_id"] is None
    recorded.sent.clear()

    # admin only
    with_anon = admin_api.post(
        "/v1/admin/cards/backfill", headers={"Authorization": ""}, params={"limit": 1}
    )
    assert with_anon.status_code == 401
    assert admin_api.post("/v1/admin/cards/backfill", params={"limit": 0}).status_code == 422
    # bounded batches: one, then the rest, then nothing
    first = admin_api.post("/v1/admin/cards/backfill", params={"limit": 1}).json()
    assert first == {"submitted": 1, "remaining": 2}

    def registry(args):
        return loreg.Registry(
            url=registry_server.url,
            token=registry_server.admin_token,
            cache_dir=tmp_path / "cache",
            progress=False,
        )

    code = cli.main(["admin", "cards", "--backfill", "--limit", "1"], registry_factory=registry)
    assert code == 0
    out = capsys.readouterr().out
    assert "card jobs submitted: 2" in out and "without a card: 0" in out
    again = admin_api.post("/v1/admin/cards/backfill").json()
    assert again == {"submitted": 0, "remaining": 0}
    jobs = card_jobs(admin_api)
    assert len(jobs) == 3 and sorted(j for j, _ in recorded.sent) == sorted(j["id"] for j in jobs)
    for job in jobs:
        assert run_card(ctx, job["id"]) == "succeeded"
    for n, (_, factors) in enumerate(made):
        view = admin_api.get(card_path(f"old{n}", 1)).json()
        assert view["card_status"] == "ready"
        assert_card_matches(view["card"], factors)


def test_the_embedded_executor_computes_the_card(registry_server, admin_api):
    """No recorder: the server's own executor (a child process) runs the card job."""
    files, factors = make_adapter(seed=21)
    publish_ok(admin_api, "live", files)
    deadline = time.monotonic() + 180
    view = admin_api.get(card_path("live", 1)).json()
    while view["card_status"] == "pending" and time.monotonic() < deadline:
        time.sleep(0.5)
        view = admin_api.get(card_path("live", 1)).json()
    assert view["card_status"] == "ready", view
    assert_card_matches(view["card"], factors)


def test_card_routes_refuse_bad_input(registry_server, admin_api, anon_api, recorded):
    files, _ = make_adapter(seed=1)
    publish_ok(admin_api, "routes", files)
    assert admin_api.get(card_path("routes", 2)).status_code == 404
    assert admin_api.get(card_path("nope", 1)).status_code == 404
    assert admin_api.get(card_path("routes", 0)).status_code == 422
    assert admin_api.get("/v1/adapters/default/routes/versions/x/card").status_code == 422
    assert anon_api.post(card_path("routes", 1)).status_code in (401, 403)
    r = admin_api.post(
        "/v1/jobs",
        json={"type": "card", "inputs": [{"ref": "routes-v1"}], "output": "routes"},
    )
    assert r.status_code == 422 and "submitted by the registry itself" in r.text


def test_a_job_results_card_facts_are_merged_into_its_computed_card(
    registry_server, admin_api, recorded, adapter_dir, tmp_path
):
    """A compress result keeps its job's card (method, parents, energy kept) in the card."""
    ctx = registry_server.ctx
    with loreg.Registry(
        url=registry_server.url,
        token=registry_server.admin_token,
        cache_dir=tmp_path / "cache",
        progress=False,
    ) as reg:
        reg.push(adapter_dir, "medical")  # r=4 on q_proj, v_proj
        body = {"type": "compress", "inputs": [{"ref": "medical-v1"}], "params": {"rank": 2}}
        job = reg.api.post("/v1/jobs", {**body, "output": "small"})
    assert run_job(ctx, job["id"]) == "succeeded"
    for card_job in card_jobs(admin_api):
        assert run_card(ctx, card_job["id"]) == "succeeded"
    parent = admin_api.get(card_path("medical", 1)).json()["card"]
    view = admin_api.get(card_path("small", 1)).json()
    assert view["card_status"] == "ready"
    card = view["card"]
    declared = admin_api.get("/v1/resolve/small-v1").json()["metadata"]["card"]
    assert card["job"] == declared  # the job's card, whole
    for key in ("type", "method", "parents", "energy_kept", "relative_error", "title"):
        assert card[key] == declared[key], key
    assert card["type"] == "compress" and card["parents"] == [{"ref": "default/medical-v1"}]
    assert card["ranks"] == [2] and all(m["rank"] == 2 for m in card["modules"])
    # the job's energy kept, against the parent's singular values from its own card
    kept = sum(sum(s * s for s in m["singular_values"][:2]) for m in parent["modules"])
    total = sum(sum(s * s for s in m["singular_values"]) for m in parent["modules"])
    assert declared["energy_kept"] == pytest.approx(kept / total, rel=1e-4)
    # and the result's σ are the parent's top two (a truncated SVD keeps them)
    for m in card["modules"]:
        [p] = [x for x in parent["modules"] if x["name"] == m["name"]]
        assert m["singular_values"] == pytest.approx(p["singular_values"][:2], rel=1e-4)


def test_the_leaders_backfill_keeps_at_most_a_batch_of_card_jobs_in_flight(
    registry_server, admin_api, recorded
):
    from registry.services import cards

    ctx = registry_server.ctx
    for n in range(3):
        publish_ok(admin_api, f"older{n}", make_adapter(seed=30 + n)[0])
    with Session(ctx.engine) as session:  # published before cards existed
        for row in session.exec(select(VersionCard)).all():
            session.delete(row)
        for job in session.exec(select(Job).where(Job.type == "card")).all():
            session.delete(job)
        session.commit()
    recorded.sent.clear()
    backfill = cards.Backfill(ctx, recorded.enqueue, batch=2, poll_s=0.05).start()
    try:
        deadline = time.monotonic() + 30
        while len(recorded.sent) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)  # two in flight: the thread waits, submitting nothing more
        assert len(recorded.sent) == 2 and cards.card_jobs_in_flight(ctx) == 2
        for job_id, _ in list(recorded.sent):
            assert run_card(ctx, job_id) == "succeeded"
        backfill._thread.join(30)
        assert not backfill._thread.is_alive() and backfill.submitted == 3
    finally:
        backfill.stop()
    assert len(recorded.sent) == 3
    assert run_card(ctx, recorded.sent[-1][0]) == "succeeded"
    for n in range(3):
        assert admin_api.get(card_path(f"older{n}", 1)).json()["card_status"] == "ready"


def test_an_int8_adapters_card_is_of_its_dequantized_factors(registry_server, admin_api, recorded):
    """The compress job's int8 row-wise format: ΔW of ``qweight · scales`` per row."""
    from loreg.constants import INT8_FORMAT

    gen = torch.Generator().manual_seed(40)
    module, d, k, r = "model.layers.0.self_attn.q_proj", 24, 16, 4
    tensors, dequantized = {}, {}
    for half, shape in (("A", (r, k)), ("B", (d, r))):
        q = torch.randint(-127, 128, shape, generator=gen, dtype=torch.int8)
        scales = torch.rand(shape[0], generator=gen) * 0.01 + 0.001
        tensors[f"{PREFIX}{module}.lora_{half}.qweight"] = q
        tensors[f"{PREFIX}{module}.lora_{half}.scales"] = scales
        dequantized[half] = q.double() * scales.double()[:, None]
    config = {**CONFIG, "use_rslora": False, "rank_pattern": {}, "alpha_pattern": {}}
    config["target_modules"] = ["q_proj"]
    files = {
        "adapter_config.json": json.dumps(config).encode(),
        "adapter_model.safetensors": save(tensors, metadata={"format": INT8_FORMAT}),
    }
    publish_ok(admin_api, "quantized", files)
    [job] = card_jobs(admin_api)
    assert run_card(registry_server.ctx, job["id"]) == "succeeded"
    card = admin_api.get(card_path("quantized", 1)).json()["card"]
    assert card["storage"] == INT8_FORMAT and card["dtypes"] == ["F32", "I8"]
    [got] = card["modules"]
    assert got["dtype"] == "F32,I8" and got["scaling"] == 2.0
    dense = 2.0 * (dequantized["B"].numpy() @ dequantized["A"].numpy())
    want = np.linalg.svd(dense, compute_uv=False)[:r]
    assert np.allclose(got["singular_values"], want, rtol=REL, atol=0)
    assert got["frobenius_norm"] == pytest.approx(np.linalg.norm(dense), rel=REL)
    assert card["lora_parameter_count"] == (d + k) * r
    assert card["parameter_count"] == (d + k) * r + r + d  # the scales are stored too
