"""Jobs through Celery with real processes: Redis, Postgres, moto S3, ``loreg worker``.

One stack for the module: the API in-process with ``LOREG_REDIS_URL`` set (so
submissions go through Celery) and one ``loreg worker`` subprocess consuming the
``cpu`` queue only (``gpu`` jobs stay queued: that is how a queued job is
cancelled). Results are checked against the math of docs/design.md §7 on the pulled
files, never against worker code.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import httpx
import pytest
import torch
from safetensors.torch import load_file

from tests.support.fixtures_worker import JobStack, job_stack, write_adapter
from tests.support.tiny import save_adapter
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration
PEFT_PREFIX = "base_model.model."


@pytest.fixture(scope="module")
def stack(tmp_path_factory, s3_endpoint) -> JobStack:
    """The module's stack with one cpu worker and the input adapters published."""
    tmp = tmp_path_factory.mktemp("celery-jobs")
    with job_stack(tmp, s3_endpoint) as jobs:
        jobs.start_worker(queues="cpu")
        jobs.push(save_adapter(tmp / "medical", seed=1, r=4), "medical")
        jobs.push(save_adapter(tmp / "legal", seed=2, r=8), "legal")
        jobs.push(save_adapter(tmp / "qk", seed=3, r=4, targets=("q_proj", "k_proj")), "qk")
        jobs.push(save_adapter(tmp / "other", seed=4, r=4), "other-base", base_model="other-llm")
        for name, seed in (("big-a", 5), ("big-b", 6)):  # ties on these takes seconds
            big = write_adapter(tmp / name, layers=16, d=1024, r=8, seed=seed)
            jobs.push(big, name)
        yield jobs


def adapter_deltas(folder: Path) -> dict[str, torch.Tensor]:
    """ΔW = s·B·A per module from a PEFT folder (s = alpha/r, or alpha/√r with rsLoRA)."""
    config = json.loads((folder / "adapter_config.json").read_text())
    state = load_file(str(folder / "adapter_model.safetensors"))
    deltas = {}
    for key, a in state.items():
        if not key.endswith(".lora_A.weight"):
            continue
        path = key[len(PEFT_PREFIX) : -len(".lora_A.weight")]
        b = state[key.replace(".lora_A.", ".lora_B.")]
        r = config.get("rank_pattern", {}).get(path, config["r"])
        alpha = config.get("alpha_pattern", {}).get(path, config["lora_alpha"])
        assert r == a.shape[0], f"{path}: rank {a.shape[0]} but config says {r}"
        scale = alpha / math.sqrt(r) if config.get("use_rslora") else alpha / r
        deltas[path] = scale * (b.double() @ a.double())
    return deltas


def test_combine_job_through_celery_registers_the_weighted_sum_with_lineage(stack, tmp_path):
    import loreg

    body = {
        "type": "combine",
        "inputs": [{"ref": "medical-v1", "weight": 0.7}, {"ref": "legal-v1", "weight": 0.3}],
        "params": {"method": "linear"},
        "output": "medical-legal",
    }
    submitted = stack.submit_ok(body)
    assert submitted["status"] == "queued" and submitted["queue"] == "cpu"
    job = stack.wait(submitted["id"])
    assert job["status"] == "succeeded", (job, stack.worker_logs())
    assert job["attempts"] == 1 and job["progress"] == 1.0 and job["error"] is None
    assert job["result"]["ref"] == "default/medical-legal-v1"
    assert stack.versions_of_job(job["id"]) == [("medical-legal", 1)]

    view = stack.resolve(job["result"]["ref"])
    assert view["digest"] == job["result"]["digest"]
    edges = sorted(view["lineage"], key=lambda e: e["parent"]["ref"])
    assert [(e["relation"], e["parent"]["kind"], e["parent"]["ref"]) for e in edges] == [
        ("combined_from", "version", "default/legal-v1"),
        ("combined_from", "version", "default/medical-v1"),
    ]
    assert [e["params"]["weight"] for e in edges] == [0.3, 0.7]
    assert all(e["params"]["method"] == "linear" for e in edges)

    with loreg.Registry(
        url=stack.url, token=stack.token, cache_dir=tmp_path / "c", progress=False
    ) as reg:
        reg_folder = reg.pull(job["result"]["ref"])
        result = adapter_deltas(reg_folder)
        medical = adapter_deltas(reg.pull("medical-v1"))
        legal = adapter_deltas(reg.pull("legal-v1"))
    assert set(result) == set(medical) == set(legal)
    for path, delta in result.items():  # linear without a rank is exact: Σ w_i ΔW_i
        expected = 0.7 * medical[path] + 0.3 * legal[path]
        torch.testing.assert_close(delta, expected, rtol=0, atol=1e-5 * expected.abs().max())

    card = view["metadata"]["card"]  # what the card claims, checked against the files
    assert card["method"] == "linear" and card["params"] == {"method": "linear"}
    assert card["parents"] == [
        {"ref": "default/medical-v1", "weight": 0.7},
        {"ref": "default/legal-v1", "weight": 0.3},
    ]
    assert card["exact"] is True and card["energy_kept"] == pytest.approx(1.0)
    state = load_file(str(Path(reg_folder) / "adapter_model.safetensors"))
    assert card["parameter_count"] == sum(t.numel() for t in state.values())
    assert card["size_bytes"] == sum(f["size"] for f in view["files"] if f["path"] != "README.md")
    assert card["parameter_count"] == view["summary"]["parameter_count"]


def test_fedit_result_is_flagged_inexact_in_its_card(stack, tmp_path):
    stack.push(save_adapter(tmp_path / "nurse", seed=9, r=4), "nurse")
    body = {
        "type": "combine",
        "inputs": [{"ref": "medical-v1", "weight": 3}, {"ref": "nurse-v1", "weight": 1}],
        "params": {"method": "fedit"},
        "output": "fed",
    }
    job = stack.wait(stack.submit_ok(body)["id"])
    assert job["status"] == "succeeded", (job, stack.worker_logs())
    card = stack.resolve(job["result"]["ref"])["metadata"]["card"]
    assert card["exact"] is False and "NOT the average" in card["note"]
    assert card["stats"]["error_vs_sum"] > 1e-3  # measured, not assumed
    assert card["stats"]["params"]["weights"] == [0.75, 0.25]  # client weights normalised


def _nested(depth: int) -> list:
    value: list = []
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("inputs", "params", "status", "words"),
    [
        ([{"ref": "nope-v1"}, {"ref": "legal-v1"}], {"method": "cat"}, 404, ["nope"]),
        (
            [{"ref": "medical-v1"}, {"ref": "other-base-v1"}],
            {"method": "cat"},
            422,
            ["different base models", "other-llm"],
        ),
        (
            [{"ref": "medical-v1"}, {"ref": "legal-v1"}],
            {"method": "ties", "density": 1.5, "rank": 4},
            422,
            ["density", "out of range"],
        ),
        (
            [{"ref": "medical-v1"}, {"ref": "legal-v1"}],
            {"method": "svd"},
            422,
            ["rank", "required"],
        ),
        (
            [{"ref": "medical-v1"}, {"ref": "medical-v1"}],
            {"method": "fedit", "rank": 4},
            422,
            ["fedit", "takes no rank"],
        ),
        (
            [{"ref": "medical-v1"}, {"ref": "legal-v1"}],  # r=4 and r=8
            {"method": "fedit"},
            422,
            ["equal ranks", "medical-v1 r=4", "legal-v1 r=8"],
        ),
        (
            [{"ref": "medical-v1", "weight": 1.0}, {"ref": "legal-v1", "weight": -0.5}],
            {"method": "flora"},
            422,
            ["client weights >= 0", "-0.5"],
        ),
        (
            [{"ref": "medical-v1"}, {"ref": "legal-v1"}],
            {"method": "svd", "rank": 4, "majority_sign_method": "frequency"},
            422,
            ["majority_sign_method", "ties", "svd"],
        ),
        (
            [{"ref": "medical-v1"}, {"ref": "legal-v1"}],
            {"method": "linear", "normalize_weights": True},
            422,
            ["unknown params", "normalize_weights"],
        ),
        (
            [{"ref": "medical-v1"}, {"ref": "legal-v1"}],
            {"method": "linear", "note": _nested(300)},
            422,
            ["params.note", "nested deeper than"],
        ),
        (
            [{"ref": "medical-v1", "weight": float("inf")}, {"ref": "legal-v1"}],
            {"method": "linear"},
            422,
            ["inputs[0].weight", "finite"],
        ),
        (
            [{"ref": "medical-v1"}, {"ref": "legal-v1"}],
            {"method": "linear", "seed_note": "a\x00b"},
            422,
            ["params.seed_note", "nul"],
        ),
    ],
    ids=[
        "unknown-ref",
        "mixed-base-models",
        "density-out-of-range",
        "svd-without-rank",
        "fedit-with-rank",
        "fedit-mixed-ranks",
        "flora-negative-weight",
        "sign-method-on-svd",
        "unknown-param",
        "params-nested-too-deep",
        "infinite-weight",
        "nul-in-params",
    ],
)
def test_invalid_jobs_are_refused_at_submission(stack, inputs, params, status, words):
    before = stack.api.get("/v1/jobs", params={"limit": 1}).json()["items"]
    body = {"type": "combine", "inputs": inputs, "params": params, "output": "bad"}
    # json.dumps writes inf as Infinity, which Python's parser (the server's) reads back.
    r = stack.api.post(
        "/v1/jobs", content=json.dumps(body), headers={"content-type": "application/json"}
    )
    assert r.status_code == status, r.text
    message = json.dumps(r.json()).lower()
    assert all(word in message for word in words), message
    assert stack.api.get("/v1/jobs", params={"limit": 1}).json()["items"] == before  # none new


def test_input_in_a_private_namespace_is_not_found_for_an_outsider(stack, tmp_path):
    r = stack.api.post("/v1/namespaces", json={"name": "vault", "private": True})
    assert r.status_code == 201, r.text
    import loreg

    with loreg.Registry(
        url=stack.url, token=stack.token, cache_dir=tmp_path / "c", progress=False
    ) as reg:
        reg.push(
            save_adapter(tmp_path / "hidden", seed=7, r=4),
            "hidden",
            namespace="vault",
            base_model="tiny-llama",
        )
    writer = stack.api.post(
        "/v1/tokens",
        json={"name": "outsider", "grants": [{"namespace": "default", "scope": "write"}]},
    ).json()["token"]
    body = {
        "type": "combine",
        "inputs": [{"ref": "medical-v1"}, {"ref": "vault/hidden-v1"}],
        "params": {"method": "cat"},
        "output": "stolen",
    }
    with httpx.Client(
        base_url=stack.url, headers={"Authorization": f"Bearer {writer}"}, timeout=30
    ) as outsider:
        r = outsider.post("/v1/jobs", json=body)
        assert r.status_code == 404, r.text
        assert "vault/hidden-v1" in r.json()["error"]["message"]
        assert "private" not in r.json()["error"]["message"]  # existence is not leaked
        # the admin, who can read vault, may combine it into vault; the outsider never sees it
        hidden_job = stack.submit_ok({**body, "namespace": "vault", "queue": "gpu"})
        seen = [j["id"] for j in outsider.get("/v1/jobs", params={"limit": 200}).json()["items"]]
        assert hidden_job["id"] not in seen
        assert outsider.get(f"/v1/jobs/{hidden_job['id']}").status_code == 404
    in_vault = stack.api.get("/v1/jobs", params={"namespace": "vault"}).json()["items"]
    assert [j["id"] for j in in_vault] == [hidden_job["id"]]
    assert stack.api.post(f"/v1/jobs/{hidden_job['id']}/cancel").status_code == 200


def test_job_that_fails_in_the_worker_is_failed_once_not_retried(stack):
    body = {
        "type": "combine",
        "inputs": [{"ref": "medical-v1"}, {"ref": "qk-v1"}],  # q,v versus q,k modules
        "params": {"method": "cat"},
        "output": "mismatch",
    }
    job = stack.wait(stack.submit_ok(body)["id"])
    assert job["status"] == "failed", job
    assert "different modules" in job["error"] and "same targets" in job["error"]
    assert job["attempts"] == 1
    assert job["result"] is None and stack.versions_of_job(job["id"]) == []
    log = stack.api.get(f"/v1/jobs/{job['id']}/logs").json()["log"]
    assert "failed: " in log


@pytest.mark.parametrize(
    ("params", "queue"),
    [
        ({"method": "ties", "density": 0.5, "rank": 4}, "gpu"),
        ({"method": "dare_linear", "density": 0.5, "rank": 4, "seed": 1}, "gpu"),
        ({"method": "svd", "rank": 4}, "cpu"),
        ({"method": "cat"}, "cpu"),
    ],
)
def test_dense_combine_methods_default_to_the_gpu_queue(stack, params, queue):
    body = {
        "type": "combine",
        "inputs": [{"ref": "medical-v1"}, {"ref": "legal-v1"}],
        "params": params,
        "output": "routed",
    }
    job = stack.submit_ok(body)
    assert job["queue"] == queue
    stack.api.post(f"/v1/jobs/{job['id']}/cancel")  # a gpu job would wait forever here
    assert stack.wait(job["id"])["status"] in ("cancelled", "succeeded")


def test_queued_job_is_cancelled_at_once(stack):
    body = {
        "type": "combine",
        "inputs": [{"ref": "medical-v1"}, {"ref": "legal-v1"}],
        "params": {"method": "cat"},
        "output": "never",
        "queue": "gpu",  # no worker consumes gpu in this module
    }
    job = stack.submit_ok(body)
    r = stack.api.post(f"/v1/jobs/{job['id']}/cancel")
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "cancelled" and r.json()["cancel_requested"] is True
    view = stack.job(job["id"])
    assert view["status"] == "cancelled" and view["attempts"] == 0
    assert stack.api.post(f"/v1/jobs/{job['id']}/cancel").status_code == 409
    assert stack.versions_of_job(job["id"]) == []


def test_running_job_is_cancelled(stack):
    body = {
        "type": "combine",
        "inputs": [{"ref": "big-a-v1"}, {"ref": "big-b-v1"}],
        "params": {"method": "ties", "density": 0.5, "rank": 8},
        "queue": "cpu",  # dense methods default to gpu; this module's worker is cpu only
        "output": "big-ties",
    }
    job = stack.submit_ok(body)
    running = stack.wait(job["id"], ("running", "succeeded", "failed", "cancelled"))
    assert running["status"] == "running", running
    r = stack.api.post(f"/v1/jobs/{job['id']}/cancel")
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "running" and r.json()["cancel_requested"] is True
    final = stack.wait(job["id"])
    assert final["status"] == "cancelled", (final, stack.worker_logs())
    assert final["attempts"] == 1 and final["result"] is None
    assert stack.versions_of_job(job["id"]) == [] and stack.versions_named("big-ties") == []


def test_cancelling_a_running_combine_stops_it_between_modules(stack, tmp_path):
    """Cancellation reaches a long combine partway (the job checks after every module)."""
    modules = 64  # 32 layers × (q_proj, v_proj) of 1024×1024: ties takes many seconds
    for name, seed in (("long-a", 11), ("long-b", 12)):
        stack.push(
            write_adapter(tmp_path / name, layers=modules // 2, d=1024, r=8, seed=seed), name
        )
    body = {
        "type": "combine",
        "inputs": [{"ref": "long-a-v1", "weight": 0.5}, {"ref": "long-b-v1", "weight": 0.5}],
        "params": {"method": "ties", "density": 0.5, "rank": 8},
        "queue": "cpu",  # dense methods default to gpu; this module's worker is cpu only
        "output": "never-combined",
    }
    job_id = stack.submit_ok(body)["id"]

    def combining() -> bool:
        job = stack.job(job_id)
        if job["progress"] > 0.4:  # inputs loaded: combining
            return True
        assert job["status"] in ("queued", "running"), (job, stack.worker_logs())
        return False

    wait_until(combining, timeout=120, message=lambda: (stack.job(job_id), stack.worker_logs()))
    r = stack.api.post(f"/v1/jobs/{job_id}/cancel")
    assert r.status_code in (200, 202), r.text

    job = stack.wait(job_id, timeout=60)
    assert job["status"] == "cancelled", (job, stack.worker_logs())
    assert 0.4 < job["progress"] < 0.8, job  # stopped while combining, not after
    logs = stack.api.get(f"/v1/jobs/{job_id}/logs")
    logs.raise_for_status()
    assert f"combined {modules}/{modules} modules" not in logs.text, logs.text
    assert stack.versions_of_job(job_id) == []
