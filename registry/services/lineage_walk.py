"""The lineage walk in SQL: one recursive CTE per direction, then the facts of every node.

A node is ``(kind, id)``; in SQL the kind is a small integer (:data:`KIND_CODES`), so
the CTE's columns have one type on Postgres and SQLite alike. The walk starts at the
root rows, and each step follows ``lineage_edges`` one edge, to parents (``up``) or to
children (``down``), carrying the distance from the root and whether the walk may go
on through the node reached (``open``): a version in a private namespace the caller
cannot read is reached (the edge to it is a fact about its neighbour) but not walked
through. Which namespaces the caller reads is a parameter of the statement, so the
decision is made inside the CTE, not by filtering its result.

The CTE terminates on any data: every step adds one to the depth and no step starts
from a node at ``max_depth`` (lineage has no cycles by construction, but the bound
does not rely on it), and at most :data:`MAX_WALK_ROWS` rows are read from it (both
databases produce a recursive CTE's rows level by level and stop when the reader stops).

The facts of all nodes named by the edges (ref, digest, namespace and its privacy)
are then read in at most three statements: versions with their adapters and
namespaces, base models, upstream commits. Nothing here issues a query per node.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col

from loreg.hub_refs import format_upstream
from loreg.refs import format_ref
from loreg.vocabulary import SCOPE_LEVELS, LineageDirection, LineageNodeKind, Scope
from registry.auth import ALL_NAMESPACES, Principal
from registry.models import (
    Adapter,
    BaseModelRecord,
    LineageEdge,
    Namespace,
    UpstreamCommit,
    Version,
)

#: The kind of a node as the CTE stores it.
KIND_CODES: dict[str, int] = {
    LineageNodeKind.VERSION.value: 1,
    LineageNodeKind.BASE_MODEL.value: 2,
    LineageNodeKind.UPSTREAM.value: 3,
}
_VERSION = KIND_CODES[LineageNodeKind.VERSION.value]
_BASE = KIND_CODES[LineageNodeKind.BASE_MODEL.value]
_UPSTREAM = KIND_CODES[LineageNodeKind.UPSTREAM.value]

#: The most rows one walk reads from its CTE (rows are (node, depth) pairs, so a
#: walk of a few thousand edges reads a few thousand); past it the answer is truncated.
MAX_WALK_ROWS = 20_000

Node = tuple[str, int]  # ("version" | "base_model" | "upstream", id)


def readable_namespaces(principal: Principal | None) -> frozenset[str] | None:
    """The namespaces ``principal`` may read, or None when it reads every namespace.

    The same rule as :meth:`Principal.can` with scope ``read``, as a set for SQL.
    """
    if principal is None:
        return frozenset()
    read = SCOPE_LEVELS[Scope.READ]
    names = frozenset(ns for ns, level in principal.grants.items() if level >= read)
    return None if ALL_NAMESPACES in names else names


def _int(value: Any) -> Any:
    return sa.cast(value, sa.Integer)


@dataclass(frozen=True)
class WalkEdge:
    """One edge the walk found: ``child`` was derived from ``parent``."""

    edge_id: int
    direction: LineageDirection
    depth: int  # distance from the root of the edge's far end (1 = a direct neighbour)
    child: Node
    parent: Node
    relation: str
    params: Any


_EDGES = LineageEdge.__table__  # type: ignore[attr-defined]  # SQLModel's Core table


class _Readable:
    """How the statement decides which private namespaces the caller reads."""

    ALL = "all"  # every namespace (admin, jobs, the registry's own checks)
    PUBLIC = "public"  # public namespaces only (anonymous, no read grant)
    LISTED = "listed"  # public ones and those bound to ``:readable``


def _readable_mode(readable: frozenset[str] | None) -> str:
    if readable is None:
        return _Readable.ALL
    return _Readable.LISTED if readable else _Readable.PUBLIC


def _passable(mode: str) -> Any:
    """SQL: may the walk go on through the version whose namespace is joined as ``Namespace``."""
    if mode == _Readable.ALL:
        return sa.true()
    public = sa.not_(col(Namespace.private))
    if mode == _Readable.PUBLIC:
        return public
    return sa.or_(public, col(Namespace.name).in_(sa.bindparam("readable", expanding=True)))


def _roots(kind: str) -> Any:
    """The non-recursive term: the rows named by ``:root_ids``, at depth 0, walked through."""
    table = Version if kind == LineageNodeKind.VERSION else BaseModelRecord
    return sa.select(
        _int(sa.literal(KIND_CODES[kind])).label("kind"),
        col(table.id).label("node_id"),
        _int(sa.literal(0)).label("depth"),
        sa.true().label("open"),
    ).where(col(table.id).in_(sa.bindparam("root_ids", expanding=True)))


def _walk(direction: LineageDirection, kind: str, mode: str) -> Any:
    """The recursive CTE of one direction, read through a row bound (a subquery)."""
    name = f"walk_{direction.value}"
    walk = _roots(kind).cte(name, recursive=True)
    edge = _EDGES.alias(f"edge_{direction.value}")
    if direction == LineageDirection.UP:
        near_version, near_base = edge.c.child_version_id, edge.c.child_base_model_id
        far_version = edge.c.parent_version_id
        far_kind = sa.case(
            (edge.c.parent_version_id.is_not(None), _VERSION),
            (edge.c.parent_base_model_id.is_not(None), _BASE),
            else_=_UPSTREAM,
        )
        far_id = sa.func.coalesce(
            edge.c.parent_version_id, edge.c.parent_base_model_id, edge.c.parent_upstream_id
        )
    else:
        near_version, near_base = edge.c.parent_version_id, edge.c.parent_base_model_id
        far_version = edge.c.child_version_id
        far_kind = sa.case((edge.c.child_version_id.is_not(None), _VERSION), else_=_BASE)
        far_id = sa.func.coalesce(edge.c.child_version_id, edge.c.child_base_model_id)
    attach = sa.or_(
        sa.and_(walk.c.kind == _VERSION, near_version == walk.c.node_id),
        sa.and_(walk.c.kind == _BASE, near_base == walk.c.node_id),
    )
    # a far node that is not a version has no namespace: base models are walked through,
    # an upstream commit has no edges of its own to walk
    far_open = sa.case((far_version.is_(None), sa.true()), else_=_passable(mode))
    step = (
        sa.select(
            _int(far_kind), _int(far_id), _int(walk.c.depth + 1), sa.cast(far_open, sa.Boolean)
        )
        .select_from(walk)
        .join(edge, attach)
        .outerjoin(Version, col(Version.id) == far_version)
        .outerjoin(Adapter, col(Adapter.id) == col(Version.adapter_id))
        .outerjoin(Namespace, col(Namespace.id) == col(Adapter.namespace_id))
        .where(walk.c.open, walk.c.depth < sa.bindparam("max_depth", type_=sa.Integer))
    )
    walk = walk.union(step)
    return sa.select(walk).limit(MAX_WALK_ROWS).subquery(f"{name}_bounded")


def _edges_select(direction: LineageDirection, kind: str, mode: str) -> Any:
    """The edges out of every open node of one walk, with the node's depth and the
    number of rows the walk read (equal to :data:`MAX_WALK_ROWS` when it was cut)."""
    bounded = _walk(direction, kind, mode)
    # the bounded walk is read once (a second reader would make SQLite materialize the
    # whole CTE before any LIMIT applies): the row count comes from a window over it
    nodes = (
        sa.select(
            bounded.c.kind,
            bounded.c.node_id,
            sa.func.min(bounded.c.depth).label("depth"),
            sa.func.min(_int(bounded.c.open)).label("open"),
            sa.func.sum(sa.func.count()).over().label("walked"),
        )
        .group_by(bounded.c.kind, bounded.c.node_id)
        .subquery(f"nodes_{direction.value}")
    )
    edge = _EDGES.alias(f"out_{direction.value}")
    near_version, near_base = (
        (edge.c.child_version_id, edge.c.child_base_model_id)
        if direction == LineageDirection.UP
        else (edge.c.parent_version_id, edge.c.parent_base_model_id)
    )
    attach = sa.or_(
        sa.and_(nodes.c.kind == _VERSION, near_version == nodes.c.node_id),
        sa.and_(nodes.c.kind == _BASE, near_base == nodes.c.node_id),
    )
    return (
        sa.select(
            _int(sa.literal(0 if direction == LineageDirection.UP else 1)).label("way"),
            _int(nodes.c.depth + 1).label("depth"),
            edge.c.id.label("edge_id"),
            edge.c.child_version_id,
            edge.c.child_base_model_id,
            edge.c.parent_version_id,
            edge.c.parent_base_model_id,
            edge.c.parent_upstream_id,
            edge.c.relation,
            edge.c.params,
            _int(nodes.c.walked).label("walked"),
        )
        .select_from(nodes)
        .join(edge, attach)
        .where(nodes.c.open == 1)
    )


@functools.lru_cache(maxsize=32)
def walk_statement(directions: tuple[LineageDirection, ...], kind: str, mode: str) -> Any:
    """The one statement of a walk, built once per shape; its parameters are ``root_ids``,
    ``max_depth``, ``row_limit`` and (mode ``listed``) ``readable``."""
    parts = [_edges_select(d, kind, mode) for d in directions]
    query: Any = parts[0] if len(parts) == 1 else sa.union_all(*parts)
    query = query.order_by(sa.text("way"), sa.text("depth"), sa.text("edge_id"))
    return query.limit(sa.bindparam("row_limit", type_=sa.Integer))


def _child(row: Any) -> Node:
    if row.child_version_id is not None:
        return (LineageNodeKind.VERSION.value, row.child_version_id)
    return (LineageNodeKind.BASE_MODEL.value, row.child_base_model_id)


def _parent(row: Any) -> Node:
    if row.parent_version_id is not None:
        return (LineageNodeKind.VERSION.value, row.parent_version_id)
    if row.parent_upstream_id is not None:
        return (LineageNodeKind.UPSTREAM.value, row.parent_upstream_id)
    return (LineageNodeKind.BASE_MODEL.value, row.parent_base_model_id)


@dataclass(frozen=True)
class WalkResult:
    """What one walk statement found: edges nearest first, and whether it was cut short."""

    edges: list[WalkEdge]
    truncated: bool  # the edge limit or the walk's row bound cut it
    depth_limited: bool  # there are edges past ``max_depth``


def walk(
    session: Session,
    roots: Iterable[Node],
    directions: Sequence[LineageDirection],
    max_depth: int,
    principal: Principal | None,
    limit: int,
    *,
    private_stops: bool = True,
) -> WalkResult:
    """Every edge within ``max_depth`` of ``roots`` in each of ``directions``, in ONE statement.

    Edges come nearest first (by depth, then by edge id), at most ``limit`` of them.
    With ``private_stops`` (the default) the walk does not go through a version in a
    private namespace ``principal`` cannot read; without it every edge is followed (for
    the registry's own checks, never shown to a caller as is).
    All roots must be of one kind (versions or base models).
    """
    root_list = list(roots)
    kinds = {kind for kind, _ in root_list}
    if len(kinds) != 1 or not kinds <= {LineageNodeKind.VERSION, LineageNodeKind.BASE_MODEL}:
        raise ValueError("a walk starts from versions or from base models, one kind at a time")
    (kind,) = kinds
    ids = sorted({node_id for _, node_id in root_list})
    readable = readable_namespaces(principal) if private_stops else None
    mode = _readable_mode(readable)
    params: dict[str, Any] = {"root_ids": ids, "max_depth": max_depth, "row_limit": limit + 1}
    if mode == _Readable.LISTED:
        params["readable"] = sorted(readable or ())
    rows = session.execute(walk_statement(tuple(directions), kind, mode), params).all()
    edges: list[WalkEdge] = []
    truncated = depth_limited = False
    for row in rows:
        if row.walked >= MAX_WALK_ROWS:
            truncated = True
        if row.depth > max_depth:
            depth_limited = True
            continue
        if len(edges) >= limit:
            truncated = True
            continue
        edges.append(
            WalkEdge(
                edge_id=row.edge_id,
                direction=LineageDirection.UP if row.way == 0 else LineageDirection.DOWN,
                depth=row.depth,
                child=_child(row),
                parent=_parent(row),
                relation=row.relation,
                params=row.params,
            )
        )
    return WalkResult(edges, truncated, depth_limited)


@dataclass(frozen=True)
class Facts:
    """A node's full view and, for a version, its namespace and its privacy."""

    view: dict[str, Any]
    namespace: str | None = None
    private: bool = False


def node_facts(session: Session, nodes: Iterable[Node]) -> dict[Node, Facts]:
    """The facts of every node, in at most three statements (one per kind present)."""
    wanted: dict[str, set[int]] = {}
    for kind, node_id in nodes:
        wanted.setdefault(kind, set()).add(node_id)
    out: dict[Node, Facts] = {}
    version_ids = sorted(wanted.get(LineageNodeKind.VERSION.value, ()))
    if version_ids:
        rows = session.execute(
            sa.select(
                col(Version.id),
                col(Version.number),
                col(Version.digest),
                col(Adapter.name),
                col(Namespace.name).label("namespace"),
                col(Namespace.private),
            )
            .join(Adapter, col(Adapter.id) == col(Version.adapter_id))
            .join(Namespace, col(Namespace.id) == col(Adapter.namespace_id))
            .where(col(Version.id).in_(version_ids))
        ).all()
        for r in rows:
            view = {
                "kind": LineageNodeKind.VERSION.value,
                "ref": format_ref(r.namespace, r.name, version=r.number),
                "digest": r.digest,
                "private": False,
                "namespace": r.namespace,
                "name": r.name,
                "version": r.number,
            }
            out[(LineageNodeKind.VERSION.value, r.id)] = Facts(view, r.namespace, r.private)
    base_ids = sorted(wanted.get(LineageNodeKind.BASE_MODEL.value, ()))
    if base_ids:
        query = sa.select(
            col(BaseModelRecord.id), col(BaseModelRecord.name), col(BaseModelRecord.digest)
        ).where(col(BaseModelRecord.id).in_(base_ids))
        for r in session.execute(query).all():
            out[(LineageNodeKind.BASE_MODEL.value, r.id)] = Facts(
                _plain(LineageNodeKind.BASE_MODEL, r.name, r.digest)
            )
    upstream_ids = sorted(wanted.get(LineageNodeKind.UPSTREAM.value, ()))
    if upstream_ids:
        query = sa.select(
            col(UpstreamCommit.id), col(UpstreamCommit.repo_id), col(UpstreamCommit.commit)
        ).where(col(UpstreamCommit.id).in_(upstream_ids))
        for r in session.execute(query).all():
            ref = format_upstream(r.repo_id, r.commit)
            out[(LineageNodeKind.UPSTREAM.value, r.id)] = Facts(
                _plain(LineageNodeKind.UPSTREAM, ref, None)
            )
    return out


def _plain(kind: LineageNodeKind, ref: str, digest: str | None) -> dict[str, Any]:
    return {
        "kind": kind.value,
        "ref": ref,
        "digest": digest,
        "private": False,
        "namespace": None,
        "name": None,
        "version": None,
    }


__all__ = [
    "KIND_CODES",
    "MAX_WALK_ROWS",
    "Facts",
    "WalkEdge",
    "WalkResult",
    "node_facts",
    "readable_namespaces",
    "walk",
]
