"""Progress and cancellation of a combination, module by module; the result's dtype.

``workers.ops.combine`` calls ``on_module(index, total)`` after each module, and
an exception from it aborts; the combine job passes a callback that reports
progress through ``JobContext.report``, which raises once cancellation was
requested. The job stores the result in the promoted dtype of all its inputs.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from loreg.vocabulary import DENSITY_METHODS, CombineMethod
from registry.models import Job
from workers.jobs import combine as combine_job
from workers.jobs.common import ADAPTER_WEIGHTS, factors_dtype, save_adapter
from workers.ops.combine import combine
from workers.ops.lora import LoraFactors
from workers.runner import JobCancelled, JobContext

SHAPES = {f"layers.{i}.q": (12, 10) for i in range(5)}
COMBINE_METHODS = [m.value for m in CombineMethod]


def make_adapter(seed: int, rank: int = 3, dtype: torch.dtype = torch.float32):
    """Random LoRA factors on the modules of SHAPES."""
    gen = torch.Generator().manual_seed(seed)
    return {
        path: LoraFactors(
            torch.randn(rank, k, generator=gen).to(dtype),
            torch.randn(d, rank, generator=gen).to(dtype),
            2.0,
        )
        for path, (d, k) in SHAPES.items()
    }


def method_params(method: str) -> dict:
    return {"density": 0.5} if method in DENSITY_METHODS else {}


class Abort(Exception):
    pass


@pytest.fixture(scope="module")
def adapters():
    return [make_adapter(1), make_adapter(2)]


@pytest.mark.parametrize("method", COMBINE_METHODS)
def test_on_module_is_called_once_per_module_in_order(adapters, method):
    calls: list[tuple[int, int]] = []
    params = method_params(method)
    result = combine(
        adapters, [0.6, 0.4], method, on_module=lambda i, n: calls.append((i, n)), **params
    )
    total = len(SHAPES)
    assert calls == [(i, total) for i in range(total)]
    # the callback changes nothing in the result
    plain = combine(adapters, [0.6, 0.4], method, **params)
    assert result.modules.keys() == plain.modules.keys()
    for path, f in result.modules.items():
        assert torch.equal(f.A, plain.modules[path].A) and torch.equal(f.B, plain.modules[path].B)


@pytest.mark.parametrize("method", COMBINE_METHODS)
def test_an_exception_from_on_module_aborts_the_combine(adapters, method):
    calls: list[int] = []

    def stop_after_two(index: int, total: int) -> None:
        calls.append(index)
        if len(calls) == 2:
            raise Abort("stop")

    with pytest.raises(Abort):
        combine(adapters, [0.5, 0.5], method, on_module=stop_after_two, **method_params(method))
    assert calls == [0, 1]  # no module was combined after the exception


# ------------------------------------------------------------------------------ the job


class FakeJobContext(JobContext):
    """A JobContext without a database: inputs come from local folders."""

    def __init__(self, workdir: Path, folders: dict[int, Path], params: dict, cancel_at=None):
        job = Job(
            type="combine",
            namespace="default",
            output="mix",
            queue="cpu",
            params=params,
            inputs=[
                {"version_id": vid, "ref": f"in{vid}-v1", "weight": 1.0 / len(folders)}
                for vid in folders
            ],
        )
        super().__init__(None, job, workdir, threading.Event())
        self.folders = folders
        self.cancel_at = cancel_at  # cancel once progress passes this
        self.reports: list[float] = []

    def fetch_version(self, version_id: int) -> Path:
        return self.folders[version_id]

    def report(self, fraction: float, message: str | None = None) -> None:
        self.reports.append(fraction)
        if self.cancel_at is not None and fraction > self.cancel_at:
            self._cancel.set()
        super().report(fraction, message)


def write_inputs(tmp_path: Path, dtypes: list[torch.dtype]) -> dict[int, Path]:
    return {
        i + 1: save_adapter(
            tmp_path / f"in{i + 1}",
            make_adapter(i + 1, dtype=dtype),
            base_model=None,
            card={"title": "input"},
            dtype=dtype,
        )
        for i, dtype in enumerate(dtypes)
    }


def stored_dtypes(folder: Path) -> set[torch.dtype]:
    return {t.dtype for t in load_file(str(folder / ADAPTER_WEIGHTS)).values()}


def test_the_job_reports_progress_per_module(tmp_path):
    folders = write_inputs(tmp_path, [torch.float32] * 2)
    jc = FakeJobContext(tmp_path / "work", folders, {"method": "ties", "density": 0.5})
    combine_job.run(jc)
    lo, hi, n = combine_job.LOADED, combine_job.COMBINED, len(SHAPES)
    per_module = [lo + (hi - lo) * (i + 1) / n for i in range(n)]
    # one report per module, then the job's "combined 2 adapters" at the same fraction
    assert [f for f in jc.reports if f > lo] == pytest.approx([*per_module, hi])
    assert f"combined {n}/{n} modules" in jc.lines


def test_cancelling_the_job_stops_the_combine_between_modules(tmp_path):
    jc = FakeJobContext(
        tmp_path / "work",
        write_inputs(tmp_path, [torch.float32] * 2),
        {"method": "ties", "density": 0.5},
        cancel_at=combine_job.LOADED,  # requested while the first module is combined
    )
    with pytest.raises(JobCancelled):
        combine_job.run(jc)
    module_steps = [f for f in jc.reports if f > combine_job.LOADED]
    assert len(module_steps) == 1  # stopped after the first of 5 modules


@pytest.mark.parametrize(
    ("dtypes", "expected"),
    [
        ([torch.float16, torch.float32], torch.float32),  # the first input no longer decides
        ([torch.bfloat16, torch.float16], torch.float32),
        ([torch.float16, torch.float16], torch.float16),
    ],
)
def test_the_job_stores_the_promoted_dtype_of_all_inputs(tmp_path, dtypes, expected):
    folders = write_inputs(tmp_path, dtypes)
    jc = FakeJobContext(tmp_path / "work", folders, {"method": "linear"})
    out = combine_job.run(jc)
    assert stored_dtypes(out.folder) == {expected}


def test_factors_dtype_promotes_over_every_factor():
    a = make_adapter(1, dtype=torch.float16)
    b = make_adapter(2, dtype=torch.float16)
    path = next(iter(b))
    b[path] = LoraFactors(b[path].A, b[path].B.to(torch.float64), b[path].scale)
    assert factors_dtype([a]) == torch.float16
    assert factors_dtype([a, b]) == torch.float64
    assert factors_dtype([]) is None
