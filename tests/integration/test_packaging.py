"""A wheel install (not the checkout) can migrate a database: the migrations ship in it.

The wheel is built from this checkout and installed into a fresh virtual
environment that borrows only third-party packages from the test venv, then
``loreg db upgrade`` runs from a folder outside the checkout.
"""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def run(*cmd: str | Path, cwd: Path) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [str(c) for c in cmd], cwd=cwd, capture_output=True, text=True, timeout=240
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc


def test_a_wheel_install_runs_loreg_db_upgrade_outside_the_checkout(tmp_path):
    wheels = tmp_path / "wheels"
    had_build_dir = (ROOT / "build").exists()
    run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
        "-w", wheels, ROOT, cwd=tmp_path)  # fmt: skip
    wheel = next(wheels.glob("loreg-*.whl"))
    if not had_build_dir:  # setuptools builds in the checkout; leave it as it was
        shutil.rmtree(ROOT / "build", ignore_errors=True)
    env_dir = tmp_path / "env"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    site = Path(
        run(
            python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=tmp_path
        ).stdout.strip()  # fmt: skip
    )
    # third-party packages from the test venv (a .pth line does not run that dir's own .pth
    # files, so the checkout's editable install stays invisible)
    (site / "borrowed.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    run(sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps", wheel,
        cwd=tmp_path)  # fmt: skip

    data_dir = tmp_path / "data"
    code = (
        "import registry, sys; from loreg.cli import main; "
        "print(registry.__file__); sys.exit(main(['db', 'upgrade', '--data-dir', sys.argv[1]]))"
    )
    proc = run(python, "-c", code, data_dir, cwd=tmp_path)
    installed_at = Path(proc.stdout.splitlines()[0])
    assert env_dir in installed_at.parents and ROOT not in installed_at.parents
    assert "database is up to date" in proc.stdout
    with sqlite3.connect(data_dir / "loreg.db") as db:
        tables = {row[0] for row in db.execute("select name from sqlite_master where type='table'")}
        head = db.execute("select version_num from alembic_version").fetchone()[0]
    assert {"adapters", "versions", "jobs", "upload_blobs"} <= tables
    newest = max(p.name.split("_", 1)[0] for p in (ROOT / "migrations" / "versions").glob("0*.py"))
    assert head == newest
