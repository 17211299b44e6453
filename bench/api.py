"""API hot-path benchmark: resolve under load on a production-mode ``loreg serve``.

Starts ``loreg serve`` the way README.md's production section says (Postgres through
``LOREG_DATABASE_URL``, blobs on S3 through ``LOREG_S3_*`` -- here a loopback
moto_server -- and a broker URL), as a separate process with ``--workers`` 1 and 2,
and drives it with wrk (Debian's package: ``apt-get install -y wrk``) on loopback:

* seeds 1,000 versions of ``default/medical`` (alias ``prod``), then grows the
  catalog to 100,000 versions over 1,000 adapters (each with a ``prod`` alias). One
  version is published through the API; the others are bulk-inserted copies of its
  rows (versions, files, lineage edges) with their own numbers and digests, so the
  tables hold what publish writes;
* for each scale and worker count, after an unmeasured warm-up of every path
  (``--warmup``), measures p50 / p99 / requests per second at 1 and 16 connections for
  ``GET /v1/livez`` (the stack's floor: no dependency touched) and ``GET
  /v1/resolve/...`` by alias, by version number and by digest, anonymous and with a
  bearer token, and "many refs": every version of ``medical`` in turn (a wrk Lua
  script), so that concurrent requests never ask for the same ref and cannot share
  a lookup; prints each resolve beside the floor of the same run. The first warm-up
  pass over the many refs is printed too ("many refs (cold)", 16 connections, no
  floor beside it): each worker builds each version's answer once there.

With ``--mlflow``, MLflow's alias lookup is measured in the same run, each (scale,
workers) configuration right after loreg's (``bench/mlflow_side.py``; MLflow lives in
its own venv), and the loreg / MLflow ratios are printed at the end.

Run: ``.venv/bin/python bench/api.py [--scales 1000,100000] [--workers 1,2] [--duration 5]
[--mlflow]``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")

LOREG = str(Path(sys.executable).parent / "loreg")
ADAPTERS_AT_SCALE = 1000
#: the row of the first pass over the many refs, printed from the warm-up
COLD = "many refs (cold)"
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


@dataclass
class Load:
    """One wrk run: latency percentiles (ms) and throughput."""

    p50: float
    p99: float
    rps: float
    errors: int


def parse_wrk(output: str) -> Load:
    """The p50, p99 (ms), requests/s and non-2xx/socket error count of ``wrk --latency``."""

    def latency(pct: str) -> float:
        m = re.search(rf"^\s*{pct}%\s+([\d.]+)(us|ms|s)\s*$", output, re.MULTILINE)
        if m is None:
            raise ValueError(f"no {pct}% line in wrk output:\n{output}")
        return float(m.group(1)) * _UNITS[m.group(2)]

    rps = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.MULTILINE)
    if rps is None:
        raise ValueError(f"no Requests/sec line in wrk output:\n{output}")
    errors = 0
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    if non2xx:
        errors += int(non2xx.group(1))
    sock = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    if sock:
        errors += sum(int(g) for g in sock.groups())
    return Load(latency("50"), latency("99"), float(rps.group(1)), errors)


def run_wrk(
    url: str,
    connections: int,
    duration: float,
    token: str | None,
    headers: Mapping[str, str] | None = None,
    script: Path | None = None,
) -> Load:
    """Drive ``url`` with wrk (one thread) for ``duration`` seconds, with a bearer
    ``token`` (None: none), any other request ``headers`` and a wrk Lua ``script``."""
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(duration))}s", "--latency"]
    if token:
        cmd += ["-H", f"Authorization: Bearer {token}"]
    for name, value in (headers or {}).items():
        cmd += ["-H", f"{name}: {value}"]
    if script is not None:
        cmd += ["-s", str(script)]
    out = subprocess.run(cmd + [url], capture_output=True, text=True, check=True).stdout
    return parse_wrk(out)


def round_robin_script(paths: list[str], out: Path) -> Path:
    """A wrk Lua script that requests ``paths`` in turn (each connection the next one),
    so that concurrent requests ask for different refs: no two share a lookup."""
    quoted = ",\n".join(f'  "{p}"' for p in paths)
    out.write_text(
        f"local paths = {{\n{quoted}\n}}\n"
        "local n = 0\n"
        "request = function()\n"
        "  n = n + 1\n"
        '  return wrk.format("GET", paths[(n % #paths) + 1])\n'
        "end\n"
    )
    return out


@dataclass
class Row:
    """One printed row of the table."""

    scale: int
    workers: int
    label: str
    token: bool
    conns: int
    load: Load
    floor: Load | None  # None: no floor beside it (the cold pass)

    def line(self) -> str:
        """The row as the table prints it."""
        if self.floor is None:
            ratio = "-"
        else:
            ratio = f"{self.floor.rps / self.load.rps:.2f}" if self.load.rps else "inf"
        return (
            f"{self.scale:>8} {self.workers:>2} {self.label:<18} "
            f"{'yes' if self.token else 'no':<5} {self.conns:>4} "
            f"{self.load.p50:>7.2f} {self.load.p99:>7.2f} {self.load.rps:>8.0f} "
            f"{ratio:>7} {self.load.errors:>6}"
        )


@dataclass
class Server:
    """A running ``loreg serve`` process."""

    url: str
    token: str
    process: subprocess.Popen

    def stop(self) -> None:
        """SIGTERM, then wait (kill after 20 s)."""
        self.process.terminate()
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start_server(env: dict[str, str], data_dir: Path, workers: int, log: Path) -> Server:
    """``loreg serve --json`` on a free port; waits for its announcement and an answer."""
    import httpx

    cmd = [LOREG, "serve", "--data-dir", str(data_dir), "--port", "0", "--json"]
    if workers:  # 0: a server older than --workers (one process)
        cmd += ["--workers", str(workers)]
    out = open(log, "w")  # noqa: SIM115 - the process owns it
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=out, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        proc.wait(10)
        raise RuntimeError(f"loreg serve exited: {log.read_text()[-2000:]}")
    announced = json.loads(line)
    token = announced["admin_token"] or (data_dir / "admin_token").read_text().strip()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(announced["url"] + "/v1/whoami", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.2)
    else:
        raise RuntimeError("server did not answer within 60 s")
    return Server(announced["url"], token, proc)


def _columns(conn, table: str) -> list[str]:
    import sqlalchemy as sa

    return [c["name"] for c in sa.inspect(conn).get_columns(table) if c["name"] != "id"]


def _copy_rows(conn, table: str, overrides: dict[str, str], source: str, where: str) -> None:
    """INSERT INTO table (cols) SELECT cols-with-overrides FROM source WHERE where."""
    import sqlalchemy as sa

    cols = _columns(conn, table)
    select = ", ".join(overrides.get(c, f"t.{c}") for c in cols)
    conn.execute(
        sa.text(
            f"INSERT INTO {table} ({', '.join(cols)}) SELECT {select} FROM {source} WHERE {where}"
        )
    )


def copy_versions(conn, adapter_id: int, template_id: int, first: int, last: int) -> None:
    """Versions ``first..last`` of an adapter, copies of version ``template_id``'s rows
    (the version, its files and its lineage edges) with their own numbers and digests."""
    digest = f"'sha256:' || encode(sha256(convert_to('{adapter_id}-' || g, 'UTF8')), 'hex')"
    _copy_rows(
        conn,
        "versions",
        {"adapter_id": str(adapter_id), "number": "g", "digest": digest, "job_id": "NULL"},
        f"versions t, generate_series({first}, {last}) g",
        f"t.id = {template_id}",
    )
    new = (
        f"(SELECT id FROM versions WHERE adapter_id = {adapter_id} "
        f"AND number BETWEEN {first} AND {last}) v"
    )
    for table, key in (("version_files", "version_id"), ("lineage_edges", "child_version_id")):
        _copy_rows(conn, table, {key: "v.id"}, f"{table} t, {new}", f"t.{key} = {template_id}")


def grow_catalog(engine, template_id: int, total: int, per_adapter: int) -> None:
    """Add adapters ``a0001``... of ``per_adapter`` versions each, every one with a
    ``prod`` alias on its middle version, until the catalog holds ``total`` versions."""
    import sqlalchemy as sa

    with engine.begin() as conn:
        have = conn.execute(sa.text("SELECT count(*) FROM versions")).scalar_one()
        template_adapter = conn.execute(
            sa.text("SELECT adapter_id FROM versions WHERE id = :t"), {"t": template_id}
        ).scalar_one()
        i = conn.execute(sa.text("SELECT count(*) FROM adapters")).scalar_one()
        while have < total:
            name = f"a{i:04d}"
            i += 1
            _copy_rows(
                conn, "adapters", {"name": f"'{name}'"}, "adapters t", f"t.id = {template_adapter}"
            )
            adapter_id = conn.execute(
                sa.text(
                    "SELECT id FROM adapters WHERE name = :n AND namespace_id = "
                    "(SELECT namespace_id FROM adapters WHERE id = :a)"
                ),
                {"n": name, "a": template_adapter},
            ).scalar_one()
            count = min(per_adapter, total - have)
            copy_versions(conn, adapter_id, template_id, 1, count)
            conn.execute(
                sa.text(
                    "INSERT INTO aliases (adapter_id, name, version_id, updated_by, updated_at) "
                    "SELECT :a, 'prod', id, 'bench', now() FROM versions "
                    "WHERE adapter_id = :a AND number = :n"
                ),
                {"a": adapter_id, "n": max(1, count // 2)},
            )
            have += count
        conn.execute(sa.text("ANALYZE"))


def publish_template(url: str, token: str) -> None:
    """Publish ``default/medical`` v1 through the API (the rows every copy is made from)."""
    import httpx

    from bench.resolve_profile import _adapter_files
    from tests.support.publish import publish

    with httpx.Client(
        base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=60
    ) as api:
        files = {**_adapter_files(), "README.md": b"# medical\n"}
        r, _ = publish(api, "medical", files)
        assert r.status_code == 201, r.text


def spy(server: Server, path: str, seconds: int, out: Path) -> None:
    """Sample the server process with py-spy under wrk load; print the share of samples
    per function (inclusive) for the top frames."""
    if shutil.which("py-spy") is None and not (Path(sys.executable).parent / "py-spy").exists():
        print("# py-spy not installed (pip install py-spy): no profile", flush=True)
        return
    exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    load = subprocess.Popen(
        ["wrk", "-t1", "-c16", f"-d{seconds + 2}s", server.url + path],
        stdout=subprocess.DEVNULL,
    )
    try:
        subprocess.run(
            [
                exe,
                "record",
                "-p",
                str(server.process.pid),
                "-d",
                str(seconds),
                "-r",
                "200",
                "-f",
                "raw",
                "-o",
                str(out),
                "--nonblocking",
            ],
            check=True,
            capture_output=True,
        )
    finally:
        load.wait()
    inclusive: dict[str, int] = {}
    own: dict[str, int] = {}
    total = 0
    for line in out.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        n = int(count)
        # "func (file.py:LINE)" -> "func (file.py)": one row per function, not per line
        frames = [re.sub(r":\d+\)$", ")", f) for f in stack.split(";")]
        if not any("Server.run (uvicorn/server.py" in f for f in frames):
            continue  # the supervisor (parent) process
        total += n
        own[frames[-1]] = own.get(frames[-1], 0) + n
        for frame in set(frames):
            inclusive[frame] = inclusive.get(frame, 0) + n
    print(f"# py-spy: {total} busy samples of the serving process under {path}, 16 connections")
    for title, table, top in (("inclusive", inclusive, 45), ("own time", own, 25)):
        print(f"# {title}:")
        for frame, n in sorted(table.items(), key=lambda kv: -kv[1])[:top]:
            print(f"#   {100 * n / max(total, 1):5.1f}%  {frame[:150]}")


def load_average() -> str:
    """The 1/5/15-minute load averages."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


@contextmanager
def production_env(work: Path) -> Iterator[tuple[dict[str, str], str]]:
    """The environment of a production-mode server (throw-away Postgres database, a
    loopback moto_server bucket, the local Redis as broker), and the database URL."""
    from tests.support.s3server import MotoServer
    from tests.support.servers import temp_pg_database

    with temp_pg_database() as db_url, MotoServer() as moto:
        url = db_url.replace("+psycopg2", "")
        env = {
            **os.environ,
            "LOREG_DATABASE_URL": url,
            "LOREG_S3_BUCKET": "bench",
            "LOREG_S3_ENDPOINT_URL": moto.endpoint_url,
            "LOREG_S3_REGION": "us-east-1",
            "LOREG_REDIS_URL": os.environ.get("LOREG_BENCH_REDIS_URL", "redis://127.0.0.1:6379/14"),
            "LOREG_NO_PROGRESS": "1",
        }
        yield env, db_url


def main() -> int:
    """Seed, serve, load; print one line per (scale, workers, endpoint, connections)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", default="1000,100000", help="catalog sizes (versions)")
    parser.add_argument(
        "--workers",
        default="1,2",
        help="worker counts of loreg serve (0: pass no --workers, for a server without it)",
    )
    parser.add_argument("--connections", default="1,16")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per wrk run")
    parser.add_argument("--medical-versions", type=int, default=1000)
    parser.add_argument(
        "--warmup",
        type=float,
        default=2.0,
        metavar="SECONDS",
        help="unmeasured wrk run of each path after each server start (caches, pools)",
    )
    parser.add_argument(
        "--py-spy",
        type=int,
        default=0,
        metavar="SECONDS",
        help="also sample the one-worker server with py-spy (pip install py-spy) for this "
        "long under resolve-by-alias load at 16 connections, and print where it spends time",
    )
    parser.add_argument(
        "--floor-path",
        default="/v1/livez",
        help="the trivial endpoint (a server older than /v1/livez: /v1/whoami, anonymous)",
    )
    parser.add_argument(
        "--mlflow",
        action="store_true",
        help="also measure MLflow's alias lookup in the same run (bench/mlflow_side.py)",
    )
    parser.add_argument(
        "--mlflow-venv",
        type=Path,
        default=None,
        help="MLflow's own venv, created once (default ~/.cache/loreg-bench/mlflow-venv)",
    )
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk not found: apt-get install -y wrk", file=sys.stderr)
        return 2
    import sqlalchemy as sa

    scales = [int(x) for x in args.scales.split(",")]
    workers = [int(x) for x in args.workers.split(",")]
    connections = [int(x) for x in args.connections.split(",")]
    print(
        f"# bench/api.py  {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC  {platform.node()}  "
        f"{platform.machine()}  {os.cpu_count()} cores  python {platform.python_version()}  "
        f"load {load_average()}"
    )
    print(f"# command: {' '.join(sys.argv)}")
    print(f"# floor: GET {args.floor_path}; x floor = floor req/s / this row's req/s")
    with ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="loreg-api-")))
        env, db_url = stack.enter_context(production_env(work))
        engine = sa.create_engine(db_url)
        stack.callback(engine.dispose)
        rows: list[Row] = []

        def emit(*fields) -> None:  # noqa: ANN002 - Row's fields, in order
            """Keep a row for the summary and print it."""
            rows.append(Row(*fields))
            print(rows[-1].line(), flush=True)

        side = None
        if args.mlflow:
            from bench import mlflow_side

            venv = args.mlflow_venv or mlflow_side.DEFAULT_VENV
            side = stack.enter_context(mlflow_side.MlflowSide(venv, args.medical_versions))
        data_dir = work / "data"
        server = start_server(env, data_dir, 0 if 0 in workers else 1, work / "seed.log")
        try:
            publish_template(server.url, server.token)
        finally:
            server.stop()
        token = (data_dir / "admin_token").read_text().strip()
        with engine.begin() as conn:
            template_id, adapter_id = conn.execute(
                sa.text("SELECT id, adapter_id FROM versions")
            ).one()
            copy_versions(conn, adapter_id, template_id, 2, args.medical_versions)
            conn.execute(
                sa.text(
                    "INSERT INTO aliases (adapter_id, name, version_id, updated_by, updated_at) "
                    "SELECT :a, 'prod', id, 'bench', now() FROM versions "
                    "WHERE adapter_id = :a AND number = :n"
                ),
                {"a": adapter_id, "n": args.medical_versions // 2},
            )
            digest = conn.execute(
                sa.text("SELECT digest FROM versions WHERE adapter_id = :a AND number = :n"),
                {"a": adapter_id, "n": args.medical_versions // 2},
            ).scalar_one()
            conn.execute(sa.text("ANALYZE"))
        number = args.medical_versions // 2
        paths = {
            "floor": args.floor_path,
            "resolve by alias": "/v1/resolve/default/medical@prod",
            "resolve by number": f"/v1/resolve/default/medical-v{number}",
            "resolve by digest": f"/v1/resolve/default/medical@{digest}",
            "resolve, many refs": "/v1/resolve/default/medical-v1",
        }
        # every version of medical in turn: concurrent requests ask for different refs
        many = round_robin_script(
            [f"/v1/resolve/default/medical-v{n}" for n in range(1, args.medical_versions + 1)],
            work / "many-refs.lua",
        )
        scripts = {"resolve, many refs": many}
        print(
            f"{'versions':>8} {'wk':>2} {'endpoint':<18} {'token':<5} {'conn':>4} "
            f"{'p50 ms':>7} {'p99 ms':>7} {'req/s':>8} {'x floor':>7} {'errors':>6}"
        )
        for scale in scales:
            grow_catalog(engine, template_id, scale, 100)
            if side:
                side.grow(scale, 100)
            for n_workers in workers:
                server = start_server(
                    env, data_dir, n_workers, work / f"serve-{scale}-{n_workers}.log"
                )
                try:
                    if args.warmup > 0:  # fill each worker's caches and pools
                        for label, path in paths.items():
                            for with_token in (False, True):
                                warm = run_wrk(
                                    server.url + path,
                                    16,
                                    args.warmup,
                                    token if with_token else None,
                                    script=scripts.get(label),
                                )
                                if label in scripts and not with_token:
                                    # the first pass over every ref: each worker builds
                                    # each answer once (no floor beside it)
                                    emit(scale, n_workers, COLD, False, 16, warm, None)
                    for conns in connections:
                        floor: Load | None = None
                        for label, path in paths.items():
                            for with_token in (False, True) if label != "floor" else (False,):
                                load = run_wrk(
                                    server.url + path,
                                    conns,
                                    args.duration,
                                    token if with_token else None,
                                    script=scripts.get(label),
                                )
                                floor = floor or load
                                emit(scale, n_workers, label, with_token, conns, load, floor)
                    if args.py_spy and n_workers <= 1 and scale == scales[0]:
                        spy(server, paths["resolve by alias"], args.py_spy, work / "spy.txt")
                finally:
                    server.stop()
                if side:
                    side.measure(scale, n_workers, connections, args.duration, run_wrk, emit)
        if side:
            print("\n".join(mlflow_side.alias_ratios(rows)))
    print(f"# load average at the end: {load_average()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
