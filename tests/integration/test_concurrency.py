"""Concurrent pushes to one adapter name through the SDK, on both backends.

Different content: every push gets its own version, numbered 1..N without gaps
or duplicates. Identical content: one version; the ``(adapter, digest)``
uniqueness makes exactly one commit create it, and every other push returns it
with ``created=False``.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import pytest

import loreg
from loreg.client import PushResult

pytestmark = pytest.mark.integration

T = TypeVar("T")


def run_together(tasks: list[Callable[[], T]]) -> list[T]:
    """Run the tasks in threads released at the same moment; re-raise the first failure."""
    barrier = threading.Barrier(len(tasks))

    def start(task: Callable[[], T]) -> T:
        barrier.wait(timeout=60)
        return task()

    with ThreadPoolExecutor(max_workers=len(tasks)) as pool:
        futures = [pool.submit(start, task) for task in tasks]
        return [f.result(timeout=300) for f in futures]


def pusher(server, folder: Path, cache: Path, name: str) -> Callable[[], PushResult]:
    """A task that pushes ``folder`` as ``name`` with its own SDK client."""

    def task() -> PushResult:
        with loreg.Registry(
            url=server.url, token=server.admin_token, cache_dir=cache, progress=False
        ) as reg:
            return reg.push(folder, name)

    return task


def variant(adapter_dir: Path, folder: Path, note: str) -> Path:
    """A copy of the adapter with a README of its own (so a distinct manifest digest)."""
    shutil.copytree(adapter_dir, folder)
    (folder / "README.md").write_text(note)
    return folder


def test_concurrent_pushes_of_different_content_get_distinct_versions(
    registry_server, adapter_dir, tmp_path
):
    n = 6
    folders = [variant(adapter_dir, tmp_path / f"v{i}", f"variant {i}\n") for i in range(n)]
    results = run_together(
        [pusher(registry_server, f, tmp_path / f"cache{i}", "racer") for i, f in enumerate(folders)]
    )
    assert sorted(r.version for r in results) == list(range(1, n + 1))
    assert all(r.created for r in results)
    assert len({r.digest for r in results}) == n

    with loreg.Registry(
        url=registry_server.url, token=registry_server.admin_token, cache_dir=tmp_path / "check"
    ) as reg:
        versions = list(reversed(list(reg.versions("racer"))))  # oldest first
        assert [v["version"] for v in versions] == list(range(1, n + 1))
        by_version = {r.version: r for r in results}
        for v in versions:
            assert v["digest"] == by_version[v["version"]].digest
        # each version holds the content of the push that got its number
        for folder, pushed in zip(folders, results, strict=True):
            readme = reg.pull(f"racer-v{pushed.version}") / "README.md"
            assert readme.read_text() == (folder / "README.md").read_text()


def test_concurrent_identical_pushes_make_one_version(registry_server, adapter_dir, tmp_path):
    n = 4
    folder = variant(adapter_dir, tmp_path / "same", "identical\n")
    results = run_together(
        [pusher(registry_server, folder, tmp_path / f"cache{i}", "twin") for i in range(n)]
    )
    assert {(r.ref, r.version, r.digest) for r in results} == {
        ("default/twin-v1", 1, results[0].digest)
    }
    assert sum(r.created for r in results) == 1

    with loreg.Registry(
        url=registry_server.url, token=registry_server.admin_token, cache_dir=tmp_path / "check"
    ) as reg:
        assert [v["version"] for v in reg.versions("twin")] == [1]
