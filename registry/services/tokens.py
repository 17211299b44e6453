"""Tokens and namespaces: creation, authentication, first-start bootstrap."""

from __future__ import annotations

from typing import Any

from sqlmodel import Session, select

from registry.auth import (
    ALL_NAMESPACES,
    SCOPE_LEVELS,
    Principal,
    generate_token,
    hash_token,
    require_scope,
)
from registry.errors import Conflict, Unauthorized
from registry.models import ApiToken, Namespace, TokenGrant
from registry.schemas import NamespaceRequest, TokenRequest
from registry.services import audit, catalog

DEFAULT_NAMESPACE = "default"

#: :data:`SCOPE_LEVELS` by the scope's word, for words read back from the database:
#: an unknown word is a ``KeyError``, as it is in :data:`SCOPE_LEVELS` itself.
_WORD_LEVELS: dict[str, int] = {scope.value: level for scope, level in SCOPE_LEVELS.items()}


def authenticate(session: Session, token: str | None) -> Principal:
    """The principal of a bearer token (anonymous for None); 401 if unknown or revoked."""
    if token is None:
        return Principal()
    row = session.exec(select(ApiToken).where(ApiToken.token_hash == hash_token(token))).first()
    if row is None or row.revoked_at is not None:
        raise Unauthorized("invalid or revoked token: check LOREG_TOKEN / --token")
    grants: dict[str, int] = {}
    for g in session.exec(select(TokenGrant).where(TokenGrant.token_id == row.id)).all():
        grants[g.namespace] = max(grants.get(g.namespace, 0), _WORD_LEVELS[g.scope])
    return Principal(
        token_id=row.id, name=row.name, default_namespace=row.default_namespace, grants=grants
    )


def _insert_token(
    session: Session,
    name: str,
    grants: list[tuple[str, str]],
    default_namespace: str,
    created_by: str | None,
) -> tuple[ApiToken, str]:
    secret = generate_token()
    row = ApiToken(
        name=name,
        token_hash=hash_token(secret),
        prefix=secret[:8],
        default_namespace=default_namespace,
        created_by=created_by,
    )
    session.add(row)
    session.flush()
    assert row.id is not None  # the flush assigned it
    for ns, scope in grants:
        session.add(TokenGrant(token_id=row.id, namespace=ns, scope=scope))
    return row, secret


def create_token(session: Session, principal: Principal, req: TokenRequest) -> dict[str, Any]:
    """Create a token; the caller must hold admin on every namespace it grants."""
    grants: dict[str, str] = {}
    for g in req.grants:
        ns = (
            g.namespace
            if g.namespace == ALL_NAMESPACES
            else catalog.checked_name(g.namespace, "namespace")
        )
        require_scope(principal, ns, False, "admin")
        if SCOPE_LEVELS[g.scope] > _WORD_LEVELS.get(grants.get(ns, "read"), 0) or ns not in grants:
            grants[ns] = g.scope
    default_ns = catalog.checked_name(
        req.default_namespace or principal.default_namespace, "namespace"
    )
    row, secret = _insert_token(
        session, req.name, sorted(grants.items()), default_ns, principal.name
    )
    audit.record(session, principal, "token.create", target=req.name, detail={"grants": grants})
    return {
        "id": row.id,
        "name": row.name,
        "token": secret,
        "grants": [{"namespace": ns, "scope": s} for ns, s in sorted(grants.items())],
        "default_namespace": default_ns,
        "created_at": row.created_at.isoformat(),
    }


def create_namespace(session: Session, principal: Principal, req: NamespaceRequest) -> dict:
    """Create a namespace (admin on ``*``)."""
    name = catalog.checked_name(req.name, "namespace")
    require_scope(principal, ALL_NAMESPACES, False, "admin")
    if catalog.get_namespace(session, name) is not None:
        raise Conflict(f"namespace '{name}' already exists")
    ns = Namespace(name=name, private=req.private)
    session.add(ns)
    audit.record(
        session, principal, "namespace.create", namespace=name, detail={"private": req.private}
    )
    session.flush()
    return {"name": ns.name, "private": ns.private, "created_at": ns.created_at.isoformat()}


def bootstrap(session: Session) -> str | None:
    """Create the default namespace and, if no token exists yet, an admin token.

    Returns the new admin token (to print once), or None when tokens already exist.
    """
    if catalog.get_namespace(session, DEFAULT_NAMESPACE) is None:
        session.add(Namespace(name=DEFAULT_NAMESPACE, private=False))
    if session.exec(select(ApiToken).limit(1)).first() is not None:
        return None
    _, secret = _insert_token(
        session, "admin", [(ALL_NAMESPACES, "admin")], DEFAULT_NAMESPACE, "bootstrap"
    )
    return secret
