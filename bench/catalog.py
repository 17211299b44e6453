"""Catalog-at-scale benchmark: lists, search, lineage and resolve at a million versions.

The catalog issue's extension of ``bench/api.py`` (same server start, same wrk rows):
a production-mode ``loreg serve`` (Postgres, moto S3, a broker URL) over a catalog of
``--adapters`` x ``--per-adapter`` versions (default 10,000 x 100 = 1,000,000), with a
spread of base models (4), ranks (5), tag sets (7) and creation times; one version is
published through the API and every other row is a copy of its rows made in SQL
(versions, files, lineage edges, and whatever per-version rows the server keeps, e.g.
cards), with its own name, number, digest, rank, tags and base model, so the tables
hold what publish writes; the search documents are then written by the service's own
back-fill (the refresh every publish calls). An adapter ``chain`` holds a lineage chain of depth 50.

For each endpoint it prints p50 / p99 / requests per second at 1 and 16 connections
beside the server's floor (``GET /v1/livez``): the first and a deep page of each list,
search (text, filters, both), lineage of the depth-50 chain, resolve. A deep page is
reached by following ``next_cursor`` ``--deep`` pages. An endpoint slower than a
second per request (a server without pagination listing everything) is timed with a
few sequential requests instead of wrk.

Run: ``.venv/bin/python bench/catalog.py [--adapters 10000] [--per-adapter 100]
[--workers 1] [--duration 5]``. Needs wrk (``apt-get install -y wrk``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.api import (  # noqa: E402 - after the path insert
    Load,
    Server,
    load_average,
    production_env,
    publish_template,
    run_wrk,
    start_server,
)

BASES = [
    "meta-llama/Llama-3.2-1B",
    "meta-llama/Llama-3.2-3B",
    "Qwen/Qwen2.5-0.5B",
    "mistralai/Mistral-7B-v0.3",
]
RANKS = [4, 8, 16, 32, 64]
TAG_SETS = [
    ["medical"],
    ["medical", "en"],
    ["legal", "en"],
    ["legal", "de"],
    ["code", "python"],
    ["support", "chat"],
    ["finance"],
]
WORDS = ["radiology", "contracts", "triage", "invoices", "sql", "tickets", "summaries"]
CHAIN_DEPTH = 50
_SHA_OF = "encode(sha256(convert_to"


def _columns(conn, table: str) -> list[str]:
    import sqlalchemy as sa

    return [c["name"] for c in sa.inspect(conn).get_columns(table) if c["name"] != "id"]


def _insert_select(conn, table: str, overrides: dict[str, str], source: str, where: str) -> int:
    """INSERT INTO table (every column but id) SELECT overrides-or-t.column FROM source."""
    import sqlalchemy as sa

    cols = _columns(conn, table)
    select = ", ".join(overrides.get(c, f"t.{c}") for c in cols)
    result = conn.execute(
        sa.text(
            f"INSERT INTO {table} ({', '.join(cols)}) SELECT {select} FROM {source} WHERE {where}"
        )
    )
    return result.rowcount


def _pg_array(values: list[str]) -> str:
    return "ARRAY[" + ", ".join(f"'{v}'" for v in values) + "]"


def _version_tables(conn) -> list[tuple[str, str]]:
    """(table, column) of every table holding per-version rows keyed by a version id
    column, besides versions itself (files, lineage edges, cards, ...)."""
    import sqlalchemy as sa

    out = []
    for table in sa.inspect(conn).get_table_names():
        if table in ("versions", "aliases", "search_documents"):
            continue
        for fk in sa.inspect(conn).get_foreign_keys(table):
            if fk["referred_table"] == "versions" and fk["constrained_columns"] in (
                ["version_id"],
                ["child_version_id"],
            ):
                out.append((table, fk["constrained_columns"][0]))
    return out


def seed(engine, adapters: int, per_adapter: int) -> dict[str, float]:
    """Grow the catalog from the one published version; returns seconds per step."""
    import sqlalchemy as sa

    took: dict[str, float] = {}
    with engine.begin() as conn:
        template_id, template_adapter = conn.execute(
            sa.text("SELECT id, adapter_id FROM versions")
        ).one()
        t0 = time.monotonic()
        bases, tags = _pg_array(BASES), _pg_array([",".join(t) for t in TAG_SETS])
        words = _pg_array(WORDS)
        _insert_select(
            conn,
            "adapters",
            {
                "name": "'a' || lpad(g::text, 5, '0')",
                "description": f"'adapter ' || g || ' for ' || ({words})[1 + g % {len(WORDS)}]",
                "base_model": f"({bases})[1 + g % {len(BASES)}]",
                "created_at": "now() - make_interval(mins => g)",
                "updated_at": "now() - make_interval(mins => g)",
            },
            f"adapters t, generate_series(1, {adapters}) g",
            f"t.id = {template_adapter}",
        )
        took["adapters"] = time.monotonic() - t0
        t0 = time.monotonic()
        rank = f"({_pg_array([str(r) for r in RANKS])})[1 + a.id % {len(RANKS)}]::int"

        def with_rank(column: str) -> str:  # r and lora_alpha of a config or summary
            return (
                f"jsonb_set(jsonb_set(coalesce(t.{column}::jsonb, '{{}}'::jsonb), '{{r}}', "
                f"to_jsonb({rank})), '{{lora_alpha}}', to_jsonb(2 * {rank}))::json"
            )

        tag_list = f"to_jsonb(string_to_array(({tags})[1 + a.id % {len(TAG_SETS)}], ','))"
        meta = f"jsonb_set(coalesce(t.meta::jsonb, '{{}}'::jsonb), '{{tags}}', {tag_list})::json"
        _insert_select(
            conn,
            "versions",
            {
                "adapter_id": "a.id",
                "number": "g",
                "digest": f"'sha256:' || {_SHA_OF}(a.id || '-' || g, 'UTF8')), 'hex')",
                "config": with_rank("config"),
                "summary": with_rank("summary"),  # what search reads the rank from
                "meta": meta,
                "base_model": "a.base_model",
                "base_model_id": "NULL",
                "job_id": "NULL",
                "created_at": "a.created_at + make_interval(secs => g)",
            },
            f"versions t, adapters a, generate_series(1, {per_adapter}) g",
            f"t.id = {template_id} AND a.id <> {template_adapter}",
        )
        took["versions"] = time.monotonic() - t0
        t0 = time.monotonic()
        new = f"(SELECT id FROM versions WHERE id <> {template_id}) v"
        for table, key in _version_tables(conn):
            _insert_select(
                conn, table, {key: "v.id"}, f"{table} t, {new}", f"t.{key} = {template_id}"
            )
        took["per-version rows"] = time.monotonic() - t0
        t0 = time.monotonic()
        conn.execute(
            sa.text(
                "INSERT INTO aliases (adapter_id, name, version_id, updated_by, updated_at) "
                "SELECT v.adapter_id, 'prod', v.id, 'bench', now() FROM versions v "
                "WHERE v.number = :n AND v.id <> :t"
            ),
            {"n": max(1, per_adapter // 2), "t": template_id},
        )
        took["aliases"] = time.monotonic() - t0
        t0 = time.monotonic()
        _seed_chain(conn, template_id, template_adapter)
        took["chain"] = time.monotonic() - t0
    t0 = time.monotonic()
    try:  # the search documents, written by the same refresh a publish calls
        from registry.services import search_index
    except ImportError:  # a server from before search
        pass
    else:
        search_index.backfill(engine, batch=1000)
        took["search index"] = time.monotonic() - t0
    t0 = time.monotonic()
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text("VACUUM ANALYZE"))
    took["vacuum analyze"] = time.monotonic() - t0
    return took


def _seed_chain(conn, template_id: int, template_adapter: int) -> None:
    """Adapter ``chain``: v1..v50, each ``continued_from`` the one before."""
    import sqlalchemy as sa

    _insert_select(
        conn, "adapters", {"name": "'chain'"}, "adapters t", f"t.id = {template_adapter}"
    )
    chain = conn.execute(sa.text("SELECT id FROM adapters WHERE name = 'chain'")).scalar_one()
    _insert_select(
        conn,
        "versions",
        {
            "adapter_id": str(chain),
            "number": "g",
            "digest": "'sha256:' || encode(sha256(convert_to('chain-' || g, 'UTF8')), 'hex')",
            "job_id": "NULL",
        },
        f"versions t, generate_series(1, {CHAIN_DEPTH}) g",
        f"t.id = {template_id}",
    )
    conn.execute(
        sa.text(
            "INSERT INTO lineage_edges (child_version_id, relation, parent_version_id, params, "
            "created_at) SELECT c.id, 'continued_from', p.id, '{}'::json, now() "
            "FROM versions c JOIN versions p ON p.adapter_id = c.adapter_id "
            "AND p.number = c.number - 1 WHERE c.adapter_id = :a"
        ),
        {"a": chain},
    )


def deep_cursor_url(url: str, path: str, token: str, pages: int) -> str | None:
    """``path`` with the cursor reached after following ``pages`` pages (None: the
    server answers no cursor there)."""
    import httpx

    sep = "&" if "?" in path else "?"
    cursor = None
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=120) as c:
        for _ in range(pages):
            r = c.get(path + (f"{sep}cursor={cursor}" if cursor else ""))
            body = r.json()
            if r.status_code != 200 or not isinstance(body, dict) or not body.get("next_cursor"):
                return None
            cursor = body["next_cursor"]
    return f"{path}{sep}cursor={cursor}"


def timed(
    url: str,
    token: str | None,
    conns: int,
    duration: float,
    headers: Mapping[str, str] | None = None,
) -> Load:
    """wrk, or for an endpoint slower than a second, three sequential requests; with a
    bearer ``token`` (None: anonymous) and any other ``headers``."""
    import httpx

    sent = {**({"Authorization": f"Bearer {token}"} if token else {}), **(headers or {})}
    start = time.perf_counter()
    r = httpx.get(url, headers=sent, timeout=600)
    first = time.perf_counter() - start
    if first < 1.0:
        return run_wrk(url, conns, duration, token, headers)
    samples = [first]
    for _ in range(2):
        start = time.perf_counter()
        httpx.get(url, headers=sent, timeout=600)
        samples.append(time.perf_counter() - start)
    ms = statistics.median(samples) * 1000
    return Load(ms, max(samples) * 1000, 1000 / ms, 0 if r.status_code == 200 else 3)


def endpoints(args: argparse.Namespace) -> dict[str, str]:
    """label -> path of everything measured (deep pages are added once reachable)."""
    return {
        "floor": "/v1/livez",
        "adapters page 1": f"/v1/adapters?limit={args.limit}",
        "versions page 1": f"/v1/adapters/default/a00042/versions?limit={args.limit}",
        "jobs page 1": f"/v1/jobs?limit={args.limit}",
        "namespaces page 1": f"/v1/namespaces?limit={args.limit}",
        "base models page 1": f"/v1/base-models?limit={args.limit}",
        "search text": f"/v1/search?q=radiology&limit={args.limit}",
        "search filters": f"/v1/search?base_model=Qwen/Qwen2.5-0.5B&tags=medical&rank_min=16"
        f"&limit={args.limit}",
        "search text+filters": f"/v1/search?q=triage&tags=legal&rank_max=8&limit={args.limit}",
        "lineage depth 50": f"/v1/lineage/versions/default/chain-v{CHAIN_DEPTH}"
        f"?depth={CHAIN_DEPTH}",
        "resolve by alias": "/v1/resolve/default/a00042@prod",
        "resolve by number": f"/v1/resolve/default/a{args.adapters:05d}-v7",
    }


def add_catalog_options(parser: argparse.ArgumentParser) -> None:
    """The catalog's size, the server's workers and the wrk runs (shared with bench/web.py)."""
    parser.add_argument("--adapters", type=int, default=10_000)
    parser.add_argument("--per-adapter", type=int, default=100)
    parser.add_argument("--workers", type=int, default=1, help="loreg serve --workers (0: omit)")
    parser.add_argument("--connections", default="1,16")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per wrk run")


def print_header(script: str) -> None:
    """The date, machine, load and command lines every table starts with."""
    print(
        f"# {script}  {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC  {platform.node()}  "
        f"{platform.machine()}  {os.cpu_count()} cores  python {platform.python_version()}  "
        f"load {load_average()}"
    )
    print(f"# command: {' '.join(sys.argv)}")


@dataclass
class Seeded:
    """A production-mode server over the seeded catalog."""

    server: Server
    token: str
    engine: Any
    versions: int


def seeded_server(
    stack: ExitStack,
    args: argparse.Namespace,
    prefix: str = "loreg-catalog-",
    prepare: Callable[[dict[str, str], Path], None] | None = None,
) -> Seeded:
    """Publish the template, seed ``args.adapters`` x ``args.per_adapter`` versions from
    it and start the server to measure (stopped with ``stack``); prints the seed line.

    ``prepare(env, data_dir)`` runs after the template is published and its server
    stopped, before the copies are made (bench/web.py computes the template's card).
    """
    import sqlalchemy as sa

    work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix=prefix)))
    env, db_url = stack.enter_context(production_env(work))
    engine = sa.create_engine(db_url)
    stack.callback(engine.dispose)
    data_dir = work / "data"
    server = start_server(env, data_dir, args.workers, work / "seed.log")
    try:
        publish_template(server.url, server.token)
    finally:
        server.stop()
    if prepare is not None:
        prepare(env, data_dir)
    token = (data_dir / "admin_token").read_text().strip()
    took = seed(engine, args.adapters, args.per_adapter)
    with engine.connect() as conn:
        count = conn.execute(sa.text("SELECT count(*) FROM versions")).scalar_one()
    steps = ", ".join(f"{k} {v:.0f} s" for k, v in took.items())
    print(f"# catalog: {count} versions over {args.adapters + 2} adapters ({steps})", flush=True)
    assert count >= args.adapters * args.per_adapter, count
    server = start_server(env, data_dir, args.workers, work / "serve.log")
    stack.callback(server.stop)
    return Seeded(server, token, engine, count)


def main() -> int:
    """Seed, serve, load; one line per (endpoint, connections)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_catalog_options(parser)
    parser.add_argument("--limit", type=int, default=50, help="page size")
    parser.add_argument("--deep", type=int, default=100, help="pages followed for a deep page")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk not found: apt-get install -y wrk", file=sys.stderr)
        return 2
    connections = [int(x) for x in args.connections.split(",")]
    print_header("bench/catalog.py")
    with ExitStack() as stack:
        seeded = seeded_server(stack, args)
        server, token = seeded.server, seeded.token
        paths = endpoints(args)
        for label in ("adapters", "versions", "jobs", "namespaces", "base models"):
            first = paths[f"{label} page 1"]
            deep = deep_cursor_url(server.url, first, token, args.deep)
            if deep:
                paths[f"{label} page {args.deep + 1}"] = deep
            else:
                print(f"# {label}: no page {args.deep + 1} (fewer rows, or no cursor)")
        print(
            f"{'endpoint':<24} {'conn':>4} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>8} "
            f"{'x floor':>7} {'errors':>6}"
        )
        for conns in connections:
            floor: Load | None = None
            for label, path in paths.items():
                load = timed(server.url + path, token, conns, args.duration)
                floor = floor or load
                ratio = floor.rps / load.rps if load.rps else float("inf")
                print(
                    f"{label:<24} {conns:>4} {load.p50:>8.2f} {load.p99:>8.2f} "
                    f"{load.rps:>8.0f} {ratio:>7.2f} {load.errors:>6}",
                    flush=True,
                )
    print(f"# load average at the end: {load_average()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
