"""``hf upload`` (the stock Hugging Face CLI) against a real ``loreg serve``, both modes.

The CLI's default call (``create_repo(exist_ok=True)`` with no visibility, then
``upload_folder``) publishes a version that ``loreg pull`` downloads; the same
folder again publishes nothing; ``--revision`` with a new branch is refused with
a message that says what to do.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import run_cli
from tests.support.hf_client import hf_env

pytestmark = pytest.mark.e2e

HF = str(Path(sys.executable).parent / "hf")


def _hf(served, home: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [HF, *args],
        env=hf_env(f"{served.url}/hf", served.token, home),
        capture_output=True,
        text=True,
        timeout=300,
    )


def _files(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()
    }


@pytest.fixture(params=["served", "served_production"])
def served_any(request):
    """The embedded default (SQLite + local store) and production (Postgres + S3)."""
    return request.getfixturevalue(request.param)


def test_hf_upload_publishes_a_version_that_loreg_pulls(served_any, tmp_path):
    from tests.support.tiny import save_adapter

    served = served_any
    folder = save_adapter(tmp_path / "adapter", seed=4)
    (folder / "README.md").write_text("---\nlibrary_name: peft\n---\n# uploaded with hf\n")
    first = _hf(served, tmp_path / "hf", "upload", "default/hubcli", str(folder))
    assert first.returncode == 0, first.stdout + first.stderr
    assert f"{served.url}/hf/default/hubcli/commit/" in first.stdout + first.stderr
    again = _hf(served, tmp_path / "hf", "upload", "default/hubcli", str(folder))
    assert again.returncode == 0, again.stdout + again.stderr

    shown = json.loads(run_cli(served, tmp_path / "c", "--json", "show", "default/hubcli").stdout)
    assert shown["version"] == 1 and shown["adapter"]["versions"] == 1, shown
    assert [v["version"] for v in shown["versions"]] == [1], shown
    pulled = Path(run_cli(served, tmp_path / "c", "pull", "default/hubcli").stdout.strip())
    assert _files(pulled) == _files(folder)

    branch = _hf(
        served, tmp_path / "hf", "upload", "default/hubcli", str(folder), "--revision", "dev"
    )
    assert branch.returncode != 0
    assert "one branch, 'main'" in branch.stdout + branch.stderr
