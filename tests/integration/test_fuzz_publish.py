"""A fast sample of the publish fuzzer (bench/fuzz_publish.py runs >= 10,000 cases).

Each case goes through the real two-phase publish over HTTP on both backends
(SQLite + LocalStore, Postgres + moto_server S3). The oracle: no 5xx, no hang
(per-request timeout; a backtracking regex may not hold a commit for seconds),
every 4xx in the error shape, and nothing accepted that safetensors' parser or
PEFT's loaders refuse, that holds a pickle or archive, or whose paths cannot all
be materialised on macOS/Windows; every accepted version resolves and pulls back
byte for byte. ``LOREG_FUZZ_CASES`` / ``LOREG_FUZZ_SEED`` change the sample.
"""

from __future__ import annotations

import os

import pytest

from tests.support.fuzz_cases import FAMILIES, ValidAdapter, make_case
from tests.support.fuzz_runner import FuzzRunner, describe_failures, register_base

CASES = int(os.environ.get("LOREG_FUZZ_CASES", "150"))
SEED = int(os.environ.get("LOREG_FUZZ_SEED", "20250"))


@pytest.fixture(scope="module")
def valid_adapter(adapter_files) -> ValidAdapter:
    """The tiny PEFT adapter, split for the generators."""
    return ValidAdapter.from_files(adapter_files)


def test_generators_are_reproducible_and_cover_every_family(valid_adapter):
    """Case N of a seed is the same whatever ran before; the sample draws every family."""
    first = make_case(SEED, 7, valid_adapter)
    for i in range(50):
        make_case(SEED, i, valid_adapter)
    again = make_case(SEED, 7, valid_adapter)
    assert (first.label, first.files, first.body_extra) == (
        again.label,
        again.files,
        again.body_extra,
    )
    drawn = {make_case(SEED, i, valid_adapter).family for i in range(CASES)}
    assert drawn == set(FAMILIES)


def test_fuzz_publish_sample(registry_server, base_files, valid_adapter):
    """CASES fuzz cases on this backend: no 5xx, no hang, nothing accepted a loader refuses."""
    register_base(registry_server.url, registry_server.admin_token, base_files)
    runner = FuzzRunner(registry_server.url, registry_server.admin_token, timeout=30)
    try:
        for i in range(CASES):
            runner.run(make_case(SEED, i, valid_adapter))
    finally:
        runner.close()
    stats = runner.stats
    assert stats.outcomes["accepted"] > CASES // 20, stats.outcomes  # the accept path ran
    assert stats.pulled_files > 0 and stats.deep_loads > 0
    reproduce = (
        f"python bench/fuzz_publish.py --backend {registry_server.backend} --seed {SEED} "
        "--case {index} --dump /tmp/case{index}"
    )
    assert not stats.failures, (
        f"{len(stats.failures)} of {CASES} fuzz cases failed on {registry_server.backend} "
        f"(outcomes {dict(stats.outcomes)}):\n" + describe_failures(stats, reproduce)
    )
