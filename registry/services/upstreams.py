"""Upstream Hub commits as lineage parents, and the versions mirrored from them.

A ``mirror_import`` job records the upstream commit it copied as a row of
``upstream_commits`` (one per hub URL, repo and commit) and links the version it
publishes to it with a ``mirrored_from`` edge. :func:`mirrored_version` is the
question every sync asks first: is this commit already in that adapter?
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlmodel import Session, col, select

from loreg.refs import format_ref
from loreg.vocabulary import Relation
from registry.models import Adapter, LineageEdge, Namespace, UpstreamCommit, Version


@dataclass(frozen=True)
class MirroredVersion:
    """A version of the target adapter already mirrored from an upstream commit."""

    ref: str
    number: int
    digest: str
    job_id: str | None


def upstream_commit_id(session: Session, hub_url: str, repo_id: str, commit: str) -> int:
    """The id of the ``upstream_commits`` row of this commit, inserted if new.

    Safe under concurrency: a racing insert of the same row loses on the unique
    constraint and reads the winner's row. Commits the session.
    """
    query = select(UpstreamCommit.id).where(
        UpstreamCommit.hub_url == hub_url,
        UpstreamCommit.repo_id == repo_id,
        UpstreamCommit.commit == commit,
    )
    found = session.exec(query).first()
    if found is not None:
        return found
    row = UpstreamCommit(hub_url=hub_url, repo_id=repo_id, commit=commit)
    session.add(row)
    try:
        session.commit()
    except sa.exc.IntegrityError:
        session.rollback()
        found = session.exec(query).first()
        if found is None:
            raise
        return found
    assert row.id is not None  # committed
    return row.id


def mirrored_version(
    session: Session, namespace: str, name: str, upstream_id: int
) -> MirroredVersion | None:
    """The version of ``namespace/name`` with a ``mirrored_from`` edge to that commit, if any."""
    found = session.exec(
        select(Version, Adapter.name, Namespace.name)
        .join(LineageEdge, col(LineageEdge.child_version_id) == Version.id)
        .join(Adapter, col(Adapter.id) == Version.adapter_id)
        .join(Namespace, col(Namespace.id) == Adapter.namespace_id)
        .where(
            Namespace.name == namespace,
            Adapter.name == name,
            LineageEdge.parent_upstream_id == upstream_id,
            LineageEdge.relation == Relation.MIRRORED_FROM.value,
        )
        .order_by(col(Version.number))
    ).first()
    if found is None:
        return None
    version, adapter_name, ns_name = found
    return MirroredVersion(
        ref=format_ref(ns_name, adapter_name, version=version.number),
        number=version.number,
        digest=version.digest,
        job_id=version.job_id,
    )
