"""Lineage: the parents of a version or base model, and its lineage graph both ways.

An edge is ``child <- parent`` with a relation (``trained_from``,
``combined_from``, ``compressed_from``, ``merged_into``, ...) and parameters.
A parent version in a private namespace the caller cannot read is shown
without its ref or digest (``"private": true``): its existence in the chain is
a fact about the child, its name is not the caller's to know.

A version mirrored from an upstream Hub (``mirrored_from``) has an ``upstream``
parent: a row of ``upstream_commits``, shown as ``{"kind": "upstream", "ref":
"hf://<repo>@<commit>", "digest": null}`` (the edge's params name the hub URL,
repo, commit and requested revision). It has no parents of its own.

:func:`ancestry` walks the graph from a root to its parents (``up``), to the versions
and base models derived from it (``down``) or both, in one recursive SQL statement
plus one statement per node kind for the node facts (``registry.services.lineage_walk``);
:func:`dependents` is the downward walk for the registry's own checks (delete).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlmodel import Session, col, select

from loreg.hub_refs import format_upstream
from loreg.refs import format_ref
from loreg.vocabulary import LineageDirection, LineageNodeKind
from registry.auth import Principal
from registry.errors import InvalidRequest
from registry.models import (
    Adapter,
    BaseModelRecord,
    LineageEdge,
    Namespace,
    UpstreamCommit,
    Version,
)
from registry.services import lineage_walk
from registry.services.repair import render

#: The most edges one lineage answer lists (then ``truncated: true``).
MAX_ANCESTRY_EDGES = 2000
#: The deepest walk ``depth`` may ask for (and the default): edges from the root.
MAX_LINEAGE_DEPTH = 256

Node = tuple[str, int]  # ("version" | "base_model" | "upstream", id)


def node_of(row: Version | BaseModelRecord) -> Node:
    """The lineage node of a stored version or base model."""
    if row.id is None:
        raise ValueError("a row not written to the database yet has no lineage node")
    return ("base_model" if isinstance(row, BaseModelRecord) else "version", row.id)


@dataclass(frozen=True)
class NodeFacts:
    """A lineage node's full view and, for a version, its namespace and whether that
    namespace is private: what :func:`shown_to` needs to decide what a caller sees."""

    view: dict[str, Any]
    namespace: str | None = None
    private: bool = False


_HIDDEN_VERSION = {"kind": "version", "ref": None, "digest": None, "private": True}


def hidden_from(namespace: str | None, private: bool, principal: Principal | None) -> bool:
    """Whether a version in ``namespace`` is hidden from ``principal``: a private namespace
    it cannot read (``principal`` None reads no private namespace)."""
    return private and (
        principal is None or namespace is None or not principal.can(namespace, "read")
    )


def shown_to(facts: NodeFacts, principal: Principal | None) -> dict[str, Any]:
    """The node as ``principal`` may see it: a private namespace's version it cannot read
    is shown without ref or digest (``principal`` None reads no private namespace)."""
    if hidden_from(facts.namespace, facts.private, principal):
        return dict(_HIDDEN_VERSION)
    return dict(facts.view)


def node_facts(session: Session, node: Node) -> NodeFacts:
    """The full view of a node (ref, digest) with the facts that decide who may see it."""
    kind, node_id = node
    # nodes come from rows and foreign keys, so every lookup below finds its row
    if kind == LineageNodeKind.UPSTREAM:
        up = session.get(UpstreamCommit, node_id)
        assert up is not None
        ref = format_upstream(up.repo_id, up.commit)
        kind_word = LineageNodeKind.UPSTREAM.value
        return NodeFacts({"kind": kind_word, "ref": ref, "digest": None, "private": False})
    if kind == "base_model":
        bm = session.get(BaseModelRecord, node_id)
        assert bm is not None
        return NodeFacts(
            {"kind": "base_model", "ref": bm.name, "digest": bm.digest, "private": False}
        )
    version = session.get(Version, node_id)
    assert version is not None
    adapter = session.get(Adapter, version.adapter_id)
    assert adapter is not None
    ns = session.get(Namespace, adapter.namespace_id)
    assert ns is not None
    view = {
        "kind": "version",
        "ref": format_ref(ns.name, adapter.name, version=version.number),
        "digest": version.digest,
        "private": False,
    }
    return NodeFacts(view, namespace=ns.name, private=ns.private)


def _node_view(session: Session, node: Node, principal: Principal | None) -> dict[str, Any]:
    return shown_to(node_facts(session, node), principal)


def _edges(session: Session, node: Node) -> list[LineageEdge]:
    kind, node_id = node
    if kind == LineageNodeKind.UPSTREAM:
        return []  # the upstream's own history is the upstream's
    column = LineageEdge.child_version_id if kind == "version" else LineageEdge.child_base_model_id
    query = select(LineageEdge).where(column == node_id).order_by(col(LineageEdge.id))
    return list(session.exec(query))


def _parent(edge: LineageEdge) -> Node:
    if edge.parent_version_id is not None:
        return ("version", edge.parent_version_id)
    if edge.parent_upstream_id is not None:
        return (LineageNodeKind.UPSTREAM.value, edge.parent_upstream_id)
    assert edge.parent_base_model_id is not None  # every writer sets one parent
    return ("base_model", edge.parent_base_model_id)


@dataclass(frozen=True)
class ParentFacts:
    """One direct lineage edge of a node, before deciding what a caller may see."""

    relation: str
    parent: NodeFacts
    params: dict[str, Any]


def parent_facts(session: Session, node: Node) -> list[ParentFacts]:
    """The direct lineage edges of a node with the facts of each parent, in edge order.

    Edges and the nodes they name never change once written, so this may be cached
    per node; :func:`parents_view` turns it into what one caller sees.
    """
    return [
        ParentFacts(edge.relation, node_facts(session, _parent(edge)), render(edge.params) or {})
        for edge in _edges(session, node)
    ]


def parents_view(facts: list[ParentFacts], principal: Principal | None) -> list[dict[str, Any]]:
    """``{relation, parent, params}`` per edge, as ``principal`` may see them."""
    return [
        {"relation": f.relation, "parent": shown_to(f.parent, principal), "params": f.params}
        for f in facts
    ]


def parents_of(
    session: Session, node: Node, principal: Principal | None = None
) -> list[dict[str, Any]]:
    """The direct lineage edges of a node: ``{relation, parent, params}`` each."""
    return parents_view(parent_facts(session, node), principal)


_HIDDEN_GRAPH_NODE = {
    **_HIDDEN_VERSION,
    "namespace": None,
    "name": None,
    "version": None,
}


def _graph_view(facts: lineage_walk.Facts, principal: Principal | None, key: str) -> dict[str, Any]:
    if hidden_from(facts.namespace, facts.private, principal):
        return {"key": key, **_HIDDEN_GRAPH_NODE}
    return {"key": key, **facts.view}


def _directions(direction: LineageDirection) -> list[LineageDirection]:
    if direction == LineageDirection.BOTH:
        return [LineageDirection.UP, LineageDirection.DOWN]
    return [direction]


def ancestry(
    session: Session,
    root: Node,
    principal: Principal | None,
    limit: int = MAX_ANCESTRY_EDGES,
    *,
    direction: LineageDirection = LineageDirection.UP,
    depth: int = MAX_LINEAGE_DEPTH,
) -> dict[str, Any]:
    """The lineage graph around ``root``: every edge within ``depth`` of it going to parents
    (``up``), to dependents (``down``) or both, nearest first.

    Returns ``{"root", "direction", "depth", "nodes", "edges": [{child, relation, parent,
    params, direction, depth}], "truncated", "depth_limited"}``; every node carries a
    ``key`` unique in this answer (``n0`` is the root). A version in a private namespace
    the caller cannot read is shown without ref or digest and the walk does not go on
    through it, either way. At most ``limit`` edges (then ``truncated``); ``depth_limited``
    says edges exist past ``depth``. One SQL statement walks the graph, at most three more
    read the facts of all its nodes.
    """
    if not 1 <= depth <= MAX_LINEAGE_DEPTH:
        raise InvalidRequest(f"depth must be between 1 and {MAX_LINEAGE_DEPTH}, not {depth}")
    found = lineage_walk.walk(session, [root], _directions(direction), depth, principal, limit)
    order: dict[Node, str] = {root: "n0"}
    for edge in found.edges:
        near, far = (
            (edge.child, edge.parent)
            if edge.direction == LineageDirection.UP
            else (edge.parent, edge.child)
        )
        for node in (near, far):
            order.setdefault(node, f"n{len(order)}")
    facts = lineage_walk.node_facts(session, order)
    views = {node: _graph_view(facts[node], principal, key) for node, key in order.items()}
    edges = [
        {
            "child": views[e.child],
            "relation": e.relation,
            "parent": views[e.parent],
            "params": render(e.params) or {},
            "direction": e.direction.value,
            "depth": e.depth,
        }
        for e in found.edges
    ]
    return {
        "root": views[root],
        "direction": LineageDirection(direction).value,
        "depth": depth,
        "nodes": list(views.values()),
        "edges": edges,
        "truncated": found.truncated,
        "depth_limited": found.depth_limited,
    }


@dataclass(frozen=True)
class Dependent:
    """A version or base model whose lineage goes through one of the walked versions."""

    kind: str  # "version" | "base_model"
    id: int
    ref: str  # canonical version ref or base model name, whoever may read it
    depth: int  # 1 = derived directly from one of them


def dependents(
    session: Session, version_ids: Iterable[int], *, limit: int = MAX_ANCESTRY_EDGES
) -> list[Dependent]:
    """Every version and base model derived, directly or not, from any of ``version_ids``,
    nearest first (the versions themselves are left out).

    For the registry's own checks (e.g. refusing a delete): private namespaces do not
    stop this walk, so do not show its refs to a caller who may not read them. One SQL
    statement walks, two more name the dependents; at most ``limit`` edges are followed
    (a cut walk still names the nearest dependents), up to :data:`MAX_LINEAGE_DEPTH`.
    """
    start = {int(v) for v in version_ids}
    if not start:
        return []
    roots = [(LineageNodeKind.VERSION.value, v) for v in sorted(start)]
    found = lineage_walk.walk(
        session,
        roots,
        [LineageDirection.DOWN],
        MAX_LINEAGE_DEPTH,
        None,
        limit,
        private_stops=False,
    )
    nearest: dict[Node, int] = {}
    for edge in found.edges:
        if edge.child[0] == LineageNodeKind.VERSION and edge.child[1] in start:
            continue
        nearest.setdefault(edge.child, edge.depth)
    facts = lineage_walk.node_facts(session, nearest)
    return [
        Dependent(kind=node[0], id=node[1], ref=str(facts[node].view["ref"]), depth=depth)
        for node, depth in sorted(nearest.items(), key=lambda item: (item[1], item[0]))
    ]
