"""Where a resolve's time goes: the web stack, a worker-thread hop, the lookup statement.

Serves the real app in-process (uvicorn on loopback, Postgres on psycopg 3) with a
few extra routes that each add one piece of the resolve path, and drives each with
wrk at 1 and 16 connections:

* ``raw``: fixed bytes from a bare ASGI callable in front of the app (uvicorn alone);
* ``plain``: an async FastAPI route answering fixed bytes (the framework's floor);
* ``hop``: the same after an empty ``run_in_threadpool`` call (the thread hop);
* ``lookup-thread``: the resolve lookup on the sync hot engine, in a worker thread;
* ``lookup-loop``: the same lookup awaited on the event loop (``AsyncLookup``);
* ``/v1/resolve/...``: the real endpoint (answered before FastAPI's routing,
  registry.api.fast_resolve).

Run: ``.venv/bin/python bench/stack_floor.py [--duration 4]`` (needs wrk).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import re
import subprocess
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _wrk(url: str, connections: int, duration: int) -> tuple[str, float]:
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency", url]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    p50 = re.search(r"^\s*50%\s+(\S+)", out, re.MULTILINE)
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", out, re.MULTILINE)
    if p50 is None or rps is None:
        raise ValueError(f"unexpected wrk output:\n{out}")
    return p50.group(1), float(rps.group(1))


def main() -> int:
    """Build the app with the probe routes, then print p50 and req/s of each."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=4)
    args = parser.parse_args()

    import httpx
    from fastapi import Response
    from starlette.concurrency import run_in_threadpool

    from bench.resolve_profile import _adapter_files
    from loreg.refs import parse_ref
    from registry.app import create_app
    from registry.serve import prepare
    from registry.services import resolve
    from registry.settings import Settings
    from tests.support.publish import publish
    from tests.support.servers import ServerThread, temp_pg_database

    print(
        f"# bench/stack_floor.py  {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC  "
        f"{platform.machine()}  {os.cpu_count()} cores  python {platform.python_version()}  "
        f"load {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    with ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="loreg-floor-")))
        db_url = stack.enter_context(temp_pg_database()).replace("+psycopg2://", "+psycopg://")
        ctx, token = prepare(Settings(data_dir=work, database_url=db_url))
        stack.callback(ctx.close)
        app = create_app(context=ctx)
        body = b'{"probe":true}'
        ref = parse_ref("default/medical@prod")
        statement, params = resolve._statement_and_params(ref)

        @app.get("/probe/plain/{ref:path}")
        async def plain(ref: str) -> Response:
            return Response(body, media_type="application/json")

        @app.get("/probe/hop/{ref:path}")
        async def hop(ref: str) -> Response:
            await run_in_threadpool(lambda: None)
            return Response(body, media_type="application/json")

        @app.get("/probe/lookup-thread/{ref:path}")
        async def lookup_thread(ref: str) -> Response:
            await run_in_threadpool(resolve.lookup, ctx, parse_ref(ref))
            return Response(body, media_type="application/json")

        @app.get("/probe/lookup-loop/{ref:path}")
        async def lookup_loop(ref: str) -> Response:
            assert ctx.async_lookup is not None
            await ctx.async_lookup.rows(statement, params)
            return Response(body, media_type="application/json")

        async def in_front(scope, receive, send) -> None:
            if scope["type"] == "http" and scope["path"].startswith("/probe/raw/"):
                headers = [(b"content-type", b"application/json"), (b"content-length", b"14")]
                await send({"type": "http.response.start", "status": 200, "headers": headers})
                await send({"type": "http.response.body", "body": body})
                return
            await app(scope, receive, send)

        server = stack.enter_context(ServerThread(in_front))
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=server.url, headers=headers, timeout=60) as api:
            publish(api, "medical", _adapter_files())
            api.put("/v1/adapters/default/medical/aliases/prod", json={"version": 1})
        print(f"{'route':<44} {'conn':>4} {'p50':>9} {'req/s':>8}")
        for path in (
            "/v1/livez",
            "/probe/raw/default/medical@prod",
            "/probe/plain/default/medical@prod",
            "/probe/hop/default/medical@prod",
            "/probe/lookup-thread/default/medical@prod",
            "/probe/lookup-loop/default/medical@prod",
            "/v1/resolve/default/medical@prod",
        ):
            for connections in (1, 16):
                p50, rps = _wrk(server.url + path, connections, args.duration)
                print(f"{path:<44} {connections:>4} {p50:>9} {rps:>8.0f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
