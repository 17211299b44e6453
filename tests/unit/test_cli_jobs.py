"""``loreg job ...`` and the SDK job methods against a fake jobs API (httpx.MockTransport).

Also the two parsing rules: ``--input REF[:WEIGHT]`` and ``--param KEY=VALUE``.
"""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import parse_qs

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

import loreg
from loreg import cli
from loreg.errors import InvalidRefError, ValidationFailedError
from loreg.jobs import JobTimeoutError, parse_input, parse_param, wait_for_job
from loreg.refs import parse_ref, validate_alias

HEX = "1e" + "0" * 62  # a digest whose hex also reads as a float (1e000... == 1.0)


# ------------------------------------------------------------------ --input rule


@pytest.mark.parametrize(
    "text, ref, weight",
    [
        ("medical", "medical", 1.0),
        ("medical-v3:0.7", "medical-v3", 0.7),
        ("medical-v3:2", "medical-v3", 2.0),  # "medical-v3:2" is no ref: 2 is a weight
        ("medical:3", "medical:3", 1.0),  # a ref spelling of version 3
        ("medical:v3", "medical:v3", 1.0),
        ("medical:3.0", "medical", 3.0),  # a '.' makes it a weight
        ("medical:3:0.5", "medical:3", 0.5),
        ("medical:v3:2", "medical:v3", 2.0),
        ("medical:.5", "medical", 0.5),
        ("medical:-0.25", "medical", -0.25),
        ("medical:1e-3", "medical", 0.001),
        ("acme/medical@prod:0.3", "acme/medical@prod", 0.3),
        (f"medical@sha256:{HEX}", f"medical@sha256:{HEX}", 1.0),
        (f"medical@sha256:{HEX}:0.5", f"medical@sha256:{HEX}", 0.5),
    ],
)
def test_input_weight_is_the_last_part_only_when_the_rule_says_so(text, ref, weight):
    assert parse_input(text) == {"ref": ref, "weight": weight}


@pytest.mark.parametrize(
    "text", ["Medical:0.5", "medical:", ":0.5", "medical:nan", "medical:inf", "medical:0.5:x", ""]
)
def test_bad_inputs_name_the_expected_form(text):
    with pytest.raises(InvalidRefError, match="REF or REF:WEIGHT"):
        parse_input(text)


NAMES = st.from_regex(r"[a-z][a-z0-9_]{0,10}", fullmatch=True)


def _is_alias(text: str) -> bool:
    """Whether the ref grammar accepts ``text`` as an alias (not reserved, not ``v0``-like)."""
    try:
        validate_alias(text)
    except InvalidRefError:
        return False
    return True


SELECTORS = st.one_of(
    st.just(""),
    st.integers(1, 999).map(lambda n: f"-v{n}"),
    st.integers(1, 999).map(lambda n: f":{n}"),
    st.integers(1, 999).map(lambda n: f":v{n}"),
    NAMES.filter(_is_alias).map(lambda a: f"@{a}"),
    st.just(f"@sha256:{HEX}"),
)
REFS = st.builds(
    lambda ns, name, sel: f"{ns + '/' if ns else ''}{name}{sel}",
    st.one_of(st.just(""), NAMES),
    NAMES.filter(lambda n: not n.rstrip("0123456789").endswith("-v")),
    SELECTORS,
)


@given(REFS, st.floats(allow_nan=False, allow_infinity=False))
def test_any_ref_with_a_written_float_weight_round_trips(ref, weight):
    parse_ref(ref)  # the generator makes valid refs only
    assert parse_input(ref) == {"ref": ref, "weight": 1.0}
    assert parse_input(f"{ref}:{weight!r}") == {"ref": ref, "weight": weight}


# ------------------------------------------------------------------ --param typing


@pytest.mark.parametrize(
    "text, key, value",
    [
        ("rank=16", "rank", 16),
        ("density=0.5", "density", 0.5),
        ("lr=1e-4", "lr", 1e-4),
        ("merge=true", "merge", True),
        ("continue_from=null", "continue_from", None),
        ("preset=small", "preset", "small"),
        ('target_modules=["q_proj","v_proj"]', "target_modules", ["q_proj", "v_proj"]),
        ('name="16"', "name", "16"),
        ("note=a=b", "note", "a=b"),
        ("empty=", "empty", ""),
        ("dataset=acme/notes-v2", "dataset", "acme/notes-v2"),
    ],
)
def test_param_values_are_json_when_they_parse(text, key, value):
    got = parse_param(text)
    assert got == (key, value)
    assert type(got[1]) is type(value)


@pytest.mark.parametrize(
    "text", ["rank", "=16", "bad-key=1", "x=NaN", "x=1e999", "x=[1, Infinity]", 'x={"a": -1e400}']
)
def test_bad_params_are_refused(text):
    with pytest.raises(ValidationFailedError):
        parse_param(text)


# ------------------------------------------------------------- fake jobs API


class FakeJobs:
    """A jobs API: every GET of a job advances it one step through ``script``."""

    def __init__(self, script=("queued", "running", "succeeded")):
        self.script = list(script)
        self.jobs: dict[str, dict] = {}
        self.bodies: list[dict] = []
        self.queries: list[dict] = []
        self.gets = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path, method = request.url.path, request.method
        if method == "POST" and path == "/v1/jobs":
            body = json.loads(request.content)
            self.bodies.append(body)
            job_id = f"job{len(self.jobs) + 1}"
            self.jobs[job_id] = {
                "id": job_id,
                "type": body["type"],
                "status": "queued",
                "progress": 0.0,
                "inputs": body["inputs"],
                "params": body["params"],
                "output": body["output"],
                "attempts": 0,
                "error": None,
                "result": None,
                "step": 0,
            }
            return httpx.Response(202, json=self._view(job_id))
        if method == "GET" and path == "/v1/jobs":
            self.queries.append(parse_qs(request.url.query.decode()))
            page = {"items": [self._view(j) for j in self.jobs], "next_cursor": None}
            return httpx.Response(200, json=page)
        parts = path.split("/")
        job_id = parts[3] if len(parts) > 3 else ""
        if job_id not in self.jobs:
            return httpx.Response(404, json={"error": {"code": "not_found", "message": "no job"}})
        if method == "GET" and len(parts) == 4:
            self.gets += 1
            job = self.jobs[job_id]
            job["step"] = min(job["step"] + 1, len(self.script) - 1)
            job["status"] = self.script[job["step"]]
            if job["status"] == "succeeded":
                job["result"] = {"ref": f"default/{job['output']}-v1", "digest": "sha256:x"}
                job["progress"] = 1.0
            if job["status"] == "failed":
                job["error"] = "invalid_job: inputs target different base models"
            return httpx.Response(200, json=self._view(job_id))
        if method == "GET" and parts[-1] == "logs":
            return httpx.Response(200, json={"id": job_id, "log": "attempt 1\nloaded x"})
        if method == "POST" and parts[-1] == "cancel":
            self.jobs[job_id]["status"] = "cancelled"
            return httpx.Response(200, json=self._view(job_id))
        return httpx.Response(405)

    def _view(self, job_id: str) -> dict:
        return {k: v for k, v in self.jobs[job_id].items() if k != "step"}


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("LOREG_OFFLINE", "LOREG_DEBUG", "LOREG_TOKEN", "LOREG_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LOREG_CACHE_DIR", str(tmp_path / "cache"))


def registry_on(fake: FakeJobs, tmp_path: Path) -> loreg.Registry:
    return loreg.Registry(
        url="http://registry.test",
        token="t",
        cache_dir=tmp_path / "cache",
        transport=httpx.MockTransport(fake),
        progress=False,
    )


@pytest.fixture
def fake() -> FakeJobs:
    return FakeJobs()


@pytest.fixture
def run(fake, tmp_path, capsys):
    """Run ``loreg ARGS`` on the fake; returns (exit code, stdout, stderr)."""

    def runner(*argv: str) -> tuple[int, str, str]:
        code = cli.main(list(argv), registry_factory=lambda _args: registry_on(fake, tmp_path))
        out, err = capsys.readouterr()
        return code, out, err

    return runner


# ------------------------------------------------------------------ CLI


def test_submit_sends_inputs_weights_and_typed_params(run, fake):
    code, out, err = run(
        "job", "submit", "combine",
        "--input", "medical-v3:0.7", "--input", "legal:2", "--input", "tax:2.0",
        "--method", "ties", "--density", "0.5", "--rank", "16", "--seed", "0",
        "--param", "majority_sign_method=frequency", "--param", "normalize_weights=false",
        "--output", "medical-legal", "--json",
    )  # fmt: skip
    assert code == 0, err
    assert fake.bodies == [
        {
            "type": "combine",
            "inputs": [
                {"ref": "medical-v3", "weight": 0.7},
                {"ref": "legal:2", "weight": 1.0},
                {"ref": "tax", "weight": 2.0},
            ],
            "params": {
                "method": "ties",
                "density": 0.5,
                "rank": 16,
                "seed": 0,
                "majority_sign_method": "frequency",
                "normalize_weights": False,
            },
            "output": "medical-legal",
        }
    ]
    assert json.loads(out)["id"] == "job1"
    assert isinstance(fake.bodies[0]["params"]["rank"], int)


def test_submit_human_output_tells_how_to_follow(run):
    code, out, _ = run("job", "submit", "compress", "--input", "m", "--rank", "4", "--output", "s")
    assert code == 0
    assert "submitted job job1" in out and "loreg job wait job1" in out


def test_submit_wait_prints_the_final_job(run, fake):
    argv = ("job", "submit", "compress", "--input", "m", "--param", "precision=int8")
    code, out, err = run(*argv, "--output", "small", "--wait", "--poll", "0.001", "--json")
    assert code == 0, err
    job = json.loads(out)
    assert job["status"] == "succeeded" and job["result"]["ref"] == "default/small-v1"
    assert fake.gets == 2  # queued -> running -> succeeded
    assert fake.bodies[0]["params"] == {"precision": "int8"}


def test_a_failed_job_exits_non_zero_with_its_error(fake, run):
    fake.script = ["queued", "failed"]
    code, out, err = run("job", "submit", "merge", "--input", "m", "--output", "b", "--wait")
    assert code == 9
    assert "failed" in out
    assert err.strip() == (
        "error: job job1 failed: invalid_job: inputs target different base models"
    )


def test_a_parameter_given_twice_is_a_usage_error(run, fake):
    code, _, err = run(
        "job", "submit", "combine", "--input", "a", "--rank", "4", "--param", "rank=8",
        "--output", "x",
    )  # fmt: skip
    assert code == ValidationFailedError.exit_code
    assert "given twice" in err and len(err.strip().splitlines()) == 1
    assert fake.bodies == []


def test_a_bad_input_is_refused_before_any_request(run, fake):
    code, _, err = run("job", "submit", "combine", "--input", "Bad:0.5", "--output", "x")
    assert code == InvalidRefError.exit_code
    assert "REF or REF:WEIGHT" in err and fake.bodies == []


def test_unknown_type_is_a_usage_error(run):
    code, _, err = run("job", "submit", "distill", "--output", "x")
    assert code == 2 and "invalid choice" in err


def test_status_logs_wait_cancel_and_ls(run, fake):
    run("job", "submit", "compress", "--input", "m", "--rank", "2", "--output", "s")
    code, out, _ = run("job", "status", "job1", "--json")
    assert code == 0 and json.loads(out)["status"] == "running"
    code, out, _ = run("job", "status", "job1")
    assert out.startswith("job job1  compress  succeeded  100%")
    assert "result: default/s-v1" in out
    code, out, _ = run("job", "logs", "job1")
    assert code == 0 and out == "attempt 1\nloaded x\n"
    code, out, _ = run("job", "logs", "job1", "--json")
    assert json.loads(out) == {"id": "job1", "log": "attempt 1\nloaded x"}
    code, out, _ = run("job", "wait", "job1", "--json")
    assert code == 0 and json.loads(out)["status"] == "succeeded"
    code, out, _ = run("job", "ls", "--status", "succeeded", "--type", "compress")
    assert code == 0 and out.splitlines()[0].split()[:3] == ["ID", "TYPE", "STATUS"]
    assert "job1" in out
    # 50 rows shown by default: a page of 51 tells whether there are more
    assert fake.queries[-1] == {"status": ["succeeded"], "type": ["compress"], "limit": ["51"]}
    code, out, _ = run("job", "ls", "--json")
    assert [j["id"] for j in json.loads(out)] == ["job1"]
    code, out, _ = run("job", "cancel", "job1")
    assert code == 0 and out == "cancelled job job1\n"


def test_unknown_job_is_not_found(run):
    code, _, err = run("job", "status", "nope")
    assert code == 3 and err.startswith("error: ")


# ------------------------------------------------------------------ SDK


def test_sdk_submit_accepts_refs_pairs_and_mappings(fake, tmp_path):
    with registry_on(fake, tmp_path) as reg:
        job = reg.submit_job(
            "combine",
            ["a", ("b-v2", 0.25), {"ref": "c:3", "weight": 2}],
            {"method": "linear"},
            "abc",
            namespace="acme",
        )
        assert job["status"] == "queued"
        with pytest.raises(ValidationFailedError, match="weight must be a number"):
            reg.submit_job("combine", [("a", "heavy")], {}, "x")
        with pytest.raises(ValidationFailedError, match="job type"):
            reg.submit_job("distill", ["a"], {}, "x")
    assert fake.bodies == [
        {
            "type": "combine",
            "inputs": [
                {"ref": "a", "weight": 1.0},
                {"ref": "b-v2", "weight": 0.25},
                {"ref": "c:3", "weight": 2.0},
            ],
            "params": {"method": "linear"},
            "output": "abc",
            "namespace": "acme",
        }
    ]


def test_sdk_wait_job_polls_until_terminal(fake, tmp_path):
    with registry_on(fake, tmp_path) as reg:
        job = reg.submit_job("compress", ["m"], {"rank": 2}, "s")
        final = reg.wait_job(job["id"], poll=0.001)
        assert final["status"] == "succeeded" and fake.gets == 2
        assert reg.job_logs(job["id"]).startswith("attempt 1")
        assert [j["id"] for j in reg.jobs(status="succeeded", type=None)] == ["job1"]
    assert fake.queries == [{"status": ["succeeded"]}]


def test_wait_for_job_times_out_with_advice():
    clock = iter(range(100))
    naps: list[float] = []
    with pytest.raises(JobTimeoutError, match="still running after 3 s.*loreg job wait j"):
        wait_for_job(
            lambda: {"id": "j", "status": "running", "progress": 0.5},
            timeout=3,
            poll=1.0,
            sleep=naps.append,
            clock=lambda: float(next(clock)),
        )
    assert naps and all(0 < n <= 1.0 for n in naps)
