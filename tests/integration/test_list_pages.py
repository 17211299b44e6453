"""Every list endpoint pages by keyset cursor, on both backends.

Pages tile a list with no row skipped or repeated while versions and adapters are
published between page fetches; the adapter detail carries a bounded first page of
versions that the versions list continues; a cursor edited, of another list or of
another filter is 400 ``invalid_cursor``; ``limit`` out of range and an unknown query
parameter are 422s naming it; a page costs a fixed number of SQL statements whatever
it holds; the SDK fetches a page only when the caller iterates into it; on Postgres
the list queries read ``versions`` through indexes on a table big enough for the
planner to care.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import sqlalchemy as sa
from sqlmodel import Session

from tests.support.publish import publish


def _publish(api: httpx.Client, name: str, files: dict, n: int, **extra) -> int:
    """Publish version ``n`` of ``name`` (a README makes each version's digest its own)."""
    r, _ = publish(api, name, {**files, "README.md": f"{name} {n}\n".encode()}, **extra)
    assert r.status_code == 201, r.text
    return r.json()["resolved"]["version"]


def _walk(
    api: httpx.Client,
    path: str,
    params: dict | None = None,
    between: Callable[[int], None] | None = None,
) -> list[dict]:
    """Every item of a list, page by page, calling ``between(page_number)`` after
    each page that has a successor; also checks each page's shape."""
    items: list[dict] = []
    query = dict(params or {})
    for page_number in range(1000):
        r = api.get(path, params=query)
        assert r.status_code == 200, r.text
        page = r.json()
        assert set(page) == {"items", "next_cursor"}, page
        assert len(page["items"]) <= int(query.get("limit", 50))
        items.extend(page["items"])
        if page["next_cursor"] is None:
            return items
        assert page["items"], "a page with a successor is never empty"
        if between is not None:
            between(page_number)
        query["cursor"] = page["next_cursor"]
    raise AssertionError("the list never ended")


def _error(r: httpx.Response, status: int, code: str) -> str:
    assert r.status_code == status, r.text
    body = r.json()["error"]
    assert body["code"] == code, body
    return body["message"]


@contextmanager
def _statements(engine) -> Iterator[list[tuple[str, object]]]:
    """Every (statement, parameters) sent on ``engine`` while the block runs."""
    seen: list[tuple[str, object]] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        seen.append((statement, parameters))

    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)


# --- tiling while publishing ----------------------------------------------------------


def test_adapter_pages_tile_the_list_while_adapters_are_published(admin_api, adapter_files):
    originals = [f"ad{i:02d}" for i in range(9)]
    for name in originals:
        _publish(admin_api, name, adapter_files, 1)
    added = iter(["ad00b", "ad04b", "ad99", "aa", "ad07b", "ad01b", "ad98", "ab", "ad05b"])

    def publish_more(page_number: int) -> None:
        _publish(admin_api, next(added), adapter_files, 1)  # before and after the cursor
        _publish(admin_api, originals[page_number], adapter_files, 2)  # a new version

    listed = _walk(admin_api, "/v1/adapters", {"limit": 2}, publish_more)
    names = [a["name"] for a in listed]
    assert len(names) == len(set(names)), names  # nothing repeated
    assert [n for n in names if n in originals] == originals  # nothing skipped, in order
    assert names == sorted(names)  # one namespace: by name
    # sorted by update, newest first: an adapter published to while paging moves ahead
    # of the cursor, so it is not listed twice; a new adapter lands there too
    before = [a["name"] for a in _walk(admin_api, "/v1/adapters", {"limit": 200})]
    listed = []
    query: dict = {"limit": 3, "sort": "updated"}
    for page_number in range(100):
        page = admin_api.get("/v1/adapters", params=query).json()
        listed.extend(page["items"])
        if page["next_cursor"] is None:
            break
        _publish(admin_api, listed[0]["name"], adapter_files, 10 + page_number)
        _publish(admin_api, f"late{page_number}", adapter_files, 1)
        query["cursor"] = page["next_cursor"]
    by_update = [a["name"] for a in listed]
    assert sorted(by_update) == sorted(before)  # each adapter once, none of the late ones
    stamps = [a["updated_at"] for a in listed]
    assert stamps == sorted(stamps, reverse=True)


def test_version_pages_tile_while_versions_are_published(admin_api, anon_api, adapter_files):
    for n in range(1, 24):
        _publish(admin_api, "med", adapter_files, n)
    _publish(admin_api, "other", adapter_files, 1)

    # the detail: the summary and the newest 20 versions; the cursor continues on /versions
    detail = anon_api.get("/v1/adapters/default/med").json()
    assert (detail["versions"], detail["latest_version"]) == (23, 23)
    recent = detail["recent_versions"]
    assert [v["version"] for v in recent["items"]] == list(range(23, 3, -1))
    files = len({**adapter_files, "README.md": b""})
    assert all(v["file_count"] == files for v in recent["items"])
    assert recent["next_cursor"]
    rest = anon_api.get(
        "/v1/adapters/default/med/versions", params={"cursor": recent["next_cursor"]}
    ).json()
    assert [v["version"] for v in rest["items"]] == [3, 2, 1] and rest["next_cursor"] is None
    small = anon_api.get("/v1/adapters/default/other").json()["recent_versions"]
    assert [v["version"] for v in small["items"]] == [1] and small["next_cursor"] is None

    published = iter(range(24, 100))
    listed = _walk(
        anon_api,
        "/v1/adapters/default/med/versions",
        {"limit": 4},
        lambda _: _publish(admin_api, "med", adapter_files, next(published)),
    )
    # new versions land ahead of the cursor (newest first): the walk sees exactly the 23
    assert [v["version"] for v in listed] == list(range(23, 0, -1))
    assert anon_api.get("/v1/adapters/default/nope/versions").status_code == 404


# --- the other lists ------------------------------------------------------------------


def test_namespace_pages_hide_private_namespaces_in_sql(admin_api, anon_api):
    for name, private in (("ns-b", False), ("ns-a", True), ("ns-d", False), ("ns-c", True)):
        r = admin_api.post("/v1/namespaces", json={"name": name, "private": private})
        assert r.status_code == 201, r.text
    everyone = [n["name"] for n in _walk(admin_api, "/v1/namespaces", {"limit": 2})]
    assert everyone == sorted(everyone) and {"ns-a", "ns-b", "ns-c", "ns-d"} <= set(everyone)
    public = _walk(anon_api, "/v1/namespaces", {"limit": 1})
    assert [n["name"] for n in public] == [n for n in everyone if n not in ("ns-a", "ns-c")]
    assert all(not n["private"] for n in public)


def test_private_adapters_are_filtered_before_the_page_is_cut(admin_api, anon_api, adapter_files):
    assert admin_api.post("/v1/namespaces", json={"name": "vault", "private": True}).is_success
    for i in range(3):
        _publish(admin_api, f"hidden{i}", adapter_files, 1, namespace="vault")
        _publish(admin_api, f"shown{i}", adapter_files, 1)
    first = anon_api.get("/v1/adapters", params={"limit": 3}).json()
    assert [a["name"] for a in first["items"]] == ["shown0", "shown1", "shown2"]
    assert first["next_cursor"] is None
    everything = _walk(admin_api, "/v1/adapters", {"limit": 2})
    assert {a["namespace"] for a in everything} == {"default", "vault"}
    grouped = [a["namespace"] for a in everything]
    assert grouped == sorted(grouped, key=grouped.index)  # one namespace after another
    only = _walk(admin_api, "/v1/adapters", {"limit": 2, "namespace": "vault"})
    assert [a["name"] for a in only] == ["hidden0", "hidden1", "hidden2"]
    _error(anon_api.get("/v1/adapters", params={"namespace": "vault"}), 404, "not_found")


def test_job_pages_newest_first_with_filters(registry_server, admin_api, anon_api):
    from registry.models import Job

    assert admin_api.post("/v1/namespaces", json={"name": "lab", "private": True}).is_success
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    rows = []
    for i in range(11):
        rows.append(
            Job(
                id=f"job{i:02d}",
                type="compress" if i % 3 else "combine",
                status="succeeded" if i % 2 else "queued",
                namespace="lab" if i in (4, 9) else "default",
                output=f"out{i}",
                created_at=t0 + timedelta(seconds=i // 2),  # pairs share a time: ids decide
            )
        )
    with Session(registry_server.ctx.engine, expire_on_commit=False) as session:
        session.add_all(rows)
        session.commit()
    newest_first = sorted(rows, key=lambda j: (j.created_at, j.id), reverse=True)
    listed = _walk(admin_api, "/v1/jobs", {"limit": 3})
    assert [j["id"] for j in listed] == [j.id for j in newest_first]
    done = _walk(admin_api, "/v1/jobs", {"limit": 2, "status": "succeeded", "type": "compress"})
    assert [j["id"] for j in done] == [
        j.id for j in newest_first if j.status == "succeeded" and j.type == "compress"
    ]
    outside = _walk(anon_api, "/v1/jobs", {"limit": 4})
    assert [j["id"] for j in outside] == [j.id for j in newest_first if j.namespace != "lab"]
    lab = _walk(admin_api, "/v1/jobs", {"namespace": "lab", "limit": 1})
    assert [j["id"] for j in lab] == ["job09", "job04"]
    _error(anon_api.get("/v1/jobs", params={"status": "done"}), 422, "invalid_request")


def test_base_model_pages_by_name(registry_server, anon_api):
    from registry.models import BaseModelRecord

    names = ["org/zeta", "alpha", "org/beta", "Mid", "org/alpha"]
    with Session(registry_server.ctx.engine) as session:
        session.add_all(
            BaseModelRecord(name=n, digest="sha256:" + "0" * 64, size=1, modules={"m": [2, 2]})
            for n in names
        )
        session.commit()
    listed = _walk(anon_api, "/v1/base-models", {"limit": 2})
    assert [b["name"] for b in listed] == sorted(names)
    assert all(b["module_count"] == 1 for b in listed)


# --- bad input -------------------------------------------------------------------------


def test_bad_cursors_limits_and_parameters_are_refused(admin_api, anon_api, adapter_files):
    for name in ("b1", "b2", "b3"):
        _publish(admin_api, name, adapter_files, 1)
        _publish(admin_api, name, adapter_files, 2)
    adapters_cursor = anon_api.get("/v1/adapters", params={"limit": 1}).json()["next_cursor"]
    in_default = anon_api.get("/v1/adapters", params={"limit": 1, "namespace": "default"})
    default_cursor = in_default.json()["next_cursor"]
    b1_cursor = anon_api.get("/v1/adapters/default/b1/versions", params={"limit": 1}).json()[
        "next_cursor"
    ]
    assert adapters_cursor and default_cursor and b1_cursor

    body, mac = adapters_cursor.split(".")
    edited = ("A" if body[0] != "A" else "B") + body[1:] + "." + mac
    message = _error(anon_api.get("/v1/adapters", params={"cursor": edited}), 400, "invalid_cursor")
    assert "altered" in message
    for path, params in (
        ("/v1/jobs", {"cursor": adapters_cursor}),  # another list
        ("/v1/namespaces", {"cursor": adapters_cursor}),
        ("/v1/adapters", {"cursor": default_cursor}),  # another filter
        ("/v1/adapters", {"cursor": adapters_cursor, "sort": "updated"}),  # another sort
        ("/v1/adapters/default/b2/versions", {"cursor": b1_cursor}),  # another adapter
    ):
        message = _error(anon_api.get(path, params=params), 400, "invalid_cursor")
        assert "another query" in message, (path, message)
    for path in ("/v1/adapters", "/v1/adapters/default/b1/versions", "/v1/jobs"):
        for limit in (0, 201, -1):
            message = _error(anon_api.get(path, params={"limit": limit}), 422, "invalid_request")
            assert "limit" in message, message
        assert anon_api.get(path, params={"limit": 200}).status_code == 200
    _error(anon_api.get("/v1/adapters", params={"sort": "size"}), 422, "invalid_request")

    message = _error(
        anon_api.get("/v1/adapters", params={"nmespace": "default"}), 422, "invalid_request"
    )
    assert "nmespace" in message and "cursor, limit, namespace, sort" in message, message
    for path, accepted in (
        ("/v1/jobs", "cursor, limit, namespace, status, type"),
        ("/v1/namespaces", "cursor, limit"),
        ("/v1/base-models", "cursor, limit"),
        ("/v1/adapters/default/b1/versions", "cursor, limit"),
    ):
        message = _error(anon_api.get(path, params={"stauts": "x"}), 422, "invalid_request")
        assert "stauts" in message and accepted in message, (path, message)


# --- cost -----------------------------------------------------------------------------


def test_a_page_costs_the_same_statements_whatever_it_holds(
    registry_server, admin_api, adapter_files
):
    engine = registry_server.ctx.engine

    def statements(path: str, params: dict | None = None) -> int:
        with _statements(engine) as seen:
            assert admin_api.get(path, params=params).status_code == 200
        return len(seen)

    _publish(admin_api, "c0", adapter_files, 1)
    few = statements("/v1/adapters", {"limit": 50})
    few_in_ns = statements("/v1/adapters", {"limit": 50, "namespace": "default"})
    detail_small = statements("/v1/adapters/default/c0")
    for i in range(1, 8):
        _publish(admin_api, f"c{i}", adapter_files, 1)
        _publish(admin_api, f"c{i}", adapter_files, 2)
        r = admin_api.put(f"/v1/adapters/default/c{i}/aliases/prod", json={"version": 1})
        assert r.is_success
    for n in range(2, 6):
        _publish(admin_api, "c0", adapter_files, n)
    assert statements("/v1/adapters", {"limit": 50}) == few
    assert statements("/v1/adapters", {"limit": 50, "namespace": "default"}) == few_in_ns
    assert statements("/v1/adapters", {"limit": 50, "sort": "updated"}) == few
    assert statements("/v1/adapters/default/c0") == detail_small
    summaries = admin_api.get("/v1/adapters", params={"limit": 50}).json()["items"]
    by_name = {a["name"]: a for a in summaries}
    assert (by_name["c0"]["versions"], by_name["c0"]["latest_version"]) == (5, 5)
    assert by_name["c3"]["aliases"] == {"prod": 1} and by_name["c0"]["aliases"] == {}


# --- the SDK ----------------------------------------------------------------------------


def test_the_sdk_fetches_a_page_only_when_iterated_into(
    registry_server, admin_api, adapter_files, tmp_path
):
    import loreg

    for i in range(5):
        _publish(admin_api, f"s{i}", adapter_files, 1)
    for n in range(2, 5):
        _publish(admin_api, "s0", adapter_files, n)
    with loreg.Registry(
        url=registry_server.url,
        token=registry_server.admin_token,
        cache_dir=tmp_path / "cache",
        progress=False,
    ) as reg:
        calls: list[tuple[str, dict]] = []
        real_get = reg.api.get

        def counting_get(path, params=None, **kw):
            calls.append((path, dict(params or {})))
            return real_get(path, params=params, **kw)

        reg.api.get = counting_get  # type: ignore[method-assign]
        adapters = reg.list(page_size=2)
        assert calls == []  # nothing fetched before iterating
        assert next(adapters)["name"] == "s0" and len(calls) == 1
        assert next(adapters)["name"] == "s1" and len(calls) == 1
        assert next(adapters)["name"] == "s2" and len(calls) == 2
        assert [a["name"] for a in adapters] == ["s3", "s4"] and len(calls) == 3
        assert [p["limit"] for _, p in calls] == [2, 2, 2]
        assert "cursor" not in calls[0][1] and calls[1][1]["cursor"] != calls[2][1]["cursor"]

        calls.clear()
        versions = reg.versions("default/s0", page_size=3)
        assert [v["version"] for v in versions] == [4, 3, 2, 1] and len(calls) == 2
        calls.clear()
        assert [a["name"] for a in reg.list(sort="updated", page_size=200)][0] == "s0"
        assert len(calls) == 1
        assert "default" in [n["name"] for n in reg.namespaces()]
        assert list(reg.list_base_models()) == [] and list(reg.jobs(status="queued")) == []


# --- query plans ------------------------------------------------------------------------


def _scan_nodes(node: dict) -> Iterator[dict]:
    """Every node of an EXPLAIN (FORMAT JSON) plan that reads a table or an index."""
    if "Relation Name" in node or "Index Name" in node:
        yield node
    for child in node.get("Plans", []):
        yield from _scan_nodes(child)


def _bulk_catalog(engine, adapters: int, versions_each: int, big_versions: int) -> None:
    """``adapters`` adapters of ``versions_each`` versions and one (``big``) of
    ``big_versions``, each version with one file, some aliases; then ANALYZE."""
    sha = "ab" * 32
    with engine.begin() as conn:
        ns_id = conn.execute(sa.text("SELECT id FROM namespaces WHERE name = 'default'")).scalar()
        conn.execute(
            sa.text("INSERT INTO blobs (sha256, size, created_at) VALUES (:s, 1, now())"),
            {"s": sha},
        )
        conn.execute(
            sa.text(
                "INSERT INTO adapters (namespace_id, name, kind, created_at, updated_at) "
                "SELECT :ns, 'bulk' || lpad(g::text, 5, '0'), 'adapter', now(), "
                "now() - g * interval '1 second' FROM generate_series(1, :n) g"
            ),
            {"ns": ns_id, "n": adapters},
        )
        conn.execute(
            sa.text(
                "INSERT INTO adapters (namespace_id, name, kind, created_at, updated_at) "
                "VALUES (:ns, 'big', 'adapter', now(), now())"
            ),
            {"ns": ns_id},
        )
        conn.execute(
            sa.text(
                "INSERT INTO versions (adapter_id, number, digest, size, created_at) "
                "SELECT a.id, g, 'sha256:' || md5(a.id::text || '-' || g::text), 1, now() "
                "FROM adapters a CROSS JOIN LATERAL generate_series(1, "
                "CASE WHEN a.name = 'big' THEN :big ELSE :each END) g"
            ),
            {"big": big_versions, "each": versions_each},
        )
        conn.execute(
            sa.text(
                "INSERT INTO version_files (version_id, path, blob_sha256, size) "
                "SELECT id, 'adapter_model.safetensors', :s, 1 FROM versions"
            ),
            {"s": sha},
        )
        conn.execute(
            sa.text(
                "INSERT INTO aliases (adapter_id, name, version_id, updated_at) "
                "SELECT v.adapter_id, 'prod', v.id, now() FROM versions v "
                "WHERE v.number = 1 AND v.adapter_id % 10 = 0"
            )
        )
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text("ANALYZE"))


def test_list_queries_read_versions_through_indexes_on_postgres(registry_server, admin_api):
    if registry_server.backend != "postgres_s3":
        pytest.skip("query plans are Postgres's")
    engine = registry_server.ctx.engine
    _bulk_catalog(engine, adapters=2000, versions_each=10, big_versions=2000)

    def deep(path: str, params: dict, pages: int) -> str:
        query = dict(params)
        for _ in range(pages):
            page = admin_api.get(path, params=query).json()
            query["cursor"] = page["next_cursor"]
        assert query["cursor"], "the list ended before the deep page"
        return query["cursor"]

    requests = [
        ("/v1/adapters", {"limit": 50}),
        ("/v1/adapters", {"limit": 50, "cursor": deep("/v1/adapters", {"limit": 50}, 30)}),
        ("/v1/adapters", {"limit": 50, "sort": "updated"}),
        (
            "/v1/adapters",
            {
                "limit": 50,
                "sort": "updated",
                "cursor": deep("/v1/adapters", {"limit": 50, "sort": "updated"}, 30),
            },
        ),
        ("/v1/adapters/default/big/versions", {"limit": 50}),
        (
            "/v1/adapters/default/big/versions",
            {"limit": 50, "cursor": deep("/v1/adapters/default/big/versions", {"limit": 50}, 30)},
        ),
        ("/v1/adapters/default/big", {}),
    ]
    on_versions = 0
    for path, params in requests:
        with _statements(engine) as seen:
            r = admin_api.get(path, params=params)
            assert r.status_code == 200, r.text
        for statement, parameters in seen:
            with engine.connect() as conn:
                plan = conn.exec_driver_sql(f"EXPLAIN (FORMAT JSON) {statement}", parameters)
                root = plan.scalar_one()[0]["Plan"]
            for node in _scan_nodes(root):
                if node.get("Relation Name") in ("versions", "version_files"):
                    on_versions += 1
                    assert node["Node Type"] != "Seq Scan", (path, params, statement, node)
    assert on_versions >= 2 * len(requests)  # the summaries' and the versions' queries
