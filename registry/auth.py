"""API tokens and per-namespace scopes.

Tokens are random (``lrg_`` + 43 url-safe characters), shown once and stored as
their sha256: with 256 bits of entropy a fast hash is enough. Scopes are
ordered ``read`` < ``write`` < ``admin``; a grant on ``*`` covers every namespace.
Private namespaces answer 404 to callers that cannot read them.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from loreg.vocabulary import SCOPE_LEVELS, JobType, Scope
from registry.errors import Forbidden, NotFound, Unauthorized

if TYPE_CHECKING:
    from registry.models import Job

TOKEN_PREFIX = "lrg_"
#: Longest bearer token accepted; real ones are 47 characters (``lrg_`` + 43).
MAX_TOKEN_LENGTH = 256
ALL_NAMESPACES = "*"
#: ``token_id`` of the principal a job acts as: authenticated, but no token row.
JOB_TOKEN_ID = -1


def generate_token() -> str:
    """A new random API token (shown to the user once)."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """The stored form of a token: its sha256 hex digest."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def parse_bearer(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer`` header, None when absent.

    Raises Unauthorized for a header that is present but malformed.
    """
    if authorization is None or authorization.strip() == "":
        return None
    scheme, _, value = authorization.strip().partition(" ")
    value = value.strip()
    if scheme.lower() != "bearer" or not value:
        raise Unauthorized("malformed Authorization header: send 'Authorization: Bearer <token>'")
    if len(value) > MAX_TOKEN_LENGTH:
        raise Unauthorized(
            f"invalid token: too long ({len(value)} characters; the limit is "
            f"{MAX_TOKEN_LENGTH} and loreg tokens are '{TOKEN_PREFIX}' plus 43 characters): "
            "check that LOREG_TOKEN or --token holds a single token"
        )
    if not value.startswith(TOKEN_PREFIX):
        raise Unauthorized(f"invalid token: loreg tokens start with '{TOKEN_PREFIX}'")
    return value


@dataclass(frozen=True)
class Principal:
    """Who is calling: a token's name and grants, or anonymous."""

    token_id: int | None = None
    name: str | None = None
    default_namespace: str = "default"
    grants: dict[str, int] = field(default_factory=dict)
    #: When the token expires (seconds since the epoch; None: never). Kept with a cached
    #: principal so :func:`refuse_expired` can check it against the clock on every use.
    expires_at: float | None = None

    @property
    def authenticated(self) -> bool:
        """True for a caller with a valid token."""
        return self.token_id is not None

    def level_on(self, namespace: str) -> int:
        """The highest scope level this caller holds on ``namespace`` (0 = none)."""
        return max(self.grants.get(namespace, 0), self.grants.get(ALL_NAMESPACES, 0))

    def can(self, namespace: str, scope: str) -> bool:
        """Whether the caller holds ``scope`` (or higher) on ``namespace``."""
        return self.level_on(namespace) >= SCOPE_LEVELS[Scope(scope)]

    @classmethod
    def for_job(cls, job: Job) -> Principal:
        """The principal a job acts as (named ``job:<id>``, authenticated, no token row).

        It reads every namespace and writes its own; a ``merge`` job also writes the
        global base-model catalog (``*``). What it may read was checked when the job
        was submitted, against the submitter's token.
        """
        write = SCOPE_LEVELS[Scope.WRITE]
        grants = {job.namespace: write, ALL_NAMESPACES: SCOPE_LEVELS[Scope.READ]}
        if job.type == JobType.MERGE:  # base models are a global catalog
            grants[ALL_NAMESPACES] = write
        return cls(
            token_id=JOB_TOKEN_ID,
            name=f"job:{job.id}",
            default_namespace=job.namespace,
            grants=grants,
        )

    @classmethod
    def for_mirror(cls, mirror_id: int, namespace: str) -> Principal:
        """The principal the mirror scheduler submits a mirror's sync job as.

        Named ``mirror:<id>``; it writes the mirror's target namespace only. Who may
        mirror into that namespace was checked when the mirror was added.
        """
        return cls(
            token_id=JOB_TOKEN_ID,
            name=f"mirror:{mirror_id}",
            default_namespace=namespace,
            grants={namespace: SCOPE_LEVELS[Scope.WRITE]},
        )


ANONYMOUS = Principal()

#: What a revoked or unknown token is told (the same words for both: a guessed token
#: learns nothing).
REVOKED_MESSAGE = "invalid or revoked token: check LOREG_TOKEN / --token"


def refuse_expired(principal: Principal, now: float | None = None) -> None:
    """401 if the principal's token has expired (checked against the clock, not a cache)."""
    if principal.expires_at is None:
        return
    if (time.time() if now is None else now) >= principal.expires_at:
        raise Unauthorized(
            f"token '{principal.name}' has expired: ask an admin for a new one "
            "(loreg token create ... --expires 30d)"
        )


def check_visible(principal: Principal, namespace: str, private: bool) -> None:
    """404 for a private namespace the caller cannot read (existence is not leaked)."""
    if private and not principal.can(namespace, "read"):
        raise NotFound(f"namespace '{namespace}' not found")


def require_scope(principal: Principal, namespace: str, private: bool, scope: str) -> None:
    """Raise unless the caller holds ``scope`` on the namespace.

    Private and unreadable: 404. Anonymous: 401 (a token is needed). Otherwise 403.
    """
    check_visible(principal, namespace, private)
    if principal.can(namespace, scope):
        return
    if not principal.authenticated:
        raise Unauthorized(
            f"this action needs a token with '{scope}' scope on namespace '{namespace}': "
            "pass --token or set LOREG_TOKEN"
        )
    raise Forbidden(f"token '{principal.name}' lacks '{scope}' scope on namespace '{namespace}'")
