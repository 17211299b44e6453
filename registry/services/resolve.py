"""The resolve hot path: ``GET /v1/resolve/{ref}`` in one indexed query.

What can change between two requests is read from the database every time, in one
statement (:func:`lookup`): which version the ref selects now (an alias may have
moved, a new version may be the latest), the namespace's privacy, the aliases on the
version and whether fsck marked one of its blobs lost. So a moved alias is seen by
the very next request on every worker and process, with no invalidation protocol.

Whether the version is yanked and whether its adapter is deprecated are mutable too:
they come from the same statement (``latest`` skips yanked versions inside it, on
the partial index ``ix_versions_unyanked_number``) and become ``Warning`` headers
(:mod:`registry.services.version_notices`); the answer body does not change.

What cannot change is cached in the process: the version's :class:`~registry.services.
manifests.Manifest` (keyed by the version's identity, so a reused row id is a miss),
the caller's principal (for ``LOREG_TOKEN_CACHE_S`` seconds, with its expiry, checked
against the clock on every use) and the serialised answer (for a tenth of the download
URLs' lifetime, so every URL handed out keeps at least 90% of it). Whether the caller's
token is still not revoked is part of the one statement (``token_active``), so a
revoked token is refused by the very next request in every process.

Anything unusual -- no row, a blob marked lost -- goes to the general path
(:func:`registry.services.catalog.resolve_ref`), which raises the same errors as
before with the same messages.
"""

from __future__ import annotations

import functools
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from pydantic import TypeAdapter
from sqlmodel import Session, col, select
from starlette.concurrency import run_in_threadpool

from loreg.refs import Ref
from registry.auth import REVOKED_MESSAGE, Principal, check_visible, hash_token, refuse_expired
from registry.errors import Unauthorized
from registry.models import Adapter, Alias, BlobFault, Namespace, Version, VersionFile
from registry.schemas import ResolvedVersion
from registry.services import catalog, manifests, tokens, version_notices
from registry.services.context import Context

_RESOLVED = TypeAdapter(ResolvedVersion)

_ns = sa.inspect(Namespace).local_table
_ad = sa.inspect(Adapter).local_table
_ve = sa.inspect(Version).local_table
_al = sa.inspect(Alias).local_table
_vf = sa.inspect(VersionFile).local_table
_bf = sa.inspect(BlobFault).local_table


@dataclass(frozen=True)
class Target:
    """The mutable facts of one resolve, as the database holds them now."""

    namespace: str
    private: bool
    version_key: tuple[Any, ...]  # identity of the version row (id, adapter, number, digest, time)
    aliases: tuple[str, ...]
    files_missing: bool
    token_active: bool = True  # the caller's token is not revoked (always True: anonymous)
    warnings: tuple[str, ...] = ()  # Warning header values: yanked, deprecated (mutable)

    @property
    def version_id(self) -> int:
        """The version's row id."""
        return int(self.version_key[0])


@dataclass(frozen=True)
class Answer:
    """A resolve answer: the JSON body and the ``Warning`` header values to send with it."""

    body: bytes
    warnings: tuple[str, ...] = ()


def _lookup_statement(kind: str) -> sa.Select:
    """The one statement of a resolve, for a kind of selector (alias, version, digest,
    latest)."""
    on_version = _al.alias("on_version")
    faults = (
        sa.select(sa.literal(1))
        .select_from(_vf.join(_bf, _bf.c.sha256 == _vf.c.blob_sha256))
        .where(_vf.c.version_id == _ve.c.id)
        .exists()
    )
    joined = _ns.join(
        _ad, sa.and_(_ad.c.namespace_id == _ns.c.id, _ad.c.name == sa.bindparam("name"))
    )
    if kind == "alias":
        chosen = _al.alias("chosen")
        joined = joined.join(
            chosen,
            sa.and_(chosen.c.adapter_id == _ad.c.id, chosen.c.name == sa.bindparam("alias")),
        ).join(_ve, _ve.c.id == chosen.c.version_id)
        selector: sa.ColumnElement[bool] = sa.true()
    else:
        joined = joined.join(_ve, _ve.c.adapter_id == _ad.c.id)
        if kind == "version":
            selector = _ve.c.number == sa.bindparam("number")
        elif kind == "digest":
            selector = _ve.c.digest == sa.bindparam("digest")
        else:
            newest = _ve.alias("newest")
            # --- yank: latest is the newest version not yanked (partial index) ---
            latest = sa.select(sa.func.max(newest.c.number)).where(
                newest.c.adapter_id == _ad.c.id, newest.c.yanked_at.is_(None)
            )
            selector = _ve.c.number == latest.scalar_subquery()
    joined = joined.outerjoin(on_version, on_version.c.version_id == _ve.c.id)
    return (
        sa.select(
            _ns.c.name,
            _ns.c.private,
            _ve.c.id,
            _ve.c.adapter_id,
            _ve.c.number,
            _ve.c.digest,
            _ve.c.created_at,
            faults.label("files_missing"),
            tokens.ACTIVE_TOKEN.exists().label("token_active"),  # token check (audit part)
            # --- yank / deprecate: read every time, never cached ---
            _ve.c.yanked_at,
            _ve.c.yank_reason,
            _ad.c.deprecated_message,
            _ad.c.deprecated_successor,
            # --- end yank / deprecate ---
            on_version.c.name.label("alias_name"),
        )
        .select_from(joined)
        .where(_ns.c.name == sa.bindparam("namespace"), selector)
    )


_STATEMENTS = {kind: _lookup_statement(kind) for kind in ("alias", "version", "digest", "latest")}


def _statement_and_params(
    ref: Ref, token_id: int | None = None
) -> tuple[sa.Select, dict[str, Any]]:
    # token check: no row has id 0, so anonymous callers ignore ``token_active``
    params: dict[str, Any] = {"namespace": ref.namespace, "name": ref.name}
    params["token_id"] = token_id or 0
    if ref.alias is not None:
        return _STATEMENTS["alias"], {**params, "alias": ref.alias}
    if ref.version is not None:
        return _STATEMENTS["version"], {**params, "number": ref.version}
    if ref.digest is not None:
        return _STATEMENTS["digest"], {**params, "digest": ref.digest}
    return _STATEMENTS["latest"], params


def _run(ctx: Context, statement: sa.Select, params: dict[str, Any]) -> list[sa.Row]:
    with ctx.read_engine.connect() as conn:
        return list(conn.execute(statement, params).all())


def lookup(ctx: Context, ref: Ref, token_id: int | None = None) -> Target | None:
    """Which version ``ref`` selects now, with its aliases and blob faults, and whether
    token ``token_id`` is still not revoked; None if nothing.

    One statement on the read engine: autocommit, so no BEGIN/ROLLBACK round trips,
    and no pre-ping; a pooled connection found dead (the database restarted) is
    dropped and the statement sent once more on a new one.
    """
    statement, params = _statement_and_params(ref, token_id)
    try:
        rows = _run(ctx, statement, params)
    except sa.exc.DBAPIError as exc:
        if not exc.connection_invalidated:
            raise
        rows = _run(ctx, statement, params)  # the pool dropped that connection: once more
    return _target([tuple(r) for r in rows], ref.name)


async def lookup_async(ctx: Context, ref: Ref, token_id: int | None = None) -> Target | None:
    """:func:`lookup` on the event loop (``ctx.async_lookup``, Postgres on psycopg 3)."""
    assert ctx.async_lookup is not None
    statement, params = _statement_and_params(ref, token_id)
    return _target(list(await ctx.async_lookup.rows(statement, params)), ref.name)


def _target(rows: list[tuple], name: str) -> Target | None:
    """The lookup's rows (one per alias on the version, or one) as a Target of the
    adapter ``name``."""
    if not rows:
        return None
    ns_name, private, version_id, adapter_id, number, digest, created_at, missing = rows[0][:8]
    yanked_at, yank_reason, deprecated, successor = rows[0][9:13]
    return Target(
        namespace=ns_name,
        private=bool(private),
        version_key=(version_id, adapter_id, number, digest, created_at),
        aliases=tuple(sorted(r[-1] for r in rows if r[-1] is not None)),
        files_missing=bool(missing),
        token_active=bool(rows[0][8]),  # token check
        warnings=version_notices.header_values(
            ns_name, name, number, yanked_at, yank_reason, deprecated, successor
        ),
    )


def principal_of(ctx: Context, token: str | None, *, confirm: bool = True) -> Principal:
    """The caller of a bearer token (anonymous for None), cached for the token TTL.

    A principal from the cache is confirmed not revoked with one primary-key lookup
    (``confirm``; the resolve hot path passes False: its one statement checks it).
    Raises Unauthorized for an unknown, revoked or expired token (never cached).
    """
    cached = cached_principal(ctx, token)
    if cached is not None:
        if confirm and cached.authenticated:
            assert token is not None and cached.token_id is not None  # authenticated
            if not _token_active(ctx, cached.token_id):
                _forget_revoked(ctx, token)
        return cached
    assert token is not None  # anonymous is always "cached"
    with Session(ctx.engine) as session:
        principal = tokens.authenticate(session, token)
    if ctx.settings.token_cache_s > 0:
        ctx.hot.principals.put(hash_token(token), principal, ctx.settings.token_cache_s)
    return principal


def cached_principal(ctx: Context, token: str | None) -> Principal | None:
    """The caller without touching the database (anonymous, or a token checked less than
    ``token_cache_s`` ago), else None. 401 once the token's expiry has passed."""
    if token is None:
        return Principal()
    if ctx.settings.token_cache_s <= 0:
        return None
    principal = ctx.hot.principals.get(hash_token(token))
    if principal is not None:
        try:
            refuse_expired(principal)
        except Unauthorized:
            ctx.hot.principals.discard(hash_token(token))
            raise
    return principal


def _token_active(ctx: Context, token_id: int) -> bool:
    """Whether the token is not revoked: one primary-key lookup on the read engine, sent
    once more on a pooled connection found dead (as :func:`lookup` does)."""

    def ask() -> bool:
        with ctx.read_engine.connect() as conn:
            return tokens.is_active(conn, token_id)

    try:
        return ask()
    except sa.exc.DBAPIError as exc:
        if not exc.connection_invalidated:
            raise
        return ask()  # the pool dropped that connection: once more


def _forget_revoked(ctx: Context, token: str) -> None:
    """Drop a token found revoked from this process's cache, and refuse the request."""
    ctx.hot.principals.discard(hash_token(token))
    raise Unauthorized(REVOKED_MESSAGE)


def refuse_revoked(
    ctx: Context, token: str | None, principal: Principal, target: Target | None
) -> None:
    """401 if the caller's token was revoked: from the lookup's ``token_active``, or, when
    the lookup found no row, one primary-key lookup (a miss is not the hot path)."""
    if not principal.authenticated or token is None or principal.token_id is None:
        return
    active = target.token_active if target is not None else _token_active(ctx, principal.token_id)
    if not active:
        _forget_revoked(ctx, token)


def _manifest(ctx: Context, target: Target) -> manifests.Manifest:
    cached = ctx.hot.manifests.get(target.version_key)
    if cached is not None:
        return cached
    with Session(ctx.read_engine) as session:  # reads of immutable rows: no transaction
        found = session.exec(
            select(Version, Adapter, Namespace)
            .join(Adapter, col(Adapter.id) == col(Version.adapter_id))
            .join(Namespace, col(Namespace.id) == col(Adapter.namespace_id))
            .where(col(Version.id) == target.version_id)
        ).first()
        if found is None:  # deleted since the lookup
            raise LookupError("version gone")
        version, adapter, ns = found
        manifest = manifests.load_manifest(session, ns, adapter, version)
    ctx.hot.manifests.put(target.version_key, manifest)
    return manifest


def serialise(view: dict[str, Any]) -> bytes:
    """The JSON bytes of a resolve object, exactly as FastAPI renders ``ResolvedVersion``."""
    return _RESOLVED.dump_json(_RESOLVED.validate_python(view), by_alias=True)


def _answer_key(
    target: Target, manifest: manifests.Manifest, principal: Principal, base: str
) -> Hashable:
    visible = tuple(ns is not None and principal.can(ns, "read") for ns in manifest.private_parents)
    return (target.version_key, target.aliases, visible, base)


@functools.lru_cache(maxsize=4096)
def parsed(ref_text: str, default_namespace: str) -> Ref:
    """:func:`registry.services.catalog.parse` memoised (a Ref is immutable; an invalid
    ref raises each time, as exceptions are not cached)."""
    return catalog.parse(ref_text, Principal(default_namespace=default_namespace))


def _ttl(ctx: Context) -> float:
    """How long a serialised answer is reused: a tenth of its URLs' lifetime."""
    return max(1.0, ctx.settings.presign_expiry_s / 10)


def cached_answer(
    ctx: Context, principal: Principal, target: Target | None, base_url: str
) -> Answer | None:
    """The answer from the caches alone (after the visibility check), else None."""
    if target is None or target.files_missing:
        return None
    check_visible(principal, target.namespace, target.private)
    manifest = ctx.hot.manifests.get(target.version_key)
    if manifest is None:
        return None
    body = ctx.hot.answers.get(_answer_key(target, manifest, principal, base_url))
    return None if body is None else Answer(body, target.warnings)


def finish(
    ctx: Context, principal: Principal, ref_text: str, target: Target | None, base_url: str
) -> Answer:
    """The answer for a looked-up target: from the caches, or built (and cached), or
    through the general path when the lookup found nothing or a lost blob."""
    if target is None or target.files_missing:
        return _general_path(ctx, principal, ref_text, base_url)
    check_visible(principal, target.namespace, target.private)
    try:
        manifest = _manifest(ctx, target)
    except LookupError:
        return _general_path(ctx, principal, ref_text, base_url)
    key = _answer_key(target, manifest, principal, base_url)
    body = ctx.hot.answers.get(key)
    if body is None:
        view = manifests.resolve_view(ctx, manifest, list(target.aliases), principal, base_url)
        body = serialise(view)
        ctx.hot.answers.put(key, body, _ttl(ctx))
    return Answer(body, target.warnings)


def resolve_json(ctx: Context, token: str | None, ref_text: str, base_url: str) -> Answer:
    """The JSON answer of ``GET /v1/resolve/{ref_text}`` for the bearer ``token``
    (blocking: run it in a worker thread)."""
    principal = principal_of(ctx, token, confirm=False)
    ref = parsed(ref_text, principal.default_namespace)
    target = lookup(ctx, ref, principal.token_id)
    refuse_revoked(ctx, token, principal, target)
    return finish(ctx, principal, ref_text, target, base_url)


async def resolve_json_async(
    ctx: Context, token: str | None, ref_text: str, base_url: str
) -> Answer:
    """:func:`resolve_json` on the event loop: the lookup is awaited on ``ctx.async_lookup``
    and only a cache miss (token, manifest, answer) goes to a worker thread."""
    principal = cached_principal(ctx, token)
    if principal is None:
        principal = await run_in_threadpool(principal_of, ctx, token, confirm=False)
    ref = parsed(ref_text, principal.default_namespace)
    target = await lookup_async(ctx, ref, principal.token_id)
    if target is not None:
        refuse_revoked(ctx, token, principal, target)  # no database call
    else:
        await run_in_threadpool(refuse_revoked, ctx, token, principal, target)
    body = cached_answer(ctx, principal, target, base_url)
    if body is None:
        body = await run_in_threadpool(finish, ctx, principal, ref_text, target, base_url)
    return body


def _general_path(ctx: Context, principal: Principal, ref_text: str, base_url: str) -> Answer:
    """Resolve through the general catalog code: its errors, or its answer after a race."""
    with Session(ctx.engine) as session:
        ns, adapter, version = catalog.resolve_ref(session, principal, ref_text)
        view = catalog.version_view(session, ctx, ns, adapter, version, base_url, principal)
        warnings = version_notices.of_rows(ns, adapter, version)
    return Answer(serialise(view), warnings)
