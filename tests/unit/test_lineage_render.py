"""Renderings of a lineage graph answer: tree, Mermaid, DOT (SDK) and the SVG drawing (server).

The graphs are answers shaped like ``GET /v1/lineage/...`` builds them; the checks
parse each output back and compare it with the graph it was drawn from.
"""

from __future__ import annotations

import json
import random
import re
import xml.etree.ElementTree as ET
from typing import Any
from urllib.parse import quote

import pytest

from loreg import lineage_text
from registry.services import lineage_graph

SVG = "{http://www.w3.org/2000/svg}"
HOSTILE = 'evil"><script>alert(1)</script>&amp;|-->'


def node(key: str, ref: str | None, kind: str = "version", **extra: Any) -> dict[str, Any]:
    """A node as the API answers it (a version's ``ns/name-vN`` ref gives its names)."""
    names: dict[str, Any] = {"namespace": None, "name": None, "version": None}
    if kind == "version" and ref is not None and not extra.get("private"):
        ns, rest = ref.split("/", 1)
        names = {"namespace": ns, "name": rest.rsplit("-v", 1)[0], "version": 1}
    return {
        "key": key,
        "kind": kind,
        "ref": ref,
        "digest": None,
        "private": False,
        **names,
        **extra,
    }


def graph(nodes: list[dict[str, Any]], pairs: list[tuple[int, int, str, dict]]) -> dict[str, Any]:
    """An ``up`` answer: ``pairs`` are (child index, parent index, relation, params)."""
    return {
        "root": nodes[0],
        "direction": "up",
        "depth": 256,
        "nodes": nodes,
        "edges": [
            {
                "child": nodes[c],
                "relation": rel,
                "parent": nodes[p],
                "params": params,
                "direction": "up",
                "depth": 1,
            }
            for c, p, rel, params in pairs
        ],
        "truncated": False,
        "depth_limited": False,
    }


def diamond() -> dict[str, Any]:
    """d combined from b (0.7) and c (0.3), both continued from a, trained from a base
    whose name is hostile; one private parent."""
    nodes = [
        node("n0", "default/d-v1"),
        node("n1", "default/b-v1"),
        node("n2", "default/c-v1"),
        node("n3", "default/a-v1"),
        node("n4", HOSTILE, kind="base_model"),
        node("n5", None, private=True),
    ]
    return graph(
        nodes,
        [
            (0, 1, "combined_from", {"weight": 0.7}),
            (0, 2, "combined_from", {"weight": 0.3}),
            (1, 3, "continued_from", {}),
            (2, 3, "continued_from", {}),
            (3, 4, "trained_from", {}),
            (2, 5, "continued_from", {}),
        ],
    )


def fan(width: int) -> dict[str, Any]:
    """One version combined from ``width`` parents with labels of different lengths."""
    nodes = [node("n0", "default/merged-v1")]
    nodes += [node(f"n{i}", f"default/{'p' * (i % 7 + 1)}{i}-v1") for i in range(1, width + 1)]
    return graph(
        nodes, [(0, i, "combined_from", {"weight": 1 / width}) for i in range(1, width + 1)]
    )


def random_dag(size: int, seed: int) -> dict[str, Any]:
    """A seeded DAG: node i derived from up to three of the nodes after it."""
    rng = random.Random(seed)
    nodes = [node(f"n{i}", f"default/m{i}{'x' * rng.randrange(12)}-v1") for i in range(size)]
    pairs = []
    for i in range(size - 1):
        for p in rng.sample(range(i + 1, size), k=min(size - i - 1, rng.randrange(1, 4))):
            pairs.append((i, p, "continued_from", {}))
    return graph(nodes, pairs)


def edge_set(g: dict[str, Any]) -> set[tuple[str, str]]:
    return {(e["parent"]["key"], e["child"]["key"]) for e in g["edges"]}


def test_tree_is_the_plain_listing() -> None:
    g = diamond()
    lines = lineage_text.to_tree(g).splitlines()
    assert lines[0] == "default/d-v1"
    assert lines[1] == "  default/d-v1 <-combined_from- default/b-v1  [weight=0.7]"
    assert f"  default/a-v1 <-trained_from- base model {HOSTILE}" in lines
    assert "  default/c-v1 <-continued_from- (a private version)" in lines
    assert len(lines) == 1 + len(g["edges"])
    empty = {**g, "edges": [], "direction": "down", "depth_limited": True, "depth": 3}
    assert lineage_text.to_tree(empty).splitlines()[1:] == [
        "  (no recorded dependents)",
        "  ... (more past depth 3)",
    ]


def test_tree_of_both_directions_heads_each_part() -> None:
    g = diamond()
    down = {**g["edges"][0], "direction": "down"}
    both = {**g, "direction": "both", "edges": [g["edges"][1], down]}
    lines = lineage_text.to_tree(both).splitlines()
    assert lines[1] == "  parents:" and lines[3] == "  dependents:"


MERMAID_NODE = re.compile(r'^  (n\d+)\["([^"]*)"\]$')
MERMAID_EDGE = re.compile(r'^  (n\d+) -->\|"([^"]*)"\| (n\d+)$')


def test_mermaid_has_one_node_line_per_node_and_one_edge_line_per_edge() -> None:
    g = diamond()
    lines = lineage_text.to_mermaid(g).splitlines()
    assert lines[0] == "flowchart TD"
    nodes = {m[1]: m[2] for m in map(MERMAID_NODE.match, lines) if m}
    edges = [(m[1], m[2], m[3]) for m in map(MERMAID_EDGE.match, lines) if m]
    assert set(nodes) == {n["key"] for n in g["nodes"]}
    assert {(a, b) for a, _, b in edges} == edge_set(g) and len(edges) == len(g["edges"])
    assert ("n1", "combined_from w=0.7", "n0") in edges
    # the hostile name is spelled with entity codes only: no quote, bracket or pipe breaks out
    assert (
        nodes["n4"]
        == "base model evil#quot;#gt;#lt;script#gt;alert(1)#lt;/script#gt;#amp;amp;|--#gt;"
    )
    assert nodes["n5"] == "(a private version)"
    assert "class n0 root" in lines[-1]


DOT_NODE = re.compile(r'^  (n\d+) \[label=("(?:[^"\\]|\\.)*"), class="(\w+)"(, penwidth=3)?\];$')
DOT_EDGE = re.compile(r'^  (n\d+) -> (n\d+) \[label=("(?:[^"\\]|\\.)*")\];$')


def test_dot_is_a_digraph_with_quoted_labels() -> None:
    g = diamond()
    lines = lineage_text.to_dot(g).splitlines()
    assert lines[0] == "digraph lineage {" and lines[-1] == "}"
    nodes = {m[1]: (json.loads(m[2]), m[3], bool(m[4])) for m in map(DOT_NODE.match, lines) if m}
    edges = [(m[1], m[2], json.loads(m[3])) for m in map(DOT_EDGE.match, lines) if m]
    assert len(lines) == 3 + len(nodes) + len(edges)  # header, node defaults, close
    by_key = {n["key"]: n for n in g["nodes"]}
    assert {k: label for k, (label, _, _) in nodes.items()} == {
        k: lineage_text.node_label(n) for k, n in by_key.items()
    }
    assert nodes["n0"][2] is True and not any(
        root for k, (_, _, root) in nodes.items() if k != "n0"
    )
    assert nodes["n4"][1] == "base_model" and nodes["n5"][1] == "private"
    assert {(a, b) for a, b, _ in edges} == edge_set(g)
    assert ("n2", "n0", "combined_from w=0.3") in edges


def _boxes(root: ET.Element) -> dict[str, tuple[float, float, float, float]]:
    out = {}
    for g in root.iter(f"{SVG}g"):
        if g.get("class") == "node":
            rect = g.find(f"{SVG}rect")
            assert rect is not None
            out[g.get("data-key")] = tuple(
                float(rect.get(a)) for a in ("x", "y", "width", "height")
            )
    return out


def _overlap(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    return ax < bx + bw and bx < ax + aw and ay < by + bh and by < ay + ah


@pytest.mark.parametrize(
    "g",
    [diamond(), fan(1), fan(25), random_dag(40, seed=1), random_dag(60, seed=7)],
    ids=["diamond", "single", "fan25", "dag40", "dag60"],
)
def test_the_svg_parses_and_draws_every_node_and_edge_without_overlap(g: dict[str, Any]) -> None:
    text = lineage_graph.render_svg(g)
    root = ET.fromstring(text)
    assert root.tag == f"{SVG}svg"
    boxes = _boxes(root)
    assert set(boxes) == {n["key"] for n in g["nodes"]}
    edges = [x for x in root.iter(f"{SVG}g") if x.get("class") == "edge"]
    assert len(edges) == len(g["edges"])
    assert {(e.get("data-from"), e.get("data-to")) for e in edges} == edge_set(g)
    keys = sorted(boxes)
    for i, a in enumerate(keys):
        for b in keys[i + 1 :]:
            assert not _overlap(boxes[a], boxes[b]), (a, boxes[a], b, boxes[b])
    # laid out in layers: every parent is drawn above the version derived from it
    for parent, child in edge_set(g):
        assert boxes[parent][1] + boxes[parent][3] <= boxes[child][1], (parent, child)
    width, height = float(root.get("width")), float(root.get("height"))
    assert all(
        x >= 0 and y >= 0 and x + w <= width and y + h <= height for x, y, w, h in boxes.values()
    )


def test_the_svg_escapes_labels_and_links_readable_versions_to_their_page() -> None:
    g = diamond()
    g["nodes"][1]["namespace"] = 'a"b<c'
    text = lineage_graph.render_svg(g)
    assert "<script>" not in text and 'a"b<c' not in text
    root = ET.fromstring(text)  # parses: every text and attribute was escaped
    labels = {
        g_.get("data-key"): "".join(g_.find(f"{SVG}text").itertext())
        for g_ in root.iter(f"{SVG}g")
        if g_.get("class") == "node"
    }
    assert labels["n4"] == f"base model {HOSTILE}"
    assert labels["n5"] == "(a private version)"
    edge_labels = sorted("".join(t.itertext()) for t in root.iter(f"{SVG}text"))
    assert "combined_from w=0.7" in edge_labels and "combined_from w=0.3" in edge_labels
    links = {a.get("href"): a.find(f"{SVG}g").get("data-key") for a in root.iter(f"{SVG}a")}
    assert links == {
        "/adapters/default/d/versions/1": "n0",
        "/adapters/a%22b%3Cc/b/versions/1": "n1",
        "/adapters/default/c/versions/1": "n2",
        "/adapters/default/a/versions/1": "n3",
        "/base-models/" + quote(HOSTILE, safe="/"): "n4",
    }
    kinds = {
        g_.get("data-key"): g_.get("data-kind")
        for g_ in root.iter(f"{SVG}g")
        if g_.get("data-kind")
    }
    assert kinds["n4"] == "base_model" and kinds["n5"] == "private" and kinds["n0"] == "version"
    fills = {
        g_.get("data-key"): g_.find(f"{SVG}rect").get("fill")
        for g_ in root.iter(f"{SVG}g")
        if g_.get("class") == "node"
    }
    assert fills["n0"] == lineage_graph.KIND_COLOURS["version"] != fills["n4"] != fills["n5"]


@pytest.mark.parametrize(
    "g",
    [fan(2), fan(6), diamond(), random_dag(12, 3)],
    ids=["fan2", "fan6", "diamond", "dag12"],
)
def test_no_two_edge_labels_of_the_svg_overlap(g) -> None:
    root = ET.fromstring(lineage_graph.render_svg(g))
    boxes = []
    for group in root.iter(f"{SVG}g"):
        if group.get("class") != "edge":
            continue
        text = group.find(f"{SVG}text")
        x, y = float(text.get("x")), float(text.get("y"))
        width = len("".join(text.itertext())) * lineage_graph.LABEL_CHAR_WIDTH
        boxes.append((x, y, width))
    assert len(boxes) == len(g["edges"])
    for i, (x, y, w) in enumerate(boxes):
        for px, py, pw in boxes[:i]:
            overlap_x = x < px + pw and px < x + w
            assert not (overlap_x and abs(y - py) < lineage_graph.LABEL_HEIGHT), (
                boxes[i],
                (px, py),
            )
    # every label is inside the drawing
    width, height = float(root.get("width")), float(root.get("height"))
    assert all(x + w <= width and y <= height for x, y, w in boxes)


def test_svgs_drawn_at_once_in_threads_are_each_drawn_in_full() -> None:
    # grandalf keeps Tarjan's counter on the Vertex class (set, then deleted, per
    # layout): pages are rendered in a thread pool, so concurrent layouts must not
    # share it (the web lineage page answered 500 under 16 connections)
    from concurrent.futures import ThreadPoolExecutor

    chain = graph(
        [node(f"n{i}", f"default/chain-v{50 - i}") for i in range(50)],
        [(i, i + 1, "continued_from", {}) for i in range(49)],
    )
    expected = lineage_graph.render_svg(chain)
    with ThreadPoolExecutor(max_workers=8) as pool:
        drawn = list(pool.map(lambda _: lineage_graph.render_svg(chain), range(64)))
    assert drawn == [expected] * 64
