"""Resolve profile: the SQL one authenticated ``GET /v1/resolve/{ref}`` sends, and its latency.

The "measure first" step of the hot-path work: starts the registry in-process on a
throw-away Postgres database (local blob folder, or moto S3 with ``--s3`` so the
answer carries presigned URLs), publishes ``--versions`` versions of one adapter
(same weights, a README of their own) and moves the alias ``prod`` to the first, then:

* records every SQL statement of one resolve (SQLAlchemy cursor events: count,
  time, text) with a bearer token, the way the SDK calls it;
* times ``--requests`` sequential resolves on one keep-alive connection (p50/p95);
* profiles ``--profile`` resolves: cProfile around the endpoint and its sync
  dependencies, in the worker thread that runs them (top functions by cumulative
  time), to see where the server's CPU goes.

Run: ``.venv/bin/python bench/resolve_profile.py [--versions 1000] [--s3]``.
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import io
import os
import platform
import pstats
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")


def main() -> int:
    """Publish, then print the statements, the latency and the profile of a resolve."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--versions", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--profile", type=int, default=200)
    parser.add_argument("--s3", action="store_true", help="blobs on moto S3 (presigned URLs)")
    parser.add_argument(
        "--driver",
        choices=("psycopg", "psycopg2"),
        default="psycopg",
        help="Postgres driver (psycopg 3, the default of a deployment, runs the resolve "
        "lookup on the event loop)",
    )
    args = parser.parse_args()

    import httpx
    import sqlalchemy as sa

    from registry.app import create_app
    from registry.serve import prepare
    from registry.settings import Settings
    from tests.support.publish import publish
    from tests.support.s3server import MotoServer
    from tests.support.servers import ServerThread, temp_pg_database

    with ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="loreg-resolve-")))
        db_url = stack.enter_context(temp_pg_database())
        if args.driver == "psycopg":
            db_url = db_url.replace("+psycopg2://", "+psycopg://")
        fields: dict = {"data_dir": work, "database_url": db_url}
        if args.s3:
            moto = stack.enter_context(MotoServer())
            fields.update(
                s3_bucket="bench", s3_endpoint_url=moto.endpoint_url, s3_region="us-east-1"
            )
        ctx, token = prepare(Settings(**fields))
        stack.callback(ctx.engine.dispose)
        app = create_app(context=ctx)
        server = stack.enter_context(ServerThread(app))
        auth = {"Authorization": f"Bearer {token}"}
        api = stack.enter_context(httpx.Client(base_url=server.url, headers=auth, timeout=60))
        files = _adapter_files()
        t0 = time.perf_counter()
        for n in range(args.versions):
            r, _ = publish(api, "medical", {**files, "README.md": f"# v{n + 1}\n".encode()})
            assert r.status_code == 201, r.text
        t_publish = time.perf_counter() - t0
        api.put("/v1/adapters/default/medical/aliases/prod", json={"version": 1})
        url = "/v1/resolve/medical@prod"

        statements: list[tuple[float, str]] = []
        started: dict[int, float] = {}

        def before(conn, cursor, statement, parameters, context, executemany):
            started[id(cursor)] = time.perf_counter()

        def after(conn, cursor, statement, parameters, context, executemany):
            took = time.perf_counter() - started.pop(id(cursor), time.perf_counter())
            statements.append((took, " ".join(statement.split())))

        api.get(url).raise_for_status()  # warm
        engines = [e for e in (ctx.engine, getattr(ctx, "hot_engine", None)) if e is not None]
        for engine in engines:
            sa.event.listen(engine, "before_cursor_execute", before)
            sa.event.listen(engine, "after_cursor_execute", after)
        lookup = getattr(ctx, "async_lookup", None)
        if lookup is not None:  # the event-loop lookup: time its awaited statements
            original = lookup.rows

            async def rows(statement, params):
                t = time.perf_counter()
                result = await original(statement, params)
                text = " ".join(str(statement).split())
                statements.append((time.perf_counter() - t, f"[event loop] {text}"))
                return result

            lookup.rows = rows
        api.get(url).raise_for_status()
        if lookup is not None:
            del lookup.rows
        for engine in engines:
            sa.event.remove(engine, "before_cursor_execute", before)
            sa.event.remove(engine, "after_cursor_execute", after)

        latencies = []
        for _ in range(args.requests):
            t = time.perf_counter()
            api.get(url).raise_for_status()
            latencies.append(time.perf_counter() - t)

        profiler = cProfile.Profile()
        with _profiling_threadpool_calls(profiler):
            t = time.process_time()
            for _ in range(args.profile):
                api.get(url).raise_for_status()
            cpu = (time.process_time() - t) / args.profile

    print(
        f"# bench/resolve_profile.py  {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC  "
        f"{platform.node()}  {platform.machine()}  python {platform.python_version()}"
    )
    print(
        f"# Postgres ({args.driver}), {args.versions} versions of one adapter "
        f"(published in {t_publish:.1f} s), "
        f"blobs on {'moto S3' if args.s3 else 'the local store'}; GET {url} with a token"
    )
    print(
        f"SQL statements in one resolve: {len(statements)}, "
        f"{sum(t for t, _ in statements) * 1000:.2f} ms in the database driver"
    )
    for took, text in statements:
        print(f"  {took * 1000:7.3f} ms  {text[:150]}")
    lat = sorted(latencies)
    p50, p95 = statistics.median(lat) * 1000, lat[int(0.95 * (len(lat) - 1))] * 1000
    print(
        f"latency over {args.requests} sequential requests (one connection): "
        f"p50 {p50:.2f} ms, p95 {p95:.2f} ms"
    )
    print(f"process CPU per resolve (client + server, profiler on): {cpu * 1000:.2f} ms")
    if not profiler.getstats():
        print(
            "profile: no threadpool calls (the endpoint and its lookup ran on the event "
            "loop); profile the whole server with `bench/api.py --py-spy` instead"
        )
        return 0
    stats = pstats.Stats(profiler)
    per_call = stats.total_tt / args.profile * 1000  # type: ignore[attr-defined]
    print(
        f"profile of the endpoint and its sync dependencies (their threadpool calls): "
        f"{per_call:.2f} ms per resolve; top 25 by cumulative time:"
    )
    out = io.StringIO()
    stats.stream = out  # type: ignore[attr-defined]
    stats.sort_stats("cumulative").print_stats(25)
    print("\n".join(line for line in out.getvalue().splitlines() if line.strip())[:6000])
    return 0


@contextmanager
def _profiling_threadpool_calls(profiler: cProfile.Profile) -> Iterator[None]:
    """Run FastAPI's threadpool calls (sync endpoints, sync dependencies) under ``profiler``.

    cProfile sees one thread; a sync endpoint runs in a worker thread, so the call
    itself is wrapped there. Requests must be sequential while this is active.
    """
    import fastapi.dependencies.utils as dep_utils
    import fastapi.routing as routing

    original = routing.run_in_threadpool

    async def profiled(func, *args, **kwargs):
        return await original(profiler.runcall, func, *args, **kwargs)

    routing.run_in_threadpool = profiled
    dep_utils.run_in_threadpool = profiled
    try:
        yield
    finally:
        routing.run_in_threadpool = original
        dep_utils.run_in_threadpool = original


def _adapter_files() -> dict[str, bytes]:
    """A tiny valid LoRA adapter (r=2 on one q_proj) as in-memory files."""
    import json
    import struct

    prefix = "base_model.model.model.layers.0.self_attn.q_proj"
    header, offset = {}, 0
    for name, shape in ((f"{prefix}.lora_A.weight", [2, 8]), (f"{prefix}.lora_B.weight", [8, 2])):
        size = 4 * shape[0] * shape[1]
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header).encode()
    weights = struct.pack("<Q", len(raw)) + raw + b"\0" * offset
    config = {"peft_type": "LORA", "r": 2, "lora_alpha": 4, "target_modules": ["q_proj"]}
    return {
        "adapter_config.json": json.dumps(config).encode(),
        "adapter_model.safetensors": weights,
    }


if __name__ == "__main__":
    sys.exit(main())
