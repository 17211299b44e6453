"""Lineage: the parents of a version or base model, and its whole ancestry.

An edge is ``child <- parent`` with a relation (``trained_from``,
``combined_from``, ``compressed_from``, ``merged_into``, ...) and parameters.
A parent version in a private namespace the caller cannot read is shown
without its ref or digest (``"private": true``): its existence in the chain is
a fact about the child, its name is not the caller's to know.

A version mirrored from an upstream Hub (``mirrored_from``) has an ``upstream``
parent: a row of ``upstream_commits``, shown as ``{"kind": "upstream", "ref":
"hf://<repo>@<commit>", "digest": null}`` (the edge's params name the hub URL,
repo, commit and requested revision). It has no parents of its own.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

from sqlmodel import Session, col, select

from loreg.hub_refs import format_upstream
from loreg.refs import format_ref
from loreg.vocabulary import LineageNodeKind
from registry.auth import Principal
from registry.models import (
    Adapter,
    BaseModelRecord,
    LineageEdge,
    Namespace,
    UpstreamCommit,
    Version,
)
from registry.services.repair import render

MAX_ANCESTRY_EDGES = 2000

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


def shown_to(facts: NodeFacts, principal: Principal | None) -> dict[str, Any]:
    """The node as ``principal`` may see it: a private namespace's version it cannot read
    is shown without ref or digest (``principal`` None reads no private namespace)."""
    if facts.private and (
        principal is None or facts.namespace is None or not principal.can(facts.namespace, "read")
    ):
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


def ancestry(
    session: Session, root: Node, principal: Principal | None, limit: int = MAX_ANCESTRY_EDGES
) -> dict[str, Any]:
    """Every edge reachable from ``root`` going to parents, breadth first.

    Returns ``{"root": node, "edges": [{child, relation, parent, params}],
    "truncated": bool}``. Each node is visited once; a private parent the
    caller cannot read ends its branch (its own parents are not shown).
    """
    out: list[dict[str, Any]] = []
    seen = {root}
    todo: deque[Node] = deque([root])
    views: dict[Node, dict[str, Any]] = {root: _node_view(session, root, principal)}
    truncated = False
    while todo and not truncated:
        child = todo.popleft()
        for edge in _edges(session, child):
            if len(out) >= limit:
                truncated = True
                break
            parent = _parent(edge)
            if parent not in views:
                views[parent] = _node_view(session, parent, principal)
            out.append(
                {
                    "child": views[child],
                    "relation": edge.relation,
                    "parent": views[parent],
                    "params": render(edge.params) or {},
                }
            )
            if parent not in seen and not views[parent].get("private"):
                seen.add(parent)
                todo.append(parent)
    return {"root": views[root], "edges": out, "truncated": truncated}
