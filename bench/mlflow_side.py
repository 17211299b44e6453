"""MLflow side of ``bench/api.py --mlflow``: the same load on MLflow's alias lookup.

MLflow is installed into its own virtual environment (never the project's .venv):
``~/.cache/loreg-bench/mlflow-venv`` by default, created once and reused. Its
``mlflow server`` runs on a throw-away Postgres database with the same worker counts
as the loreg runs, is seeded with registered model ``medical`` (1,000 versions, alias
``prod`` on the middle one) through the REST API, grown to 1,000 models x 100
versions by copying MLflow's own rows in SQL, and driven with the same wrk helper as
loreg: ``GET /api/2.0/mlflow/registered-models/alias`` (alias lookup),
``GET /api/2.0/mlflow/model-versions/get`` and ``GET /health`` (its floor).

Run standalone to create the venv only: ``.venv/bin/python bench/mlflow_side.py``.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MLFLOW_VERSION = "3.17.2"
DEFAULT_VENV = Path.home() / ".cache" / "loreg-bench" / "mlflow-venv"


def venv_python(venv: Path) -> Path:
    """The interpreter of ``venv``."""
    return venv / "bin" / "python"


def installed_version(venv: Path) -> str | None:
    """MLflow's version in ``venv``, or None when it is not installed there."""
    if not venv_python(venv).exists():
        return None
    r = subprocess.run(
        [str(venv_python(venv)), "-c", "import mlflow; print(mlflow.__version__)"],
        capture_output=True,
        text=True,
    )
    return r.stdout.strip() if r.returncode == 0 else None


def ensure_venv(venv: Path, version: str = MLFLOW_VERSION) -> str:
    """Create ``venv`` with ``mlflow==version`` and psycopg2-binary unless it already
    holds that version; returns the installed version."""
    have = installed_version(venv)
    if have == version:
        return have
    base = getattr(sys, "_base_executable", sys.executable)
    if not venv_python(venv).exists():
        venv.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([base, "-m", "venv", str(venv)], check=True)
    pip = [str(venv_python(venv)), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    print(f"# installing mlflow=={version} into {venv} (once)", flush=True)
    subprocess.run(pip + [f"mlflow=={version}", "psycopg2-binary"], check=True)
    have = installed_version(venv)
    if have is None:
        raise RuntimeError(f"mlflow did not import from {venv}")
    return have


def free_port() -> int:
    """A loopback TCP port nobody listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class MlflowServer:
    """A running ``mlflow server`` (the CLI process and its uvicorn, one session)."""

    url: str
    process: subprocess.Popen

    def stop(self) -> None:
        """SIGTERM to the server's process group, then wait (SIGKILL after 20 s)."""
        if self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        except ProcessLookupError:
            pass


def server_command(venv: Path, backend: str, artifacts: Path, port: int, workers: int) -> list[str]:
    """``mlflow server`` on ``port`` with ``workers`` uvicorn workers (MLflow 3.x's
    default server; ``--workers`` is passed through to ``uvicorn --workers``)."""
    return [
        str(venv / "bin" / "mlflow"),
        "server",
        "--backend-store-uri",
        backend,
        "--artifacts-destination",
        str(artifacts),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
    ]


def start_server(
    venv: Path, backend: str, artifacts: Path, workers: int, log: Path
) -> MlflowServer:
    """Start ``mlflow server`` in its own session; wait until ``/health`` answers 200.

    MLflow's job runner (a huey consumer beside the server) is switched off with
    ``MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false``: it plays no part in a lookup and
    would only share the two cores."""
    port = free_port()
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    env.pop("VIRTUAL_ENV", None)
    with open(log, "w") as out:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen(
            server_command(venv, backend, artifacts, port, workers),
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = MlflowServer(f"http://127.0.0.1:{port}", proc)
    try:
        wait_healthy(server, log, 180)  # the first start runs MLflow's migrations
    except BaseException:  # Ctrl-C included: no server left behind
        server.stop()
        raise
    return server


def wait_healthy(server: MlflowServer, log: Path, seconds: float) -> None:
    """Poll ``/health`` until it answers 200; raise if the server exits or times out."""
    import httpx

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"mlflow server exited: {log.read_text()[-3000:]}")
        try:
            if httpx.get(server.url + "/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"mlflow server: no /health in {seconds:.0f} s: {log.read_text()[-3000:]}")


def _post(api: Any, path: str, body: dict[str, Any]) -> dict[str, Any]:
    """POST a JSON body to MLflow's REST API; raise on an error answer."""
    r = api.post("/api/2.0/mlflow/" + path, json=body)
    if r.status_code != 200:
        raise RuntimeError(f"POST {path}: {r.status_code} {r.text[:500]}")
    return r.json()


def seed_model(url: str, name: str, versions: int, alias_version: int) -> float:
    """Registered model ``name`` with ``versions`` versions (source: a dummy S3 URI --
    MLflow refuses local sources without a run) and alias ``prod`` on
    ``alias_version``, all through the REST API; returns the versions/s of the seeding."""
    import httpx

    start = time.perf_counter()
    with httpx.Client(base_url=url, timeout=60) as api:
        _post(api, "registered-models/create", {"name": name})
        for _ in range(versions):
            _post(
                api,
                "model-versions/create",
                {"name": name, "source": f"s3://bench-artifacts/{name}/model"},
            )
        _post(
            api,
            "registered-models/alias",
            {"name": name, "alias": "prod", "version": str(alias_version)},
        )
    return versions / (time.perf_counter() - start)


def _columns(conn: Any, table: str) -> list[str]:
    """The column names of ``table`` in MLflow's schema."""
    import sqlalchemy as sa

    return [c["name"] for c in sa.inspect(conn).get_columns(table)]


def _insert_copies(
    conn: Any, table: str, overrides: dict[str, str], source: str, where: str
) -> None:
    """INSERT INTO table (all columns) SELECT columns-with-overrides FROM source WHERE where."""
    import sqlalchemy as sa

    cols = _columns(conn, table)
    select = ", ".join(overrides.get(c, f"t.{c}") for c in cols)
    conn.execute(
        sa.text(
            f"INSERT INTO {table} ({', '.join(cols)}) SELECT {select} FROM {source} WHERE {where}"
        )
    )


def grow_registry(db_url: str, template: str, total: int, per_model: int) -> int:
    """Add registered models ``m0001``... of ``per_model`` versions each, copies of
    ``template``'s model row and version 1 row, each with alias ``prod`` on its middle
    version, until MLflow's tables hold ``total`` versions; returns the rows added."""
    import sqlalchemy as sa

    engine = sa.create_engine(db_url)
    try:
        with engine.begin() as conn:
            have = conn.execute(sa.text("SELECT count(*) FROM model_versions")).scalar_one()
            first = conn.execute(sa.text("SELECT count(*) FROM registered_models")).scalar_one()
            models = max(0, -(-(total - have) // per_model))
            if models == 0:
                return 0
            name = "'m' || lpad(g::text, 4, '0')"
            series = f"generate_series({first}, {first + models - 1}) g"
            _insert_copies(
                conn,
                "registered_models",
                {"name": name},
                f"registered_models t, {series}",
                f"t.name = '{template}'",
            )
            _insert_copies(
                conn,
                "model_versions",
                {"name": name, "version": "v"},
                f"model_versions t, {series}, generate_series(1, {per_model}) v",
                f"t.name = '{template}' AND t.version = 1",
            )
            _insert_copies(
                conn,
                "registered_model_aliases",
                {"name": name, "version": str(max(1, per_model // 2))},
                f"registered_model_aliases t, {series}",
                f"t.name = '{template}' AND t.alias = 'prod'",
            )
            conn.execute(sa.text("ANALYZE"))
        return models * per_model
    finally:
        engine.dispose()


def alias_ratios(rows: list[Any]) -> list[str]:
    """One line per (scale, workers, connections): loreg resolve-by-alias (anonymous)
    req/s over MLflow's alias lookup req/s, and MLflow's p50 over loreg's."""
    loreg = {
        (r.scale, r.workers, r.conns): r.load
        for r in rows
        if r.label == "resolve by alias" and not r.token
    }
    lines = []
    for r in rows:
        key = (r.scale, r.workers, r.conns)
        if r.label != "mlflow alias" or key not in loreg:
            continue
        ours, theirs = loreg[key], r.load
        lines.append(
            f"# {r.scale:>6} versions, {r.workers} worker(s), {r.conns:>2} conn: "
            f"loreg {ours.rps:.0f} req/s vs mlflow {theirs.rps:.0f} req/s = "
            f"{ours.rps / max(theirs.rps, 1e-9):.1f}x; p50 {ours.p50:.2f} ms vs "
            f"{theirs.p50:.2f} ms = mlflow {theirs.p50 / max(ours.p50, 1e-9):.1f}x slower"
        )
    return lines


def check_copies(url: str, grown: bool) -> None:
    """The alias lookup answers for ``medical`` and, when the registry was grown, for a
    copied model too (the SQL copies are rows MLflow reads like its own)."""
    import httpx

    names = ["medical"] + (["m0001"] if grown else [])
    for name in names:
        r = httpx.get(
            url + "/api/2.0/mlflow/registered-models/alias",
            params={"name": name, "alias": "prod"},
            timeout=10,
        )
        if r.status_code != 200:
            raise RuntimeError(f"mlflow alias lookup of {name}: {r.status_code} {r.text[:300]}")


Wrk = Callable[[str, int, float, Any], Any]
Emit = Callable[[int, int, str, bool, int, Any, Any], None]


class MlflowSide:
    """The MLflow half of the bench: venv, throw-away database, temp folder, seeding;
    ``grow`` and ``measure`` per (scale, workers) beside loreg's rows."""

    PATHS = {
        "mlflow floor": "/health",
        "mlflow alias": "/api/2.0/mlflow/registered-models/alias?name=medical&alias=prod",
        "mlflow version": "/api/2.0/mlflow/model-versions/get?name=medical&version={number}",
    }

    def __init__(self, venv: Path, versions: int) -> None:
        self.venv = venv
        self.versions = versions
        self.stack = ExitStack()
        self.db_url = ""
        self.rate = 0.0
        self.work = Path()

    def __enter__(self) -> MlflowSide:
        try:
            self._setup()
        except BaseException:
            self.stack.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stack.close()

    def _setup(self) -> None:
        """Install (once), create the database and folder, seed ``medical``."""
        from tests.support.servers import temp_pg_database

        version = ensure_venv(self.venv)
        print(f"# mlflow {version} from {self.venv}", flush=True)
        self.work = Path(
            self.stack.enter_context(tempfile.TemporaryDirectory(prefix="loreg-mlflow-"))
        )
        db = self.stack.enter_context(temp_pg_database())
        self.db_url = db
        with self.server(1, "seed") as server:
            self.rate = seed_model(server.url, "medical", self.versions, self.versions // 2)
        print(
            f"# mlflow seeding: {self.versions} versions of 'medical' through the REST API "
            f"at {self.rate:.0f} versions/s",
            flush=True,
        )

    @property
    def backend(self) -> str:
        """The ``--backend-store-uri``: ``postgresql+psycopg2://...`` -- the driver named,
        since SQLAlchemy 2.1 (in MLflow's venv) defaults ``postgresql://`` to psycopg 3."""
        return "postgresql+psycopg2://" + self.db_url.split("://", 1)[1]

    @contextmanager
    def server(self, workers: int, tag: str) -> Iterator[MlflowServer]:
        """An ``mlflow server`` with ``workers`` workers for the ``with`` block."""
        server = start_server(
            self.venv, self.backend, self.work / "artifacts", workers, self.work / f"{tag}.log"
        )
        try:
            yield server
        finally:
            server.stop()

    def grow(self, total: int, per_model: int) -> None:
        """Grow MLflow's registry to ``total`` versions by copying its own rows in SQL."""
        start = time.perf_counter()
        added = grow_registry(self.db_url, "medical", total, per_model)
        if added:
            print(
                f"# mlflow: {added} versions bulk-inserted in SQL (copies of MLflow's own "
                f"model_versions / registered_models / alias rows) in "
                f"{time.perf_counter() - start:.1f} s; through the REST API at the rate above "
                f"they would take ~{added / max(self.rate, 1e-9) / 60:.0f} min",
                flush=True,
            )

    def measure(
        self,
        scale: int,
        workers: int,
        connections: list[int],
        duration: float,
        wrk: Wrk,
        emit: Emit,
    ) -> None:
        """wrk on /health, the alias lookup and get-version at each connection count,
        after a discarded 1 s warm-up run per endpoint."""
        paths = {k: v.format(number=self.versions // 2) for k, v in self.PATHS.items()}
        with self.server(workers, f"serve-{scale}-{workers}") as server:
            check_copies(server.url, scale > self.versions)
            for path in paths.values():  # discarded: a fresh MLflow worker's first
                wrk(server.url + path, max(connections), 1, None)  # requests take ~0.1-0.2 s
            for conns in connections:
                floor = None
                for label, path in paths.items():
                    load = wrk(server.url + path, conns, duration, None)
                    floor = floor or load
                    emit(scale, workers, label, False, conns, load, floor)


if __name__ == "__main__":
    print(ensure_venv(Path(os.environ.get("LOREG_BENCH_MLFLOW_VENV", DEFAULT_VENV))))
