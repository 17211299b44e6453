"""Reading the catalog: namespaces, adapters, versions, resolve, aliases."""

from __future__ import annotations

import re
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, func, select

from loreg.errors import InvalidRefError
from loreg.refs import Ref, format_ref, parse_ref, validate_alias, validate_name
from loreg.vocabulary import CardStatus
from registry.auth import Principal, check_visible, require_scope
from registry.errors import InvalidName, InvalidRef, NotFound
from registry.models import (
    Adapter,
    Alias,
    BlobFault,
    Namespace,
    Version,
    VersionFile,
    utcnow,
)
from registry.services import audit, fsck, lineage, manifests
from registry.services.card_status import card_statuses
from registry.services.context import Context

_BASE_MODEL_NAME = re.compile(
    r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}(/[A-Za-z0-9][A-Za-z0-9._-]{0,95})?$"
)


def checked_name(name: str, kind: str) -> str:
    """Validate a namespace/alias name with the shared grammar, as an API error."""
    try:
        return validate_alias(name) if kind == "alias" else validate_name(name, kind)
    except InvalidRefError as exc:
        raise InvalidName(str(exc)) from exc


def checked_base_model_name(name: str) -> str:
    """Base-model names follow the Hub's ``org/name`` form (case kept)."""
    if not _BASE_MODEL_NAME.match(name) or ".." in name:
        raise InvalidName(
            f"invalid base model name {name!r}: use letters, digits, '.', '_', '-' "
            "with at most one '/', e.g. 'meta-llama/Llama-3.2-1B'"
        )
    return name


def parse(ref_text: str, principal: Principal) -> Ref:
    """Parse a ref in the caller's default namespace, as an API error."""
    try:
        return parse_ref(ref_text, default_namespace=principal.default_namespace)
    except InvalidRefError as exc:
        raise InvalidRef(str(exc)) from exc


def get_namespace(session: Session, name: str) -> Namespace | None:
    """The namespace row, or None."""
    return session.exec(select(Namespace).where(Namespace.name == name)).first()


def visible_namespace(session: Session, principal: Principal, name: str) -> Namespace:
    """The namespace if it exists and the caller may see it, else 404."""
    ns = get_namespace(session, name)
    if ns is None:
        raise NotFound(f"namespace '{name}' not found")
    check_visible(principal, ns.name, ns.private)
    return ns


def get_adapter(
    session: Session, principal: Principal, namespace: str, name: str
) -> tuple[Namespace, Adapter]:
    """The adapter ``namespace/name`` visible to the caller, else 404."""
    ns = visible_namespace(session, principal, namespace)
    adapter = session.exec(
        select(Adapter).where(Adapter.namespace_id == ns.id, Adapter.name == name)
    ).first()
    if adapter is None:
        raise NotFound(f"adapter '{namespace}/{name}' not found")
    return ns, adapter


def find_version(session: Session, adapter: Adapter, ref: Ref, label: str) -> Version:
    """The version a ref selects (latest, number, alias or digest), else 404."""
    query = select(Version).where(Version.adapter_id == adapter.id)
    if ref.version is not None:
        query = query.where(Version.number == ref.version)
    elif ref.digest is not None:
        query = query.where(Version.digest == ref.digest)
    elif ref.alias is not None:
        alias = session.exec(
            select(Alias).where(Alias.adapter_id == adapter.id, Alias.name == ref.alias)
        ).first()
        if alias is None:
            raise NotFound(f"alias '{ref.alias}' not found on '{label}'")
        query = query.where(Version.id == alias.version_id)
    else:
        query = query.order_by(col(Version.number).desc()).limit(1)
    version = session.exec(query).first()
    if version is None:
        raise NotFound(f"'{ref.canonical()}' not found")
    return version


def resolve_ref(
    session: Session, principal: Principal, ref_text: str
) -> tuple[Namespace, Adapter, Version]:
    """Resolve a ref string to rows the caller may read."""
    ref = parse(ref_text, principal)
    assert ref.namespace is not None  # parse() fills in the caller's default namespace
    ns, adapter = get_adapter(session, principal, ref.namespace, ref.name)
    return ns, adapter, find_version(session, adapter, ref, f"{ns.name}/{adapter.name}")


def _aliases_of_version(session: Session, version: Version) -> list[str]:
    rows = session.exec(select(Alias.name).where(Alias.version_id == version.id)).all()
    return sorted(rows)


def lineage_of(
    session: Session, version: Version, principal: Principal | None = None
) -> list[dict[str, Any]]:
    """The lineage parents of a version (private parents hidden from non-readers)."""
    return lineage.parents_of(session, lineage.node_of(version), principal)


def version_view(
    session: Session,
    ctx: Context,
    ns: Namespace,
    adapter: Adapter,
    version: Version,
    base_url: str,
    principal: Principal | None = None,
) -> dict[str, Any]:
    """The resolve object of a version (docs/http-api.md), with download URLs.

    ``principal`` decides which private lineage parents are named (none when None).
    A version with a file whose bytes fsck found missing answers 409 ``files_missing``.
    The hot path (:mod:`registry.services.resolve`) renders the same object from a
    cached manifest.
    """
    check_files_present(session, ns, adapter, version)
    manifest = manifests.load_manifest(session, ns, adapter, version)
    aliases = _aliases_of_version(session, version)
    return manifests.resolve_view(ctx, manifest, aliases, principal, base_url)


def check_files_present(
    session: Session, ns: Namespace, adapter: Adapter, version: Version
) -> None:
    """409 ``files_missing`` when fsck marked any of the version's blobs as lost."""
    faults = session.exec(
        select(VersionFile.path, BlobFault.problem)
        .join(BlobFault, col(BlobFault.sha256) == VersionFile.blob_sha256)
        .where(VersionFile.version_id == version.id)
    ).all()
    ref = format_ref(ns.name, adapter.name, version=version.number)
    fsck.check_files_present(ref, [(path, problem) for path, problem in faults])


def _adapter_summary(session: Session, ns: Namespace, adapter: Adapter) -> dict[str, Any]:
    count, latest = session.exec(
        select(func.count(col(Version.id)), func.max(Version.number)).where(
            Version.adapter_id == adapter.id
        )
    ).one()
    alias_rows = session.exec(
        select(Alias.name, Version.number)
        .join(Version, col(Version.id) == Alias.version_id)
        .where(Alias.adapter_id == adapter.id)
    ).all()
    return {
        "namespace": ns.name,
        "name": adapter.name,
        "description": adapter.description,
        "base_model": adapter.base_model,
        "latest_version": latest,
        "versions": count,
        "aliases": {name: number for name, number in sorted(alias_rows)},
        "updated_at": adapter.updated_at.isoformat(),
    }


def list_adapters(
    session: Session, principal: Principal, namespace: str | None = None
) -> list[dict[str, Any]]:
    """Adapters visible to the caller, optionally in one namespace."""
    if namespace is not None:
        namespaces = [visible_namespace(session, principal, checked_name(namespace, "namespace"))]
    else:
        namespaces = [
            ns
            for ns in session.exec(select(Namespace).order_by(col(Namespace.name))).all()
            if not ns.private or principal.can(ns.name, "read")
        ]
    out: list[dict[str, Any]] = []
    for ns in namespaces:
        adapters = session.exec(
            select(Adapter).where(Adapter.namespace_id == ns.id).order_by(col(Adapter.name))
        ).all()
        out.extend(_adapter_summary(session, ns, a) for a in adapters)
    return out


def adapter_detail(
    session: Session, principal: Principal, namespace: str, name: str
) -> dict[str, Any]:
    """One adapter with all its versions."""
    ns, adapter = get_adapter(session, principal, namespace, name)
    out = _adapter_summary(session, ns, adapter)
    versions = session.exec(
        select(Version).where(Version.adapter_id == adapter.id).order_by(col(Version.number))
    ).all()
    counts: dict[int | None, int] = (
        dict(
            session.exec(
                select(VersionFile.version_id, func.count(col(VersionFile.id)))
                .where(col(VersionFile.version_id).in_([v.id for v in versions]))
                .group_by(col(VersionFile.version_id))
            ).all()
        )
        if versions
        else {}
    )
    card_status = card_statuses(session, [v.id for v in versions if v.id is not None])
    out["versions"] = [
        {
            "version": v.number,
            "digest": v.digest,
            "size": v.size,
            "file_count": counts.get(v.id, 0),
            "created_at": v.created_at.isoformat(),
            "created_by": v.created_by,
            "base_model": v.base_model,
            "card_status": card_status.get(v.id or 0, CardStatus.PENDING),
        }
        for v in versions
    ]
    return out


def list_namespaces(session: Session, principal: Principal) -> list[dict[str, Any]]:
    """Namespaces the caller may see."""
    rows = session.exec(select(Namespace).order_by(col(Namespace.name))).all()
    return [
        {"name": ns.name, "private": ns.private, "created_at": ns.created_at.isoformat()}
        for ns in rows
        if not ns.private or principal.can(ns.name, "read")
    ]


def _version_number(session: Session, alias: Alias) -> int:
    """The number of the version an alias points at (a foreign key: the row exists)."""
    version = session.get(Version, alias.version_id)
    assert version is not None
    return version.number


def set_alias(
    session: Session, principal: Principal, namespace: str, name: str, alias: str, number: int
) -> dict[str, Any]:
    """Point ``alias`` at version ``number`` (create or move); audited."""
    alias = checked_name(alias, "alias")
    ns, adapter = get_adapter(session, principal, namespace, name)
    require_scope(principal, ns.name, ns.private, "write")
    version = session.exec(
        select(Version).where(Version.adapter_id == adapter.id, Version.number == number)
    ).first()
    if version is None:
        raise NotFound(f"version {number} of '{ns.name}/{adapter.name}' not found")
    row = session.exec(
        select(Alias).where(Alias.adapter_id == adapter.id, Alias.name == alias)
    ).first()
    assert adapter.id is not None and version.id is not None  # rows read from the database
    previous = None
    if row is None:
        row = Alias(adapter_id=adapter.id, name=alias, version_id=version.id)
    else:
        previous = _version_number(session, row)
        row.version_id = version.id
    row.updated_by = principal.name
    row.updated_at = utcnow()
    session.add(row)
    audit.record(
        session,
        principal,
        "alias.set",
        namespace=ns.name,
        target=f"{adapter.name}@{alias}",
        detail={"version": number, "previous": previous},
    )
    try:
        session.flush()
    except sa.exc.IntegrityError:  # a concurrent request created it first: retry as a move
        session.rollback()
        return set_alias(session, principal, namespace, name, alias, number)
    return {"alias": alias, "version": number, "previous": previous}


def remove_alias(
    session: Session, principal: Principal, namespace: str, name: str, alias: str
) -> dict[str, Any]:
    """Delete an alias; audited. 404 if it does not exist."""
    alias = checked_name(alias, "alias")
    ns, adapter = get_adapter(session, principal, namespace, name)
    require_scope(principal, ns.name, ns.private, "write")
    row = session.exec(
        select(Alias).where(Alias.adapter_id == adapter.id, Alias.name == alias)
    ).first()
    if row is None:
        raise NotFound(f"alias '{alias}' not found on '{ns.name}/{adapter.name}'")
    previous = _version_number(session, row)
    session.delete(row)
    audit.record(
        session,
        principal,
        "alias.remove",
        namespace=ns.name,
        target=f"{adapter.name}@{alias}",
        detail={"previous": previous},
    )
    return {"alias": alias, "version": None, "previous": previous}
