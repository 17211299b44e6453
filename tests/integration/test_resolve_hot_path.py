"""The resolve hot path keeps every guarantee of the general path.

On both backends: a warm resolve is one SQL statement; an alias moved (or a version
published) through one API process is seen by the very next request to another
process whose caches are warm; a revoked token stops working within
``LOREG_TOKEN_CACHE_S``; private namespaces stay 404 to others whatever the caches
hold; the answer's bytes are FastAPI's rendering of ``ResolvedVersion`` and its content
is the general path's. On Postgres, the lookup uses an index for every table it reads.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import httpx
import pytest
import sqlalchemy as sa

from tests.support.publish import publish
from tests.support.servers import ServerThread


def _resolve(api: httpx.Client, ref: str, **kw) -> httpx.Response:
    return api.get(f"/v1/resolve/{ref}", **kw)


@contextmanager
def second_process(registry_server) -> Iterator[tuple[httpx.Client, object]]:
    """Another API "process" on the same database and store: its own Context (engines,
    hot caches), its own server. Yields an admin client on it and its context."""
    from registry.app import create_app
    from registry.services.context import Context

    with ExitStack() as stack:
        ctx = Context.from_settings(registry_server.settings)
        stack.callback(ctx.close)
        server = stack.enter_context(ServerThread(create_app(context=ctx)))
        headers = {"Authorization": f"Bearer {registry_server.admin_token}"}
        yield stack.enter_context(httpx.Client(base_url=server.url, headers=headers)), ctx


@contextmanager
def counting(engines) -> Iterator[list[str]]:
    """Every SQL statement sent on ``engines`` while the block runs."""
    seen: list[str] = []

    def record(conn, cursor, statement, *args):
        seen.append(" ".join(statement.split()))

    for engine in engines:
        sa.event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        for engine in engines:
            sa.event.remove(engine, "before_cursor_execute", record)


def _engines(ctx) -> list:
    return [ctx.engine] + ([ctx.hot_engine] if ctx.hot_engine is not None else [])


@contextmanager
def counting_async(ctx) -> Iterator[list[str]]:
    """Every statement the event-loop lookup sends while the block runs (none without it)."""
    seen: list[str] = []
    lookup = ctx.async_lookup
    if lookup is None:
        yield seen
        return
    original = lookup.rows

    async def rows(statement, params):
        seen.append(str(statement))
        return await original(statement, params)

    lookup.rows = rows
    try:
        yield seen
    finally:
        del lookup.rows


def test_a_warm_resolve_is_one_statement(registry_server, admin_api, anon_api, adapter_files):
    r, _ = publish(admin_api, "medical", adapter_files)
    assert r.status_code == 201, r.text
    admin_api.put("/v1/adapters/default/medical/aliases/prod", json={"version": 1})
    ctx = registry_server.ctx
    if registry_server.backend == "postgres_s3":
        assert ctx.async_lookup is not None  # psycopg 3: the lookup runs on the event loop
    for ref in (
        "medical@prod",
        "medical-v1",
        "medical",
        f"medical@{r.json()['resolved']['digest']}",
    ):
        for api in (admin_api, anon_api):
            assert _resolve(api, ref).status_code == 200  # warms the caches
            with counting(_engines(ctx)) as sync, counting_async(ctx) as on_loop:
                answer = _resolve(api, ref)
            assert answer.status_code == 200, answer.text
            assert len(sync) + len(on_loop) == 1, (ref, sync, on_loop)


def test_alias_moves_and_new_versions_are_seen_at_once_by_another_process(
    registry_server, admin_api, adapter_files, other_adapter_files
):
    first, _ = publish(admin_api, "medical", adapter_files)
    second, _ = publish(admin_api, "medical", other_adapter_files)
    assert (first.json()["resolved"]["version"], second.json()["resolved"]["version"]) == (1, 2)
    with second_process(registry_server) as (other, _):
        for target in (1, 2, 1, 2):
            moved = admin_api.put(
                "/v1/adapters/default/medical/aliases/prod", json={"version": target}
            )
            assert moved.status_code == 200, moved.text
            seen = _resolve(other, "medical@prod").json()
            assert seen["version"] == target
            assert seen["aliases"] == ["prod"]
            # the version the alias left lists it no longer (that answer was cached too)
            left = _resolve(other, f"medical-v{3 - target}").json()
            assert left["aliases"] == []
        assert _resolve(other, "medical").json()["version"] == 2
        third, _ = publish(admin_api, "medical", {**adapter_files, "README.md": b"# v3\n"})
        assert third.json()["resolved"]["version"] == 3
        assert _resolve(other, "medical").json()["version"] == 3  # the new latest
        removed = admin_api.delete("/v1/adapters/default/medical/aliases/prod")
        assert removed.status_code == 200
        gone = _resolve(other, "medical@prod")
        assert gone.status_code == 404 and "alias 'prod' not found" in gone.text, gone.text


@pytest.fixture
def registry_settings_overrides() -> dict:
    """Trust a checked token for one second (the bound the revocation test waits out)."""
    return {"token_cache_s": 1.0}


def _create_token(admin_api: httpx.Client, name: str, grants: list[dict]) -> str:
    r = admin_api.post("/v1/tokens", json={"name": name, "grants": grants})
    assert r.status_code == 201, r.text
    return r.json()["token"]


def _revoke_in_database(ctx, name: str) -> None:
    """Revoke a token the way any other process would: in the database."""
    with ctx.engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE api_tokens SET revoked_at = CURRENT_TIMESTAMP WHERE name = :n"),
            {"n": name},
        )


def test_a_revoked_token_stops_working_within_the_cache_bound(
    registry_server, admin_api, adapter_files
):
    publish(admin_api, "medical", adapter_files)
    token = _create_token(admin_api, "reader", [{"namespace": "default", "scope": "read"}])
    reader = {"Authorization": f"Bearer {token}"}
    assert _resolve(admin_api, "medical", headers=reader).status_code == 200
    assert admin_api.get("/v1/whoami", headers=reader).json()["token_name"] == "reader"
    _revoke_in_database(registry_server.ctx, "reader")
    revoked_at = time.monotonic()
    # within the bound the cached check may still pass; past it, every route refuses
    deadline = revoked_at + registry_server.settings.token_cache_s + 0.05
    time.sleep(max(0.0, deadline - time.monotonic()))
    for answer in (
        _resolve(admin_api, "medical", headers=reader),
        admin_api.get("/v1/whoami", headers=reader),
    ):
        assert answer.status_code == 401, answer.text
        assert "invalid or revoked token" in answer.text


def test_without_a_token_cache_revocation_is_immediate(registry_server, admin_api, adapter_files):
    publish(admin_api, "medical", adapter_files)
    token = _create_token(admin_api, "reader2", [{"namespace": "default", "scope": "read"}])
    reader = {"Authorization": f"Bearer {token}"}
    settings = registry_server.settings.with_overrides(token_cache_s=0)
    with second_process(registry_server) as (other, ctx):
        ctx.settings = settings
        assert _resolve(other, "medical", headers=reader).status_code == 200
        _revoke_in_database(ctx, "reader2")
        assert _resolve(other, "medical", headers=reader).status_code == 401


def test_private_namespaces_stay_hidden_whatever_the_caches_hold(
    registry_server, admin_api, anon_api, adapter_files, other_adapter_files
):
    assert (
        admin_api.post("/v1/namespaces", json={"name": "secret", "private": True}).status_code
        == 201
    )
    parent, _ = publish(admin_api, "base-lora", adapter_files, namespace="secret")
    assert parent.status_code == 201, parent.text
    child, _ = publish(
        admin_api,
        "shared",
        other_adapter_files,
        parents=[{"ref": "secret/base-lora-v1", "relation": "combined_from"}],
    )
    assert child.status_code == 201, child.text
    outsider = _create_token(admin_api, "outsider", [{"namespace": "default", "scope": "write"}])
    outsider_h = {"Authorization": f"Bearer {outsider}"}
    for _ in range(2):  # the second round runs with every cache warm
        owner_view = _resolve(admin_api, "secret/base-lora")
        assert owner_view.status_code == 200
        for headers in ({}, outsider_h):
            hidden = _resolve(anon_api, "secret/base-lora", headers=headers)
            assert hidden.status_code == 404, hidden.text
            assert hidden.json()["error"]["message"] == "namespace 'secret' not found"
        shown = _resolve(admin_api, "shared").json()["lineage"]
        assert shown[0]["parent"]["ref"] == "secret/base-lora-v1"
        for headers in ({}, outsider_h):
            masked = _resolve(anon_api, "shared", headers=headers).json()["lineage"]
            assert masked[0]["parent"] == {
                "kind": "version",
                "ref": None,
                "digest": None,
                "private": True,
            }


def test_the_answer_is_fastapis_rendering_of_the_general_paths_object(
    registry_server, admin_api, adapter_files
):
    from fastapi import FastAPI
    from fastapi.testclient import TestClient
    from sqlmodel import Session

    from registry.auth import Principal
    from registry.schemas import ResolvedVersion
    from registry.services import catalog

    publish(admin_api, "medical", {**adapter_files, "README.md": "# é ünïcode\n".encode()})
    admin_api.put("/v1/adapters/default/medical/aliases/prod", json={"version": 1})
    _resolve(admin_api, "medical@prod")  # warm
    hot = _resolve(admin_api, "medical@prod")
    assert hot.headers["content-type"] == "application/json"
    ctx = registry_server.ctx
    principal = Principal(token_id=1, name="admin", grants={"*": 3})
    with Session(ctx.engine) as session:
        ns, adapter, version = catalog.resolve_ref(session, principal, "medical@prod")
        general = catalog.version_view(
            session, ctx, ns, adapter, version, registry_server.url, principal
        )
    hot_view = json.loads(hot.content)
    assert list(hot_view) == list(general)  # same keys, same order
    strip = lambda v: {**v, "files": [{**f, "url": None} for f in v["files"]]}  # noqa: E731
    assert strip(hot_view) == strip(json.loads(json.dumps(general)))
    # byte for byte what FastAPI's response_model rendering makes of that object
    reference = FastAPI()

    @reference.get("/r", response_model=ResolvedVersion)
    def _r() -> dict:
        return hot_view

    assert TestClient(reference).get("/r").content == hot.content


def test_lookup_plan_uses_indexes_on_postgres(registry_server, admin_api, adapter_files):
    if registry_server.backend != "postgres_s3":
        pytest.skip("query plans are Postgres's")
    from loreg.refs import parse_ref
    from registry.services import resolve

    publish(admin_api, "medical", adapter_files)
    admin_api.put("/v1/adapters/default/medical/aliases/prod", json={"version": 1})
    engine = registry_server.ctx.engine
    for ref in ("default/medical@prod", "default/medical-v1", "default/medical"):
        statement, params = resolve._statement_and_params(parse_ref(ref))
        compiled = statement.compile(engine)
        with engine.connect() as conn:
            # with sequential scans priced out, a table without a usable index shows as
            # a Seq Scan or as an index scan with no condition (a walk of a whole index)
            conn.execute(sa.text("SET enable_seqscan = off"))
            values = {**compiled.params, **params}
            plan = conn.exec_driver_sql(f"EXPLAIN (FORMAT JSON) {compiled}", values)
            root = plan.scalar_one()[0]["Plan"]
        scans = list(_scan_nodes(root))
        assert scans, root
        for node in scans:
            assert node["Node Type"] != "Seq Scan", (ref, node)
            if node["Node Type"] in ("Index Scan", "Index Only Scan", "Bitmap Index Scan"):
                assert "Index Cond" in node, (ref, node)


def _scan_nodes(node: dict) -> Iterator[dict]:
    """Every node of an EXPLAIN (FORMAT JSON) plan that reads a table or an index."""
    if "Relation Name" in node or "Index Name" in node:
        yield node
    for child in node.get("Plans", []):
        yield from _scan_nodes(child)


def test_concurrent_resolves_queue_for_a_bounded_set_of_connections(
    registry_server, admin_api, adapter_files
):
    if registry_server.backend != "postgres_s3":
        pytest.skip("the event-loop lookup is Postgres's")
    from concurrent.futures import ThreadPoolExecutor

    from registry.services.async_lookup import APPLICATION_NAME

    publish(admin_api, "medical", adapter_files)

    def resolve_many(_: int) -> list[int]:
        with httpx.Client(base_url=registry_server.url, timeout=30) as c:
            return [_resolve(c, "medical").status_code for _ in range(10)]

    with ThreadPoolExecutor(24) as pool:
        codes = [code for batch in pool.map(resolve_many, range(24)) for code in batch]
    assert codes == [200] * 240
    with registry_server.ctx.engine.connect() as conn:
        open_now = conn.execute(
            sa.text(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE application_name = :a AND datname = current_database()"
            ),
            {"a": APPLICATION_NAME},
        ).scalar_one()
    assert 1 <= open_now <= registry_server.settings.resolve_connections


def test_the_fast_path_and_the_api_route_answer_the_same(registry_server, admin_api, adapter_files):
    """A plain GET is answered before routing (registry.api.fast_resolve); a GET with a
    body goes through FastAPI's route. Both give the same status, type and bytes, for
    answers and for errors."""
    publish(admin_api, "medical", adapter_files)
    bad_token = {"Authorization": "Bearer lrg_not-a-real-token"}
    for ref, headers in (
        ("medical", {}),
        ("medical-v1", {}),
        ("nothing-here", {}),
        ("Bad..Ref", {}),
        ("medical", bad_token),
        ("medical", {"Authorization": "Basic abc"}),
    ):
        fast = _resolve(admin_api, ref, headers=headers)
        routed = admin_api.request("GET", f"/v1/resolve/{ref}", headers=headers, content=b"{}")
        assert fast.status_code == routed.status_code, (ref, fast.text, routed.text)
        assert fast.headers["content-type"] == routed.headers["content-type"]
        if fast.status_code == 200:  # the cached answer: the same bytes
            assert fast.content == routed.content
        else:
            assert fast.json() == routed.json(), ref
    assert {_resolve(admin_api, r).status_code for r in ("nothing-here", "Bad..Ref")} == {404, 422}
