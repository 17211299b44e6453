"""Phase 3 of a publish: validate the content, then write the version (or base model).

:func:`commit_upload` validates outside any write transaction
(:mod:`registry.services.publish.checks`), then inserts the version, its files and
its lineage in one transaction; the same manifest digest (or the same job id)
again returns the existing version. Concurrent commits to one adapter race for
the next version number: the loser retries.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, func, select

from loreg.vocabulary import ArtifactKind, Relation
from registry.auth import Principal, check_visible, require_scope
from registry.errors import Conflict
from registry.models import (
    Adapter,
    BaseModelFile,
    BaseModelRecord,
    Namespace,
    UploadSession,
    Version,
    VersionFile,
    utcnow,
)
from registry.services import audit, cards, catalog, search_index
from registry.services.base_models import base_model_view
from registry.services.context import Context
from registry.services.publish.checks import Validated, validate
from registry.services.publish.specs import ParentLink, parse_relation
from registry.services.publish.uploads import check_upload_id, open_upload

#: Rounds of the race for the next version number before a commit gives up (409).
COMMIT_ATTEMPTS = 25

View = dict[str, Any]


def commit_upload(
    ctx: Context, principal: Principal, upload_id: str, base_url: str
) -> tuple[bool, View]:
    """Phase 3: validate content, then write the version (or base model) atomically.

    Returns ``(created, view)``; ``created`` is False when the same digest already exists.
    """
    check_upload_id(upload_id)
    with Session(ctx.engine, expire_on_commit=False) as session:
        upload = session.get(UploadSession, upload_id)
        if upload is not None and upload.status == "committed" and upload.result:
            return False, committed_view(session, ctx, principal, upload, base_url)
        upload = open_upload(session, principal, upload_id)
        validated = validate(session, ctx, upload)
    for attempt in range(COMMIT_ATTEMPTS):
        try:
            with Session(ctx.engine, expire_on_commit=False) as session:
                upload = open_upload(session, principal, upload_id)
                base = upload.kind == ArtifactKind.BASE_MODEL
                write = write_base_model if base else write_version
                created, view = write(session, ctx, principal, upload, validated, base_url)
                session.commit()
                if created and not base:
                    _send_card_job(ctx, upload)
                return created, view
        except sa.exc.IntegrityError:
            # Another commit took the version number (or stored the same row) first;
            # each round lets at least one concurrent writer through, so retrying
            # with a jittered pause converges.
            if attempt == COMMIT_ATTEMPTS - 1:
                raise Conflict("the adapter changed concurrently; retry the commit") from None
            time.sleep(random.uniform(0, min(0.01 * 2**attempt, 0.25)))
    raise AssertionError("unreachable")  # pragma: no cover


def _send_card_job(ctx: Context, upload: UploadSession) -> None:
    """Send the card job :func:`write_version` queued with the version (after the commit)."""
    assert upload.result is not None, "a committed upload records what it registered"
    with Session(ctx.engine) as session:
        job = cards.pending_job(session, upload.result["version_id"])
    if job is not None:
        cards.dispatch(ctx, [job])


def committed_view(
    session: Session, ctx: Context, principal: Principal, upload: UploadSession, base_url: str
) -> View:
    """The view of what an already committed upload registered (checked visible to the caller)."""
    result = upload.result
    assert result is not None, "a committed upload records what it registered"
    # the ids below are the upload's result and foreign keys: every lookup finds its row
    if upload.kind != ArtifactKind.BASE_MODEL:
        version = session.get(Version, result["version_id"])
        assert version is not None, "the version a committed upload registered"
        adapter = session.get(Adapter, version.adapter_id)
        assert adapter is not None, "the adapter of a version"
        ns = session.get(Namespace, adapter.namespace_id)
        assert ns is not None, "the namespace of an adapter"
        check_visible(principal, ns.name, ns.private)
        return catalog.version_view(session, ctx, ns, adapter, version, base_url, principal)
    bm = session.get(BaseModelRecord, result["base_model_id"])
    assert bm is not None, "the base model a committed upload registered"
    return base_model_view(session, ctx, bm, base_url)


# --------------------------------------------------------------------------- shared steps


def _row_id(row: Namespace | Adapter | Version | BaseModelRecord) -> int:
    """The id of a row read from the database or flushed to it (either way it has one)."""
    assert row.id is not None, f"a {type(row).__name__} row not flushed yet has no id"
    return row.id


def _mark_committed(session: Session, upload: UploadSession, result: dict[str, int]) -> None:
    """Close the upload session on what it registered (``version_id`` or ``base_model_id``)."""
    upload.status = "committed"
    upload.result = result
    session.add(upload)


def _job_links(upload: UploadSession) -> list[ParentLink]:
    """The lineage a trusted publisher handed in (:func:`negotiate`'s ``lineage``)."""
    return [ParentLink.from_spec(edge) for edge in upload.spec.get("lineage") or []]


def _insert_lineage(
    session: Session,
    links: Sequence[ParentLink],
    *,
    child_version_id: int | None = None,
    child_base_model_id: int | None = None,
) -> None:
    """One ``lineage_edges`` row per link, in order (their ids keep it)."""
    for link in links:
        session.add(
            link.edge(child_version_id=child_version_id, child_base_model_id=child_base_model_id)
        )


# --------------------------------------------------------------------------- versions


def write_version(
    session: Session,
    ctx: Context,
    principal: Principal,
    upload: UploadSession,
    v: Validated,
    base_url: str,
) -> tuple[bool, View]:
    """Register an adapter or dataset version (or find the one already there), in ``session``."""
    spec = upload.spec
    assert upload.namespace is not None, "an adapter or dataset upload names its namespace"
    ns = _namespace_for_write(session, principal, upload.namespace)
    adapter = _adapter_for_write(session, ns, upload.name, upload.kind)
    existing = _existing_version(session, adapter, v.digest, spec.get("job_id"))
    if existing is not None:
        _mark_committed(session, upload, {"version_id": _row_id(existing)})
        return False, catalog.version_view(session, ctx, ns, adapter, existing, base_url, principal)
    declared = _declared_parents(session, principal, spec)
    version = _insert_version(session, principal, adapter, v, spec)
    _insert_files(session, version, v.files)
    implied = (
        [ParentLink(Relation.TRAINED_FROM, base_model_id=v.base_model_id)]
        if v.base_model_id is not None
        else []
    )
    links = [*_job_links(upload), *implied, *declared]
    _insert_lineage(session, links, child_version_id=version.id)
    _touch_adapter(session, adapter, v, spec.get("description"))
    search_index.refresh_adapter(session, _row_id(adapter))
    cards.request_card(session, version, ns, adapter, principal.name)  # computed off the path
    _mark_committed(session, upload, {"version_id": _row_id(version)})
    audit.record(
        session,
        principal,
        "version.publish",
        namespace=ns.name,
        target=f"{adapter.name}-v{version.number}",
        before=None,
        after={
            "version": version.number,
            "digest": v.digest,
            "size": version.size,
            "kind": adapter.kind,
            "job_id": version.job_id,
        },
    )
    session.flush()
    return True, catalog.version_view(session, ctx, ns, adapter, version, base_url, principal)


def _namespace_for_write(session: Session, principal: Principal, name: str) -> Namespace:
    """The namespace, created (public) on first publish; the caller must hold write on it."""
    ns = catalog.get_namespace(session, name)
    if ns is None:
        ns = Namespace(name=name, private=False)
        session.add(ns)
        session.flush()
        audit.record(
            session,
            principal,
            "namespace.create",
            namespace=ns.name,
            before=None,
            after={"name": ns.name, "private": False},
        )
    require_scope(principal, ns.name, ns.private, "write")
    return ns


def _adapter_for_write(session: Session, ns: Namespace, name: str, kind: str) -> Adapter:
    """The adapter (or dataset) ``name`` in ``ns``, created on first publish.

    Conflict when the name holds the other kind.
    """
    adapter = session.exec(
        select(Adapter).where(Adapter.namespace_id == ns.id, Adapter.name == name)
    ).first()
    if adapter is None:
        adapter = Adapter(namespace_id=_row_id(ns), name=name, kind=kind)
        session.add(adapter)
        session.flush()
    elif adapter.kind != kind:
        raise Conflict(
            f"'{ns.name}/{adapter.name}' is a {adapter.kind}, not a {kind}: choose another name"
        )
    return adapter


def _existing_version(
    session: Session, adapter: Adapter, digest: str, job_id: str | None
) -> Version | None:
    """The version this publish already registered: the job's result, or the same content."""
    if job_id:  # a job's result is registered once, however often the job runs
        by_job = session.exec(select(Version).where(Version.job_id == job_id)).first()
        if by_job is not None:
            return by_job
    return session.exec(
        select(Version).where(Version.adapter_id == adapter.id, Version.digest == digest)
    ).first()


def _declared_parents(
    session: Session, principal: Principal, spec: dict[str, Any]
) -> list[ParentLink]:
    """The parents the upload declared by ref, resolved as the caller (404 if unreadable)."""
    links = []
    for p in spec.get("parents", []):
        _, _, parent = catalog.resolve_ref(session, principal, p["ref"])
        relation = parse_relation(p["relation"])
        links.append(ParentLink(relation, version_id=parent.id, params=p.get("params") or {}))
    return links


def _insert_version(
    session: Session, principal: Principal, adapter: Adapter, v: Validated, spec: dict[str, Any]
) -> Version:
    """Insert the next version of ``adapter`` (the unique number may lose a race: retried)."""
    latest = session.exec(
        select(func.max(Version.number)).where(Version.adapter_id == adapter.id)
    ).one()
    version = Version(
        adapter_id=_row_id(adapter),
        number=(latest or 0) + 1,
        digest=v.digest,
        config=v.config,
        summary=v.summary,
        meta=spec.get("metadata") or {},
        description=spec.get("description"),
        base_model=v.base_model,
        base_model_id=v.base_model_id,
        size=v.size,
        job_id=spec.get("job_id"),
        created_by=principal.name,
    )
    session.add(version)
    session.flush()
    return version


def _insert_files(session: Session, version: Version, files: list[dict[str, Any]]) -> None:
    """One ``version_files`` row per file of the manifest."""
    version_id = _row_id(version)
    for f in files:
        session.add(
            VersionFile(
                version_id=version_id, path=f["path"], blob_sha256=f["sha256"], size=int(f["size"])
            )
        )


def _touch_adapter(
    session: Session, adapter: Adapter, v: Validated, description: str | None
) -> None:
    """The adapter takes the new version's time, description and base model."""
    adapter.updated_at = utcnow()
    if description:
        adapter.description = description
    if v.base_model:
        adapter.base_model = v.base_model
    session.add(adapter)


# --------------------------------------------------------------------------- base models


def write_base_model(
    session: Session,
    ctx: Context,
    principal: Principal,
    upload: UploadSession,
    v: Validated,
    base_url: str,
) -> tuple[bool, View]:
    """Register a base model (or find the same one already there), in ``session``.

    Conflict when the name is taken by other content (unless it is this job's result).
    """
    job_id = upload.spec.get("job_id")
    existing = _existing_base_model(session, upload.name, job_id)
    if existing is not None:
        if existing.digest != v.digest and not (job_id and existing.job_id == job_id):
            raise Conflict(
                f"base model '{upload.name}' is already registered with other content "
                f"({existing.digest}); register it under another name"
            )
        _mark_committed(session, upload, {"base_model_id": _row_id(existing)})
        return False, base_model_view(session, ctx, existing, base_url)
    bm = _insert_base_model(session, principal, upload, v)
    bm_id = _row_id(bm)
    _insert_lineage(session, _job_links(upload), child_base_model_id=bm_id)
    for f in v.files:
        session.add(
            BaseModelFile(
                base_model_id=bm_id, path=f["path"], blob_sha256=f["sha256"], size=int(f["size"])
            )
        )
    _mark_committed(session, upload, {"base_model_id": bm_id})
    audit.record(
        session,
        principal,
        "base_model.publish",
        target=bm.name,
        before=None,
        after={"name": bm.name, "digest": v.digest, "size": bm.size, "job_id": bm.job_id},
    )
    session.flush()
    return True, base_model_view(session, ctx, bm, base_url)


def _existing_base_model(session: Session, name: str, job_id: str | None) -> BaseModelRecord | None:
    """The base model this job already registered, else the one registered as ``name``."""
    if job_id:
        by_job = session.exec(
            select(BaseModelRecord).where(BaseModelRecord.job_id == job_id)
        ).first()
        if by_job is not None:
            return by_job
    return session.exec(select(BaseModelRecord).where(BaseModelRecord.name == name)).first()


def _insert_base_model(
    session: Session, principal: Principal, upload: UploadSession, v: Validated
) -> BaseModelRecord:
    """Insert the base model row; architecture and model type come from its config.json."""
    config = v.config or {}
    architectures = config.get("architectures") or [None]
    model_type = config.get("model_type")
    bm = BaseModelRecord(
        name=upload.name,
        revision=upload.spec.get("revision"),
        architecture=architectures[0] if isinstance(architectures, list) else None,
        model_type=model_type if isinstance(model_type, str) else None,
        config=v.config,
        modules=v.modules,
        meta=upload.spec.get("metadata") or None,
        digest=v.digest,
        size=v.size,
        job_id=upload.spec.get("job_id"),
        created_by=principal.name,
    )
    session.add(bm)
    session.flush()
    return bm
