"""Web pages at a million versions: server render time of loreg's HTML pages.

The web issue's extension of ``bench/catalog.py`` (same seeded catalog, same server,
same wrk rows): a production-mode ``loreg serve`` (Postgres, moto S3, a broker URL)
over ``--adapters`` x ``--per-adapter`` versions (default 10,000 x 100 = 1,000,000,
plus ``chain``, a lineage chain of depth 50). Before the copies are made, the
template version's card job is run in this process, so every copied version carries
a ready card (figures, singular values, README) and the adapter page draws a real
card and spectrum; the output says whether it did.

Each page is first requested once, anonymous and signed in (the admin token in the
``loreg_token`` cookie, as the sign-in form leaves it): its status and size are
printed, and a page answering anything but 200 stops the bench before any timing.
Then each page is driven with wrk at ``--connections`` beside the floor
(``GET /v1/livez``): the home page, two searches, an adapter of 100 versions and one
of its version pages, the lineage page of the depth-50 chain, and ``/jobs``.
Target (web issue): p50 <= 50 ms per page, judged at one connection (render time).

Run: ``.venv/bin/python bench/web.py [--adapters 10000] [--per-adapter 100]
[--connections 1,16] [--duration 5] [--workers 1]``. Quick check:
``--adapters 200 --per-adapter 100``. Needs wrk (``apt-get install -y wrk``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.api import load_average  # noqa: E402 - after the path insert
from bench.catalog import (  # noqa: E402
    CHAIN_DEPTH,
    add_catalog_options,
    print_header,
    seeded_server,
    timed,
)

#: p50 target of every page (ms).
TARGET_MS = 50.0
#: The adapter whose page is measured (100 versions at the default --per-adapter).
ADAPTER = "a00042"
#: (text in the HTML, what the check line says about the page).
PAGE_MARKERS = [
    ('class="kv figures"', "card ready"),
    ("The card is being computed", "card pending"),
    ("The card could not be computed", "card failed"),
    ('class="spectrum"', "spectrum"),
    ('class="readme"', "readme"),
    ("<svg", "svg"),
    ("Sign out", "signed in"),
]


def pages(per_adapter: int) -> dict[str, str]:
    """label -> path of every page measured."""
    number = max(1, per_adapter // 2)
    return {
        "home": "/",
        "search text+tag": "/?q=medical&tags=en",
        "search base+rank": "/?base_model=meta-llama/Llama-3.2-1B&rank_min=8",
        f"adapter ({per_adapter} versions)": f"/adapters/default/{ADAPTER}",
        f"version {number}": f"/adapters/default/{ADAPTER}/versions/{number}",
        f"lineage depth {CHAIN_DEPTH}": f"/adapters/default/chain/versions/{CHAIN_DEPTH}/lineage",
        "jobs": "/jobs",
    }


def ready_template_card(env: dict[str, str], data_dir: Path) -> None:
    """Run the published template's card job here (the bench runs no worker), so the
    seeded copies of its ``version_cards`` row are ``ready``; prints the outcome."""
    from sqlmodel import Session, select

    from registry.models import VersionCard
    from registry.services.context import Context
    from registry.settings import Settings
    from workers.runner import run_job

    saved = dict(os.environ)
    os.environ.update(env)
    try:
        ctx = Context.from_settings(Settings.from_env(data_dir))
    finally:
        os.environ.clear()
        os.environ.update(saved)
    try:
        with Session(ctx.engine) as session:
            row = session.exec(select(VersionCard)).one_or_none()
        if row is None or row.job_id is None:
            print("# card: the template has no card row (a server without cards)", flush=True)
            return
        outcome = run_job(ctx, row.job_id)
        with Session(ctx.engine) as session:
            status = session.get(VersionCard, row.version_id)
        print(f"# card: template card job {outcome}, card {status.status if status else None}")
    finally:
        ctx.close()


def card_state(engine, name: str) -> str:
    """'ready' / 'pending' / ... counts of the cards of ``default/name``'s versions."""
    import sqlalchemy as sa

    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT coalesce(c.status, 'none'), count(*) FROM versions v "
                "JOIN adapters a ON a.id = v.adapter_id "
                "LEFT JOIN version_cards c ON c.version_id = v.id "
                "WHERE a.name = :n GROUP BY 1 ORDER BY 1"
            ),
            {"n": name},
        ).all()
    return ", ".join(f"{count} {status}" for status, count in rows)


def check_pages(url: str, paths: dict[str, str], visitors: dict[str, dict[str, str]]) -> bool:
    """Request each page once per visitor; print status, size and what it shows.
    False if any answered other than 200 (the bench stops, nothing is timed)."""
    import httpx

    ok = True
    print(f"{'page':<24} {'visitor':<9} {'status':>6} {'bytes':>8}  notes")
    for label, path in paths.items():
        for visitor, headers in visitors.items():
            r = httpx.get(url + path, headers={"Accept": "text/html", **headers}, timeout=600)
            notes = [note for marker, note in PAGE_MARKERS if marker in r.text]
            print(
                f"{label:<24} {visitor:<9} {r.status_code:>6} {len(r.content):>8}  "
                f"{' '.join(notes)}",
                flush=True,
            )
            if r.status_code != 200:
                print(f"FAIL: {path} as {visitor} answered {r.status_code}: {r.text[:500]}")
                ok = False
    return ok


def main() -> int:
    """Seed, serve, check every page, load; one line per (page, visitor, connections)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_catalog_options(parser)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk not found: apt-get install -y wrk", file=sys.stderr)
        return 2
    connections = [int(x) for x in args.connections.split(",")]
    print_header("bench/web.py")
    with ExitStack() as stack:
        seeded = seeded_server(stack, args, "loreg-web-", ready_template_card)
        url = seeded.server.url
        print(f"# cards of default/{ADAPTER}: {card_state(seeded.engine, ADAPTER)}")
        print(f"# cards of default/chain: {card_state(seeded.engine, 'chain')}")
        visitors = {"anonymous": {}, "signed in": {"Cookie": f"loreg_token={seeded.token}"}}
        paths = pages(args.per_adapter)
        if not check_pages(url, paths, visitors):
            print("# a page did not answer 200: nothing timed", file=sys.stderr)
            return 1
        print(
            f"# target: p50 <= {TARGET_MS:.0f} ms per page, judged at 1 connection (the render "
            "time; at N connections one worker queues N requests); floor: GET /v1/livez"
        )
        print(f"# load average before timing: {load_average()}")
        print(
            f"{'page':<24} {'visitor':<9} {'conn':>4} {'p50 ms':>8} {'p99 ms':>8} "
            f"{'req/s':>8} {'x floor':>7} {'errors':>6} {'target':>6}"
        )
        failed = False
        for conns in connections:
            floor = timed(url + "/v1/livez", None, conns, args.duration)
            print(
                f"{'floor /v1/livez':<24} {'-':<9} {conns:>4} {floor.p50:>8.2f} "
                f"{floor.p99:>8.2f} {floor.rps:>8.0f} {1:>7.2f} {floor.errors:>6}",
                flush=True,
            )
            for label, path in paths.items():
                for visitor, headers in visitors.items():
                    load = timed(url + path, None, conns, args.duration, headers)
                    ratio = floor.rps / load.rps if load.rps else float("inf")
                    met = "-" if conns != 1 else "ok" if load.p50 <= TARGET_MS else "SLOW"
                    print(
                        f"{label:<24} {visitor:<9} {conns:>4} {load.p50:>8.2f} "
                        f"{load.p99:>8.2f} {load.rps:>8.0f} {ratio:>7.2f} {load.errors:>6} "
                        f"{met:>6}",
                        flush=True,
                    )
                    if load.errors:
                        print(f"FAIL: {path} as {visitor}: {load.errors} errors under load")
                        failed = True
    print(f"# load average at the end: {load_average()}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
