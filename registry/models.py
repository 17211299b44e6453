"""Database tables (SQLModel) of the registry.

Runs on Postgres and SQLite alike: JSON columns use the generic ``JSON`` type,
datetimes are stored timezone-aware in UTC, byte sizes are 64-bit.
The request/response schemas live in ``registry.schemas``.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


def _ts(nullable: bool = False, index: bool = False) -> Any:
    return Field(
        default_factory=utcnow if not nullable else None,
        sa_type=sa.DateTime(timezone=True),
        nullable=nullable,
        index=index,
    )


def _json(nullable: bool = True) -> Any:
    return Field(default=None, sa_type=sa.JSON, nullable=nullable)


def _bigint() -> Any:
    return Field(sa_type=sa.BigInteger, nullable=False)


class Namespace(SQLModel, table=True):
    """An owner of adapters (team or user); private ones are hidden from outsiders."""

    __tablename__ = "namespaces"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=64, unique=True, index=True)
    private: bool = Field(default=False)
    created_at: datetime = _ts()


class ApiToken(SQLModel, table=True):
    """An API token; only the sha256 of the secret is stored."""

    __tablename__ = "api_tokens"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=128)
    token_hash: str = Field(max_length=64, unique=True, index=True)
    prefix: str = Field(max_length=16)
    default_namespace: str = Field(default="default", max_length=64)
    created_by: str | None = Field(default=None, max_length=128)
    created_at: datetime = _ts()
    revoked_at: datetime | None = _ts(nullable=True)
    #: When the token stops working on its own (None: never); checked on every request.
    expires_at: datetime | None = _ts(nullable=True)


class TokenGrant(SQLModel, table=True):
    """A scope (read/write/admin) of a token on a namespace (``*`` = all)."""

    __tablename__ = "token_grants"
    __table_args__ = (sa.UniqueConstraint("token_id", "namespace"),)

    id: int | None = Field(default=None, primary_key=True)
    token_id: int = Field(foreign_key="api_tokens.id", index=True, ondelete="CASCADE")
    namespace: str = Field(max_length=64)
    scope: str = Field(max_length=8)


class Blob(SQLModel, table=True):
    """A verified, content-addressed object in the store (stored once)."""

    __tablename__ = "blobs"

    sha256: str = Field(primary_key=True, max_length=64)
    size: int = _bigint()
    created_at: datetime = _ts(index=True)
    #: When the last version or base model holding it was deleted (set by the delete):
    #: gc counts its grace period from here, or from ``created_at`` when never set.
    unreferenced_since: datetime | None = _ts(nullable=True)


class BlobFault(SQLModel, table=True):
    """A blob the store no longer holds intact (found by fsck or by a commit).

    ``problem`` is ``missing`` (no object), ``size`` (the object has another size;
    ``found_size``) or ``sha256`` (same size, other bytes: found only when hashing).
    Every version or base model holding the blob resolves 409 ``files_missing``
    until its bytes are sent again (a push re-sends it) or a later fsck finds it
    intact; then the row is deleted.
    """

    __tablename__ = "blob_faults"

    sha256: str = Field(
        primary_key=True, foreign_key="blobs.sha256", max_length=64, ondelete="CASCADE"
    )
    problem: str = Field(max_length=16)
    found_size: int | None = Field(default=None, sa_type=sa.BigInteger, nullable=True)
    found_at: datetime = _ts()


class Adapter(SQLModel, table=True):
    """``namespace/name``: a series of immutable versions."""

    __tablename__ = "adapters"
    __table_args__ = (
        sa.UniqueConstraint("namespace_id", "name"),
        # the keyset orders of GET /v1/adapters?sort=updated (registry.services.listings)
        sa.Index("ix_adapters_updated_at_id", "updated_at", "id"),
        sa.Index("ix_adapters_namespace_id_updated_at_id", "namespace_id", "updated_at", "id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    namespace_id: int = Field(foreign_key="namespaces.id", index=True)
    name: str = Field(max_length=64)
    kind: str = Field(default="adapter", max_length=16)  # "adapter" | "dataset"
    description: str | None = Field(default=None, max_length=4096)
    base_model: str | None = Field(default=None, max_length=256)
    created_at: datetime = _ts()
    updated_at: datetime = _ts()
    #: Deprecation (``loreg deprecate``): a message and an optional successor ref;
    #: every resolve of one of its versions carries a warning while it is set.
    deprecated_message: str | None = Field(default=None, max_length=1024)
    deprecated_successor: str | None = Field(default=None, max_length=256)
    deprecated_by: str | None = Field(default=None, max_length=128)
    deprecated_at: datetime | None = _ts(nullable=True)


class BaseModelRecord(SQLModel, table=True):
    """A base model entry: architecture and the shape of every linear module."""

    __tablename__ = "base_models"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=256, unique=True, index=True)
    revision: str | None = Field(default=None, max_length=128)
    architecture: str | None = Field(default=None, max_length=128)
    model_type: str | None = Field(default=None, max_length=64)
    config: dict | None = _json()
    modules: dict | None = _json()
    meta: dict | None = _json()
    digest: str = Field(max_length=71)
    size: int = _bigint()
    job_id: str | None = Field(default=None, max_length=32, unique=True)
    created_by: str | None = Field(default=None, max_length=128)
    created_at: datetime = _ts()


class BaseModelFile(SQLModel, table=True):
    """One file of a base model, pointing at a blob."""

    __tablename__ = "base_model_files"
    __table_args__ = (sa.UniqueConstraint("base_model_id", "path"),)

    id: int | None = Field(default=None, primary_key=True)
    base_model_id: int = Field(foreign_key="base_models.id", index=True, ondelete="CASCADE")
    path: str = Field(max_length=1024)
    blob_sha256: str = Field(foreign_key="blobs.sha256", max_length=64, index=True)
    size: int = _bigint()


#: The versions a bare ref (latest) may select: the newest unyanked one is one
#: backward step of this partial index (docs/design.md §14).
UNYANKED = sa.text("yanked_at IS NULL")


class Version(SQLModel, table=True):
    """An immutable version of an adapter, identified by number and digest.

    Its files never change; ``yanked_*`` (``loreg yank``) is the one mutable fact:
    a yanked version is skipped by latest and ``main`` but still pulls by exact ref.
    """

    __tablename__ = "versions"
    __table_args__ = (
        sa.UniqueConstraint("adapter_id", "number"),
        sa.UniqueConstraint("adapter_id", "digest"),
        sa.Index(
            "ix_versions_unyanked_number",
            "adapter_id",
            "number",
            postgresql_where=UNYANKED,
            sqlite_where=UNYANKED,
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    adapter_id: int = Field(foreign_key="adapters.id", index=True)
    number: int
    digest: str = Field(max_length=71, index=True)
    config: dict | None = _json()
    summary: dict | None = _json()
    meta: dict | None = _json()
    description: str | None = Field(default=None, max_length=4096)
    base_model: str | None = Field(default=None, max_length=256)
    base_model_id: int | None = Field(default=None, foreign_key="base_models.id")
    size: int = _bigint()
    job_id: str | None = Field(default=None, max_length=32, unique=True)
    created_by: str | None = Field(default=None, max_length=128)
    created_at: datetime = _ts()
    yanked_at: datetime | None = _ts(nullable=True)
    yanked_by: str | None = Field(default=None, max_length=128)
    yank_reason: str | None = Field(default=None, max_length=1024)


class VersionFile(SQLModel, table=True):
    """One file of a version, pointing at a blob."""

    __tablename__ = "version_files"
    __table_args__ = (sa.UniqueConstraint("version_id", "path"),)

    id: int | None = Field(default=None, primary_key=True)
    version_id: int = Field(foreign_key="versions.id", index=True, ondelete="CASCADE")
    path: str = Field(max_length=1024)
    blob_sha256: str = Field(foreign_key="blobs.sha256", max_length=64, index=True)
    size: int = _bigint()


class VersionCard(SQLModel, table=True):
    """A version's computed card (docs/design.md, Cards): one row per version.

    ``pending`` from publish (or back-fill) until the ``card`` job ``job_id`` ends it
    ``ready`` (``card``: the figures computed from the weights, merged with a job
    result's own card facts; ``readme``: the version's README.md, bounded) or
    ``failed`` (``error``). Only the job named in ``job_id`` may end the row, so a
    retry supersedes an older job.
    """

    __tablename__ = "version_cards"

    version_id: int = Field(primary_key=True, foreign_key="versions.id", ondelete="CASCADE")
    status: str = Field(default="pending", max_length=16, index=True)
    job_id: str | None = Field(default=None, max_length=32)
    card: dict | None = _json()
    readme: str | None = Field(default=None, sa_type=sa.Text)
    error: str | None = Field(default=None, max_length=4096)
    updated_at: datetime = _ts()


class Alias(SQLModel, table=True):
    """A movable name (``prod``) on one version of an adapter."""

    __tablename__ = "aliases"
    __table_args__ = (sa.UniqueConstraint("adapter_id", "name"),)

    id: int | None = Field(default=None, primary_key=True)
    adapter_id: int = Field(foreign_key="adapters.id", index=True)
    name: str = Field(max_length=64)
    version_id: int = Field(foreign_key="versions.id", index=True)
    updated_by: str | None = Field(default=None, max_length=128)
    updated_at: datetime = _ts()


class UpstreamCommit(SQLModel, table=True):
    """A commit of a repo on an upstream Hub: the lineage parent of a version mirrored from it.

    One row per ``(hub_url, repo_id, commit)``; ``lineage_edges.parent_upstream_id``
    points here. It is a fact about the upstream, so it holds no permissions of its own.
    """

    __tablename__ = "upstream_commits"
    __table_args__ = (sa.UniqueConstraint("hub_url", "repo_id", "commit"),)

    id: int | None = Field(default=None, primary_key=True)
    hub_url: str = Field(max_length=512)
    repo_id: str = Field(max_length=256)
    commit: str = Field(max_length=64)
    created_at: datetime = _ts()


class LineageEdge(SQLModel, table=True):
    """child (a version or base model) <- parent (a version, a base model or an upstream
    commit), relation, params."""

    __tablename__ = "lineage_edges"

    id: int | None = Field(default=None, primary_key=True)
    child_version_id: int | None = Field(
        default=None, foreign_key="versions.id", index=True, ondelete="CASCADE"
    )
    child_base_model_id: int | None = Field(
        default=None, foreign_key="base_models.id", index=True, ondelete="CASCADE"
    )
    relation: str = Field(max_length=32)
    parent_version_id: int | None = Field(default=None, foreign_key="versions.id", index=True)
    parent_base_model_id: int | None = Field(default=None, foreign_key="base_models.id", index=True)
    parent_upstream_id: int | None = Field(
        default=None, foreign_key="upstream_commits.id", index=True
    )
    params: dict | None = _json()
    created_at: datetime = _ts()


class UploadSession(SQLModel, table=True):
    """Phase one of a publish: the declared manifest, until it is committed or expires."""

    __tablename__ = "upload_sessions"

    id: str = Field(default_factory=lambda: uuid.uuid4().hex, primary_key=True, max_length=32)
    kind: str = Field(max_length=16)
    namespace: str | None = Field(default=None, max_length=64)
    name: str = Field(max_length=256)
    spec: dict = Field(sa_type=sa.JSON, nullable=False)
    multipart: dict | None = _json()
    status: str = Field(default="open", max_length=16)
    created_by: str | None = Field(default=None, max_length=128)
    created_at: datetime = _ts()
    expires_at: datetime = Field(sa_type=sa.DateTime(timezone=True), nullable=False, index=True)
    result: dict | None = _json()


class UploadBlob(SQLModel, table=True):
    """A blob an upload session delivered itself: its proof of holding those bytes.

    A blob already stored is offered as ``present`` only to callers who can read
    a version holding it (or who sent it in an earlier upload); anyone else must
    send the bytes, so knowing a private file's sha256 is not enough to publish it.
    """

    __tablename__ = "upload_blobs"

    upload_id: str = Field(
        primary_key=True, foreign_key="upload_sessions.id", max_length=32, ondelete="CASCADE"
    )
    sha256: str = Field(primary_key=True, max_length=64, index=True)
    received_at: datetime = _ts()


class AuditEvent(SQLModel, table=True):
    """Who did what, when: one row per action, ``detail`` holding ``before`` and ``after``.

    Listed newest first by ``(at, id)`` (``GET /v1/audit``), also within one namespace.
    """

    __tablename__ = "audit_events"
    __table_args__ = (
        sa.Index("ix_audit_events_at_id", "at", "id"),
        sa.Index("ix_audit_events_namespace_at_id", "namespace", "at", "id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = _ts(index=True)
    actor: str | None = Field(default=None, max_length=128)
    action: str = Field(max_length=32)
    namespace: str | None = Field(default=None, max_length=64, index=True)
    target: str | None = Field(default=None, max_length=512)
    detail: dict | None = _json()


class Job(SQLModel, table=True):
    """A job on adapters; this row is the source of truth, Celery only dispatches it."""

    __tablename__ = "jobs"
    # the keyset order of GET /v1/jobs: newest first, the id breaking ties
    __table_args__ = (sa.Index("ix_jobs_created_at_id", "created_at", "id"),)

    id: str = Field(default_factory=lambda: uuid.uuid4().hex, primary_key=True, max_length=32)
    type: str = Field(max_length=16, index=True)
    status: str = Field(default="queued", max_length=16, index=True)
    queue: str = Field(default="cpu", max_length=16)
    namespace: str = Field(max_length=64, index=True)
    output: str = Field(max_length=256)
    inputs: list | None = Field(default=None, sa_type=sa.JSON)
    params: dict | None = _json()
    progress: float = Field(default=0.0)
    message: str | None = Field(default=None, max_length=1024)
    error: str | None = Field(default=None, max_length=4096)
    log_tail: str | None = Field(default=None, sa_type=sa.Text)
    attempts: int = Field(default=0)
    cancel_requested: bool = Field(default=False)
    worker: str | None = Field(default=None, max_length=256)
    result: dict | None = _json()
    created_by: str | None = Field(default=None, max_length=128)
    created_at: datetime = _ts(index=True)
    enqueued_at: datetime | None = _ts(nullable=True)
    started_at: datetime | None = _ts(nullable=True)
    heartbeat_at: datetime | None = _ts(nullable=True)
    finished_at: datetime | None = _ts(nullable=True)


class Mirror(SQLModel, table=True):
    """An upstream Hub repo kept in sync with a loreg adapter (``loreg mirror add``).

    ``direction`` is ``import`` (upstream -> loreg); ``interval_s`` null means
    "synced only when asked". ``next_sync_at`` is the scheduler's claim: a pass
    advances it with a conditional UPDATE before it submits a job, so several
    scheduler loops submit one job per due mirror. ``last_*`` are copied from the
    mirror's last job once it ends.
    """

    __tablename__ = "mirrors"
    __table_args__ = (sa.UniqueConstraint("direction", "namespace", "name"),)

    id: int | None = Field(default=None, primary_key=True)
    direction: str = Field(default="import", max_length=16)
    repo_id: str = Field(max_length=256)
    revision: str | None = Field(default=None, max_length=128)
    namespace: str = Field(max_length=64, index=True)
    name: str = Field(max_length=64)
    interval_s: int | None = Field(default=None)
    next_sync_at: datetime | None = _ts(nullable=True, index=True)
    last_job_id: str | None = Field(default=None, max_length=32)
    last_status: str | None = Field(default=None, max_length=16)
    last_commit: str | None = Field(default=None, max_length=64)
    last_error: str | None = Field(default=None, max_length=4096)
    last_synced_at: datetime | None = _ts(nullable=True)
    created_by: str | None = Field(default=None, max_length=128)
    created_at: datetime = _ts()


class TrainPreset(SQLModel, table=True):
    """A namespace's named LoRA training config (``loreg preset save``).

    ``params`` holds train-job params (``r``, ``lora_alpha``, ``target_modules``, ...),
    checked by :class:`registry.job_params.PresetParams`; a train job naming the preset
    gets a copy of them at submission. The built-ins (``loreg.vocabulary.Preset``) are
    not rows: they are code, the same in every namespace, and their names are reserved.
    """

    __tablename__ = "presets"
    __table_args__ = (sa.UniqueConstraint("namespace", "name"),)

    id: int | None = Field(default=None, primary_key=True)
    namespace: str = Field(max_length=64)
    name: str = Field(max_length=64)
    description: str | None = Field(default=None, max_length=1024)
    params: dict = Field(sa_type=sa.JSON, nullable=False)
    created_by: str | None = Field(default=None, max_length=128)
    created_at: datetime = _ts()
    updated_by: str | None = Field(default=None, max_length=128)
    updated_at: datetime = _ts()


class SearchDocument(SQLModel, table=True):
    """What ``GET /v1/search`` finds: one row per adapter, describing its current version.

    The current version is the adapter's latest version that is not yanked; ``yanked``
    is true when every version is. Written by
    :func:`registry.services.search_index.refresh_adapter` in the transaction of each
    change to the adapter (publish, alias set/remove, ...). Besides these columns the
    text index lives in engine-specific objects the migration creates (names in
    :data:`SEARCH_FTS_OBJECTS`): the ``search_vector`` tsvector column and its GIN index
    on Postgres, the ``search_fts`` FTS5 table on SQLite.
    """

    __tablename__ = "search_documents"
    __table_args__ = (
        sa.Index("ix_search_documents_name_id", "name", "adapter_id"),
        sa.Index("ix_search_documents_created_id", "created_at", "adapter_id"),
        sa.Index("ix_search_documents_base_model_created", "base_model", "created_at"),
    )

    adapter_id: int = Field(
        primary_key=True,
        foreign_key="adapters.id",
        ondelete="CASCADE",
        sa_column_kwargs={"autoincrement": False},
    )
    namespace_id: int = Field(foreign_key="namespaces.id", index=True)
    namespace: str = Field(max_length=64)
    name: str = Field(max_length=64)
    kind: str = Field(max_length=16)
    description: str | None = Field(default=None, max_length=4096)
    base_model: str | None = Field(default=None, max_length=256)
    task_type: str | None = Field(default=None, max_length=64, index=True)
    peft_type: str | None = Field(default=None, max_length=64)
    rank: int | None = Field(default=None, index=True)
    tags: list | None = Field(default=None, sa_type=sa.JSON)
    card_text: str | None = Field(default=None, sa_type=sa.Text)
    version_id: int | None = Field(default=None, foreign_key="versions.id", ondelete="SET NULL")
    version: int | None = Field(default=None)
    versions: int = Field(default=0)
    has_alias: bool = Field(default=False)
    yanked: bool = Field(default=False)
    format: int = Field(default=1)
    created_at: datetime = _ts()
    updated_at: datetime = _ts()


class SearchDocumentTag(SQLModel, table=True):
    """One (lower-cased) tag of a search document: the ``tags`` filter's index."""

    __tablename__ = "search_document_tags"
    __table_args__ = (sa.Index("ix_search_document_tags_tag_adapter", "tag", "adapter_id"),)

    adapter_id: int = Field(
        primary_key=True,
        foreign_key="search_documents.adapter_id",
        ondelete="CASCADE",
        sa_column_kwargs={"autoincrement": False},
    )
    tag: str = Field(primary_key=True, max_length=64)


class MaintenanceLease(SQLModel, table=True):
    """Which process runs a periodic maintenance pass (``fsck``) across the deployment,
    and until when: the pass runs where the lease is held (:mod:`registry.services.leases`).
    """

    __tablename__ = "maintenance_leases"

    name: str = Field(primary_key=True, max_length=64)
    holder: str = Field(max_length=128)
    expires_at: datetime = _ts()


#: Full-text objects migration 0011 creates outside the models (engine-specific; the
#: alembic comparison skips them: migrations/env.py).
SEARCH_FTS_OBJECTS = frozenset(
    {
        "search_vector",  # Postgres: search_documents.search_vector (tsvector)
        "ix_search_documents_search_vector",  # Postgres: its GIN index
        "search_fts",  # SQLite: the FTS5 table and its shadow tables
        "search_fts_data",
        "search_fts_idx",
        "search_fts_content",
        "search_fts_docsize",
        "search_fts_config",
    }
)
