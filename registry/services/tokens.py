"""Tokens and namespaces: creation, authentication, listing, revocation, bootstrap.

Who sees which tokens (``GET /v1/tokens``) and who may revoke one
(``DELETE /v1/tokens/{id}``): a token with ``admin`` on ``*`` sees and revokes every
token; any other token sees and revokes only itself (another id is 404, as if it did
not exist). Revoking is idempotent: a token already revoked answers its view again,
with no second audit row. The last working token with ``admin`` on ``*`` cannot be
revoked (409): nothing else could create tokens or namespaces again.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from pydantic import ValidationError
from sqlmodel import Session, col, select

from registry.auth import (
    ALL_NAMESPACES,
    REVOKED_MESSAGE,
    SCOPE_LEVELS,
    Principal,
    generate_token,
    hash_token,
    refuse_expired,
    require_scope,
)
from registry.errors import Conflict, InvalidRequest, NotFound, Unauthorized
from registry.models import ApiToken, Namespace, TokenGrant, utcnow
from registry.schemas import MAX_TOKEN_LIFETIME_S, NamespaceRequest, TokenRequest
from registry.services import audit, catalog
from registry.services.context import open_existing
from registry.services.pagination import Page, PageRequest, SortKey, paginate

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
        raise Unauthorized(REVOKED_MESSAGE)
    grants: dict[str, int] = {}
    for g in session.exec(select(TokenGrant).where(TokenGrant.token_id == row.id)).all():
        grants[g.namespace] = max(grants.get(g.namespace, 0), _WORD_LEVELS[g.scope])
    expires = _aware(row.expires_at)
    principal = Principal(
        token_id=row.id,
        name=row.name,
        default_namespace=row.default_namespace,
        grants=grants,
        expires_at=expires.timestamp() if expires is not None else None,
    )
    refuse_expired(principal)
    return principal


#: ``SELECT 1 FROM api_tokens WHERE id = :token_id AND revoked_at IS NULL``: whether a
#: token checked earlier (and cached) is still not revoked; one primary-key lookup.
ACTIVE_TOKEN = (
    sa.select(sa.literal(1))
    .select_from(ApiToken)
    .where(
        col(ApiToken.id) == sa.bindparam("token_id", type_=sa.Integer),
        col(ApiToken.revoked_at).is_(None),
    )
)


def is_active(conn: sa.Connection, token_id: int) -> bool:
    """Whether token ``token_id`` is still not revoked (one indexed statement on ``conn``)."""
    return conn.execute(ACTIVE_TOKEN, {"token_id": token_id}).first() is not None


def _aware(value: datetime | None) -> datetime | None:
    """A stored timestamp as timezone-aware UTC (SQLite hands back naive ones)."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


def _iso(value: datetime | None) -> str | None:
    aware = _aware(value)
    return aware.isoformat() if aware is not None else None


def _expiry(req: TokenRequest) -> datetime | None:
    """When a new token expires, from ``expires_at`` or ``expires_in`` (422 if in the past)."""
    now = utcnow()
    if req.expires_in is not None:
        return now + timedelta(seconds=req.expires_in)
    if req.expires_at is None:
        return None
    when = req.expires_at.astimezone(UTC)
    if when <= now:
        raise InvalidRequest(f"expires_at {when.isoformat()} is not in the future")
    if when > now + timedelta(seconds=MAX_TOKEN_LIFETIME_S):
        raise InvalidRequest("expires_at is more than ten years away: choose a nearer date")
    return when


def _insert_token(
    session: Session,
    name: str,
    grants: list[tuple[str, str]],
    default_namespace: str,
    created_by: str | None,
    expires_at: datetime | None = None,
) -> tuple[ApiToken, str]:
    secret = generate_token()
    row = ApiToken(
        name=name,
        token_hash=hash_token(secret),
        prefix=secret[:8],
        default_namespace=default_namespace,
        created_by=created_by,
        expires_at=expires_at,
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
    expires_at = _expiry(req)
    row, secret = _insert_token(
        session, req.name, sorted(grants.items()), default_ns, principal.name, expires_at
    )
    granted = [{"namespace": ns, "scope": s} for ns, s in sorted(grants.items())]
    audit.record(
        session,
        principal,
        "token.create",
        target=req.name,
        before=None,
        after={
            "id": row.id,
            "name": row.name,
            "grants": granted,
            "default_namespace": default_ns,
            "expires_at": _iso(expires_at),
        },
    )
    return {
        "id": row.id,
        "name": row.name,
        "token": secret,
        "grants": granted,
        "default_namespace": default_ns,
        "created_at": row.created_at.isoformat(),
        "expires_at": _iso(expires_at),
    }


def _sees_all(principal: Principal) -> bool:
    return principal.can(ALL_NAMESPACES, "admin")


def _require_token(principal: Principal) -> None:
    if not principal.authenticated:
        raise Unauthorized("listing or revoking tokens needs a token: pass --token or LOREG_TOKEN")


def _token_views(session: Session, rows: list[ApiToken]) -> list[dict[str, Any]]:
    """The views of ``rows``, their grants read in one statement."""
    ids = [row.id for row in rows]
    grants: dict[int, list[dict[str, str]]] = {i: [] for i in ids if i is not None}
    if ids:
        found = session.exec(
            select(TokenGrant)
            .where(col(TokenGrant.token_id).in_(ids))
            .order_by(col(TokenGrant.namespace))
        ).all()
        for g in found:
            grants[g.token_id].append({"namespace": g.namespace, "scope": g.scope})
    now = utcnow()
    views = []
    for row in rows:
        expires = _aware(row.expires_at)
        views.append(
            {
                "id": row.id,
                "name": row.name,
                "prefix": row.prefix,
                "grants": grants.get(row.id or 0, []),
                "default_namespace": row.default_namespace,
                "created_by": row.created_by,
                "created_at": _iso(row.created_at),
                "expires_at": _iso(expires),
                "revoked_at": _iso(row.revoked_at),
                "active": row.revoked_at is None and (expires is None or expires > now),
            }
        )
    return views


def list_tokens(session: Session, principal: Principal, page: PageRequest) -> Page[dict[str, Any]]:
    """Tokens newest first: every token for an admin of ``*``, else only the caller's own."""
    _require_token(principal)
    statement = select(ApiToken)
    if not _sees_all(principal):
        statement = statement.where(col(ApiToken.id) == principal.token_id)
    found = paginate(
        session,
        statement,
        [SortKey(col(ApiToken.id), descending=True)],
        page,
        scope=f"tokens:{'all' if _sees_all(principal) else principal.token_id}",
        key_of=lambda row: [row.id],
        render=lambda row: row,
    )
    return Page(_token_views(session, found.items), found.next_cursor)


def revoke_token(session: Session, principal: Principal, token_id: int) -> dict[str, Any]:
    """Revoke a token (admin of ``*``, or the token itself); idempotent; 404 if unseen.

    Every process refuses it from the next request on: the check of a cached token
    reads ``revoked_at`` (``registry.services.resolve``).
    """
    _require_token(principal)
    row = session.get(ApiToken, token_id)
    if row is None or (not _sees_all(principal) and row.id != principal.token_id):
        raise NotFound(f"token {token_id} not found")
    if row.revoked_at is None:
        _refuse_last_admin(session, row)
        row.revoked_at = utcnow()
        session.add(row)
        audit.record(
            session,
            principal,
            "token.revoke",
            target=row.name,
            before={"id": row.id, "revoked_at": None},
            after={"id": row.id, "revoked_at": _iso(row.revoked_at)},
        )
        session.flush()
    return _token_views(session, [row])[0]


def _working_admins(session: Session) -> list[int]:
    """Ids of the tokens with ``admin`` on ``*`` that are neither revoked nor expired,
    locked until the transaction ends (two revokes at once cannot both pass)."""
    now = utcnow()
    query = (
        select(ApiToken.id)
        .join(TokenGrant, col(TokenGrant.token_id) == col(ApiToken.id))
        .where(
            TokenGrant.namespace == ALL_NAMESPACES,
            TokenGrant.scope == "admin",
            col(ApiToken.revoked_at).is_(None),
            sa.or_(col(ApiToken.expires_at).is_(None), col(ApiToken.expires_at) > now),
        )
        .order_by(col(ApiToken.id))
        .with_for_update(of=ApiToken)
    )
    return [int(i) for i in session.exec(query).all() if i is not None]


def _refuse_last_admin(session: Session, row: ApiToken) -> None:
    """409 if ``row`` is the last working token with ``admin`` on ``*``."""
    if _working_admins(session) == [row.id]:
        raise Conflict(
            f"token {row.id} ({row.name!r}) is the last working token with admin on '*'; "
            "revoking it would leave no one able to create tokens: create another admin "
            'token first (POST /v1/tokens with grants [{"namespace": "*", '
            '"scope": "admin"}])'
        )


#: The audit actor of tokens made by ``loreg db admin-token`` (database access, no token).
RECOVERY_ACTOR = "loreg db admin-token"


def recovery_admin_token(session: Session, name: str) -> dict[str, Any]:
    """A new token with admin on ``*``, made with database access alone (``loreg db
    admin-token``): the way back in when no working admin token is left (all expired,
    or revoked in the database). :func:`create_token` on behalf of :data:`RECOVERY_ACTOR`,
    so it is checked, stored and audited (``token.create``) as any other."""
    recovery = Principal(name=RECOVERY_ACTOR, grants={ALL_NAMESPACES: _WORD_LEVELS["admin"]})
    try:
        request = TokenRequest.model_validate(
            {"name": name.strip(), "grants": [{"namespace": ALL_NAMESPACES, "scope": "admin"}]}
        )
    except ValidationError as exc:
        raise InvalidRequest("a token name must be 1 to 128 characters") from exc
    return create_token(session, recovery, request)


def admin_token_from_env(data_dir: str | Path | None, name: str) -> dict[str, Any]:
    """``loreg db admin-token``: :func:`recovery_admin_token` in the registry database the
    ``LOREG_*`` settings (or ``data_dir``) name (ConfigError when there is none)."""
    ctx = open_existing(data_dir, table=ApiToken.__tablename__)
    try:
        with Session(ctx.engine) as session:
            made = recovery_admin_token(session, name)
            session.commit()
        return made
    finally:
        ctx.close()


def create_namespace(session: Session, principal: Principal, req: NamespaceRequest) -> dict:
    """Create a namespace (admin on ``*``)."""
    name = catalog.checked_name(req.name, "namespace")
    require_scope(principal, ALL_NAMESPACES, False, "admin")
    if catalog.get_namespace(session, name) is not None:
        raise Conflict(f"namespace '{name}' already exists")
    ns = Namespace(name=name, private=req.private)
    session.add(ns)
    audit.record(
        session,
        principal,
        "namespace.create",
        namespace=name,
        before=None,
        after={"name": name, "private": req.private},
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
