"""Lineage both ways on both backends: one recursive CTE, a bounded number of statements.

Versions are published through the real two-phase API (same files under other names,
so every blob after the first is already present): the rows are exactly what publish
writes. SQL statements are counted with SQLAlchemy's ``before_cursor_execute`` event on
the server's engine, around one HTTP request.
"""

from __future__ import annotations

import contextlib
import xml.etree.ElementTree as ET
from collections.abc import Iterator

import httpx
import pytest
import sqlalchemy as sa
from sqlmodel import Session

from loreg import Registry as SdkRegistry
from loreg import cli
from registry.services import lineage, lineage_walk
from tests.support.publish import publish

pytestmark = pytest.mark.integration

CHAIN = 50
SVG_NS = "{http://www.w3.org/2000/svg}"


@contextlib.contextmanager
def counted(engine: sa.Engine) -> Iterator[list[str]]:
    """Every SQL statement the engine runs inside the block."""
    seen: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany) -> None:  # noqa: ANN001
        seen.append(statement)

    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)


def _publish(api: httpx.Client, name: str, files: dict[str, bytes], **extra) -> str:
    r, _ = publish(api, name, files, **extra)
    assert r.status_code == 201, r.text
    return r.json()["resolved"]["ref"]


def _graph(api: httpx.Client, ref: str, **params) -> dict:
    r = api.get(f"/v1/lineage/versions/{ref}", params=params)
    assert r.status_code == 200, r.text
    return r.json()


def _triples(graph: dict) -> list[tuple]:
    return [
        (e["child"]["ref"], e["relation"], e["parent"]["ref"], e["depth"]) for e in graph["edges"]
    ]


@pytest.fixture
def chain(admin_api, adapter_files) -> list[str]:
    """c0 <- c1 <- ... <- c50 (``continued_from``), 51 versions."""
    refs = [_publish(admin_api, "c0", adapter_files)]
    for i in range(1, CHAIN + 1):
        parent = {"ref": refs[-1], "relation": "continued_from", "params": {"step": i}}
        refs.append(_publish(admin_api, f"c{i}", adapter_files, parents=[parent]))
    return refs


def test_a_chain_of_depth_50_in_one_request_with_a_bounded_statement_count(
    registry_server, admin_api, chain
):
    engine = registry_server.ctx.engine
    with counted(engine) as deep:
        up = _graph(admin_api, chain[-1])
    assert up["direction"] == "up" and up["truncated"] is False and up["depth_limited"] is False
    assert _triples(up) == [
        (chain[CHAIN - d + 1], "continued_from", chain[CHAIN - d], d) for d in range(1, CHAIN + 1)
    ]
    assert [e["params"] for e in up["edges"]][:2] == [{"step": CHAIN}, {"step": CHAIN - 1}]
    assert up["root"]["key"] == "n0" and up["root"]["ref"] == chain[-1]
    assert len(up["nodes"]) == CHAIN + 1 == len({n["key"] for n in up["nodes"]})
    assert {n["ref"] for n in up["nodes"]} == set(chain)
    assert up["nodes"][1] == {
        "key": "n1",
        "kind": "version",
        "ref": chain[-2],
        "digest": up["nodes"][1]["digest"],
        "private": False,
        "namespace": "default",
        "name": f"c{CHAIN - 1}",
        "version": 1,
    }
    # one recursive statement for the whole walk, whatever the depth
    assert sum("RECURSIVE" in s.upper() for s in deep) == 1
    with counted(engine) as shallow:
        one = _graph(admin_api, chain[-1], depth=1)
    assert _triples(one) == [(chain[-1], "continued_from", chain[-2], 1)]
    assert one["depth_limited"] is True and one["truncated"] is False
    assert len(deep) == len(shallow) <= 8, deep  # resolve the root (3), walk (1), facts

    with counted(engine) as down_statements:
        down = _graph(admin_api, chain[0], direction="down")
    assert _triples(down) == [
        (chain[d], "continued_from", chain[d - 1], d) for d in range(1, CHAIN + 1)
    ]
    assert {e["direction"] for e in down["edges"]} == {"down"}
    assert len(down_statements) == len(deep)

    mid = 20
    both = _graph(admin_api, chain[mid], direction="both", depth=5)
    assert [(e["direction"], e["depth"]) for e in both["edges"]] == [
        *(("up", d) for d in range(1, 6)),
        *(("down", d) for d in range(1, 6)),
    ]
    assert {e["parent"]["ref"] for e in both["edges"] if e["direction"] == "up"} == set(
        chain[mid - 5 : mid]
    )
    assert {e["child"]["ref"] for e in both["edges"] if e["direction"] == "down"} == set(
        chain[mid + 1 : mid + 6]
    )
    assert both["depth_limited"] is True

    # the downward walk other services call (the delete check): every dependent, nearest first
    with Session(engine) as session:
        ids = dict(
            session.execute(
                sa.text(
                    "SELECT a.name, v.id FROM versions v JOIN adapters a ON a.id = v.adapter_id"
                )
            ).all()
        )
        with counted(engine) as dep_statements:
            found = lineage.dependents(session, [ids["c0"]])
        assert [(d.kind, d.ref, d.depth) for d in found] == [
            ("version", chain[d], d) for d in range(1, CHAIN + 1)
        ]
        assert len(dep_statements) == 2
        # versions deleted together are not each other's dependents
        assert [d.ref for d in lineage.dependents(session, [ids["c48"], ids["c49"]])] == [chain[50]]
        assert lineage.dependents(session, [ids[f"c{CHAIN}"]]) == []
        assert lineage.dependents(session, []) == []

        # the edge cap cuts the answer nearest first, and says so
        root = ("version", ids[f"c{CHAIN}"])
        capped = lineage.ancestry(session, root, None, limit=10)
        assert [e["depth"] for e in capped["edges"]] == list(range(1, 11))
        assert capped["truncated"] is True and len(capped["nodes"]) == 11


def test_the_walk_stops_at_its_row_bound(registry_server, admin_api, adapter_files, monkeypatch):
    """A walk larger than MAX_WALK_ROWS reads only that many rows and answers truncated."""
    refs = [_publish(admin_api, "w0", adapter_files)]
    for i in range(1, 8):
        parent = {"ref": refs[-1], "relation": "continued_from"}
        refs.append(_publish(admin_api, f"w{i}", adapter_files, parents=[parent]))
    monkeypatch.setattr(lineage_walk, "MAX_WALK_ROWS", 4)
    lineage_walk.walk_statement.cache_clear()
    try:
        cut = _graph(admin_api, refs[-1])
    finally:
        monkeypatch.undo()
        lineage_walk.walk_statement.cache_clear()
    assert cut["truncated"] is True
    assert [e["depth"] for e in cut["edges"]] == [1, 2, 3, 4]  # rows 0..3 are depths 0..3
    whole = _graph(admin_api, refs[-1])
    assert whole["truncated"] is False and len(whole["edges"]) == 7


@pytest.fixture
def diamond(admin_api, adapter_files, base_files) -> dict[str, str]:
    """tiny-llama <- a <- {b, c} <- d (d combined from b 0.7 and c 0.3)."""
    r, _ = publish(admin_api, "tiny-llama", base_files, kind="base_model")
    assert r.status_code == 201, r.text
    a = _publish(admin_api, "a", adapter_files, base_model="tiny-llama")
    b = _publish(admin_api, "b", adapter_files, parents=[{"ref": a, "relation": "continued_from"}])
    c = _publish(admin_api, "c", adapter_files, parents=[{"ref": a, "relation": "continued_from"}])
    d = _publish(
        admin_api,
        "d",
        adapter_files,
        parents=[
            {"ref": b, "relation": "combined_from", "params": {"weight": 0.7}},
            {"ref": c, "relation": "combined_from", "params": {"weight": 0.3}},
        ],
    )
    return {"a": a, "b": b, "c": c, "d": d}


def test_a_diamond_up_and_down_lists_each_edge_and_node_once(admin_api, diamond, registry_server):
    a, b, c, d = (diamond[k] for k in "abcd")
    up = _graph(admin_api, d)
    assert sorted(_triples(up)) == sorted(
        [
            (d, "combined_from", b, 1),
            (d, "combined_from", c, 1),
            (b, "continued_from", a, 2),
            (c, "continued_from", a, 2),
            (a, "trained_from", "tiny-llama", 3),
        ]
    )
    assert sorted(n["ref"] for n in up["nodes"]) == sorted([a, b, c, d, "tiny-llama"])
    weights = {e["parent"]["ref"]: e["params"]["weight"] for e in up["edges"][:2]}
    assert weights == {b: 0.7, c: 0.3}
    keys = {n["ref"]: n["key"] for n in up["nodes"]}
    assert all(e["parent"]["key"] == keys[e["parent"]["ref"]] for e in up["edges"])

    down = _graph(admin_api, a, direction="down")
    assert sorted(_triples(down)) == sorted(
        [
            (b, "continued_from", a, 1),
            (c, "continued_from", a, 1),
            (d, "combined_from", b, 2),
            (d, "combined_from", c, 2),
        ]
    )
    assert len(down["nodes"]) == 4
    # downward from the base model: every version trained against it, then onwards
    r = admin_api.get("/v1/lineage/base-models/tiny-llama", params={"direction": "down"})
    assert r.status_code == 200, r.text
    from_base = r.json()
    assert from_base["root"]["kind"] == "base_model"
    assert [(e["child"]["ref"], e["depth"]) for e in from_base["edges"]][0] == (a, 1)
    assert {e["child"]["ref"] for e in from_base["edges"]} == {a, b, c, d}

    both = _graph(admin_api, b, direction="both")
    assert sorted(_triples(both)) == sorted(
        [
            (b, "continued_from", a, 1),
            (a, "trained_from", "tiny-llama", 2),
            (d, "combined_from", b, 1),
        ]
    )

    svg = admin_api.get(f"/v1/lineage/versions/{d}", params={"format": "svg"})
    assert svg.status_code == 200, svg.text
    assert svg.headers["content-type"].startswith("image/svg+xml")
    root = ET.fromstring(svg.content)
    groups = root.iter(f"{SVG_NS}g")
    classes = [g.get("class") for g in groups]
    assert classes.count("node") == len(up["nodes"]) and classes.count("edge") == len(up["edges"])
    links = {a_.get("href") for a_ in root.iter(f"{SVG_NS}a")}
    assert links == {f"/adapters/default/{name}/versions/1" for name in "abcd"} | {
        "/base-models/tiny-llama"
    }


def test_bad_direction_depth_or_format_is_a_422_naming_it(admin_api, diamond):
    for params, word in (
        ({"direction": "sideways"}, "direction"),
        ({"depth": 0}, "depth"),
        ({"depth": lineage.MAX_LINEAGE_DEPTH + 1}, "depth"),
        ({"depth": "x"}, "depth"),
        ({"format": "png"}, "format"),
    ):
        r = admin_api.get(f"/v1/lineage/versions/{diamond['d']}", params=params)
        assert r.status_code == 422, (params, r.text)
        assert word in r.text, r.text
    assert _graph(admin_api, diamond["d"], depth=lineage.MAX_LINEAGE_DEPTH)["truncated"] is False


def test_private_versions_are_hidden_and_not_walked_through_both_ways(
    registry_server, admin_api, anon_api, adapter_files
):
    """pub0 <- lab/secret1 <- pub2 <- pub3: lab is private."""
    assert admin_api.post("/v1/namespaces", json={"name": "lab", "private": True}).is_success
    pub0 = _publish(admin_api, "pub0", adapter_files)
    secret = _publish(
        admin_api,
        "secret1",
        adapter_files,
        namespace="lab",
        parents=[{"ref": pub0, "relation": "continued_from"}],
    )
    pub2 = _publish(
        admin_api, "pub2", adapter_files, parents=[{"ref": secret, "relation": "continued_from"}]
    )
    pub3 = _publish(
        admin_api, "pub3", adapter_files, parents=[{"ref": pub2, "relation": "continued_from"}]
    )
    reader = admin_api.post(
        "/v1/tokens", json={"name": "lab-reader", "grants": [{"namespace": "lab", "scope": "read"}]}
    ).json()["token"]
    other = admin_api.post(
        "/v1/tokens", json={"name": "other", "grants": [{"namespace": "default", "scope": "write"}]}
    ).json()["token"]
    hidden = {
        "kind": "version",
        "ref": None,
        "digest": None,
        "private": True,
        "namespace": None,
        "name": None,
        "version": None,
    }

    def client(token: str | None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=registry_server.url, headers=headers, timeout=30)

    with client(reader) as rd, client(other) as ot:
        for api in (admin_api, rd):  # readers of lab see the whole chain, both ways
            assert [e["parent"]["ref"] for e in _graph(api, pub3)["edges"]] == [pub2, secret, pub0]
            down = _graph(api, pub0, direction="down")
            assert [e["child"]["ref"] for e in down["edges"]] == [secret, pub2, pub3]
        for api in (anon_api, ot):
            up = _graph(api, pub3)
            assert [e["parent"]["ref"] for e in up["edges"]] == [pub2, None]
            assert {k: v for k, v in up["edges"][1]["parent"].items() if k != "key"} == hidden
            assert pub0 not in str(up)  # the branch past the private version is not followed
            down = _graph(api, pub0, direction="down")
            assert len(down["edges"]) == 1 and down["edges"][0]["child"]["private"] is True
            assert pub2 not in str(down) and pub3 not in str(down)
            both = _graph(api, pub2, direction="both")
            assert [
                (e["direction"], e["parent"]["ref"], e["child"]["ref"]) for e in both["edges"]
            ] == [
                ("up", None, pub2),
                ("down", pub2, pub3),
            ]
            svg = api.get(f"/v1/lineage/versions/{pub3}", params={"format": "svg"}).text
            assert "secret1" not in svg and "lab" not in svg and pub0 not in svg
            assert api.get(f"/v1/lineage/versions/{secret}").status_code == 404
    # the registry's own check sees through private namespaces
    with Session(registry_server.ctx.engine) as session:
        pub0_id = session.execute(
            sa.text(
                "SELECT v.id FROM versions v JOIN adapters a ON a.id = v.adapter_id "
                "WHERE a.name = 'pub0'"
            )
        ).scalar_one()
        assert [d.ref for d in lineage.dependents(session, [pub0_id])] == [secret, pub2, pub3]


def test_the_cli_prints_every_format(registry_server, diamond, tmp_path, capsys):
    def sdk(args) -> SdkRegistry:  # noqa: ANN001 - the CLI closes it after each command
        return SdkRegistry(
            url=registry_server.url,
            token=registry_server.admin_token,
            cache_dir=tmp_path / "cache",
            progress=False,
        )

    def run(*argv: str) -> str:
        code = cli.main(list(argv), registry_factory=sdk)
        out, err = capsys.readouterr()
        assert code == 0, err
        return out

    d, a = diamond["d"], diamond["a"]
    tree = run("lineage", d)
    assert tree.splitlines()[0] == d
    assert f"  {d} <-combined_from- {diamond['b']}  [weight=0.7]" in tree
    assert f"  {a} <-trained_from- base model tiny-llama" in tree
    down = run("lineage", a, "--direction", "down", "--depth", "1")
    assert f"  {diamond['b']} <-continued_from- {a}" in down and d not in down
    assert "more past depth 1" in down
    mermaid = run("lineage", d, "--format", "mermaid").splitlines()
    assert mermaid[0] == "flowchart TD"
    assert sum("-->" in line for line in mermaid) == 5
    dot = run("lineage", d, "--format", "dot")
    assert dot.startswith("digraph lineage {") and dot.count(" -> ") == 5
    svg = ET.fromstring(run("lineage", d, "--format", "svg"))
    assert svg.tag == f"{SVG_NS}svg"
    as_json = run("lineage", d, "--format", "json", "--direction", "both")
    assert '"direction": "both"' in as_json
