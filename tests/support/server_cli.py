"""Run the server-side commands (``loreg fsck``, ``loreg db ...``) against a test registry."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def server_cli_env(server, tmp_path: Path) -> tuple[list[str], dict[str, str]]:
    """Arguments and environment that point a server-side ``loreg`` command at the test
    server's database and store (``--data-dir`` on SQLite, ``LOREG_*`` on Postgres + S3)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOREG_")}
    s = server.settings
    if server.backend == "sqlite_local":
        return ["--data-dir", str(s.data_dir)], env
    env.update(
        LOREG_DATA_DIR=str(tmp_path / "server-cli"),
        LOREG_DATABASE_URL=s.database_url,
        LOREG_S3_BUCKET=s.s3_bucket,
        LOREG_S3_ENDPOINT_URL=s.s3_endpoint_url,
        LOREG_S3_REGION=s.s3_region,
        LOREG_S3_TRUST_CHECKSUMS="0",
    )
    return [], env


def run_server_cli(server, tmp_path: Path, *command: str) -> subprocess.CompletedProcess:
    """``loreg *command`` (then the data-dir argument on SQLite) in a subprocess."""
    extra, env = server_cli_env(server, tmp_path)
    return subprocess.run(
        [str(Path(sys.executable).parent / "loreg"), *command, *extra],
        env=env,
        cwd=str(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
