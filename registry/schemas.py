"""Request and response bodies of the HTTP API (pydantic), and the documented error answers.

The request models validate input; the response models are the OpenAPI contract
(``/openapi.json``) and docs/http-api.md describes the same objects in prose.
Response models mirror the dicts the services build key for key and in the same
order, so declaring them changes no byte of a response.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Generic, Literal, TypeVar

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from loreg import vocabulary
from loreg.refs import MAX_VERSION
from loreg.vocabulary import ArtifactKind, Relation
from registry.errors import InvalidPath, InvalidRequest
from registry.validation.json_values import json_problem

SHA256_PATTERN = r"^[0-9a-f]{64}$"

if TYPE_CHECKING:
    Scope = vocabulary.Scope
    JobStatus = vocabulary.JobStatus
    JobTypeWord = vocabulary.JobType
    LineageNodeKindWord = vocabulary.LineageNodeKind
    LineageDirectionWord = vocabulary.LineageDirection
    CardStatusWord = vocabulary.CardStatus
else:  # the vocabulary's words as a Literal: OpenAPI keeps each enum inline in its schema
    Scope = Literal[tuple(vocabulary.Scope)]
    JobStatus = Literal[tuple(vocabulary.JobStatus)]
    JobTypeWord = Literal[tuple(vocabulary.JobType)]
    LineageNodeKindWord = Literal[tuple(vocabulary.LineageNodeKind)]
    LineageDirectionWord = Literal[tuple(vocabulary.LineageDirection)]
    CardStatusWord = Literal[tuple(vocabulary.CardStatus)]
#: Largest byte size (or timestamp) a request may carry: a signed 64-bit database column.
#: Every integer a request carries has an upper bound, so none overflows the database
#: driver (a 500); out-of-range values are a 422 naming the field.
MAX_INT64 = 2**63 - 1


class StrictBody(BaseModel):
    """A request body: unknown fields refused, every value storable (see ``_storable``)."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _storable(cls, data: Any) -> Any:
        """Refuse, before any field is read, what the database or JSON cannot hold.

        Nesting deeper than ``MAX_JSON_DEPTH`` (metadata, lineage params), numbers
        that are not finite (``1e400``), NUL characters and lone surrogates in
        any string or key. The 422 names the field.
        """
        problem = json_problem(data, skip=(BaseModel,))  # workers pass built models
        if problem is not None:
            where = problem.split(":", 1)[0]
            if where.startswith("files[") and where.endswith("].path"):
                raise InvalidPath(f"invalid file path ({problem})")
            raise InvalidRequest(f"invalid request: {problem}")
        return data


class FileEntry(StrictBody):
    """One file of an upload manifest."""

    path: str = Field(min_length=1, max_length=1024)
    size: int = Field(ge=0, le=MAX_INT64)
    sha256: str = Field(pattern=SHA256_PATTERN, description="lowercase hex sha256 of the bytes")


class ParentRef(StrictBody):
    """A lineage parent declared at publish time."""

    ref: str = Field(min_length=1, max_length=300)
    relation: Relation = Relation.CONTINUED_FROM
    params: dict[str, Any] = Field(default_factory=dict)


class UploadRequest(StrictBody):
    """Phase one of a publish: what the client intends to commit."""

    kind: ArtifactKind = ArtifactKind.ADAPTER
    namespace: str | None = Field(default=None, max_length=64)
    name: str = Field(min_length=1, max_length=256)
    files: list[FileEntry] = Field(min_length=1, max_length=1000)
    base_model: str | None = Field(default=None, max_length=256)
    description: str | None = Field(default=None, max_length=4096)
    metadata: dict[str, Any] = Field(default_factory=dict)
    parents: list[ParentRef] = Field(default_factory=list, max_length=64)
    revision: str | None = Field(default=None, max_length=128)


class CompletedPart(StrictBody):
    """A multipart part as uploaded to S3: its number and the ETag S3 returned."""

    part_number: int = Field(ge=1, le=10000)
    etag: str = Field(min_length=1, max_length=256)


class CompleteBlobRequest(StrictBody):
    """Body of ``POST /v1/uploads/{id}/blobs/{sha256}/complete``."""

    parts: list[CompletedPart] | None = None


class AliasRequest(StrictBody):
    """Body of ``PUT .../aliases/{alias}``."""

    version: int = Field(ge=1, le=MAX_VERSION)


class Grant(StrictBody):
    """A scope on a namespace (``*`` = every namespace)."""

    namespace: str = Field(min_length=1, max_length=64)
    scope: Scope


#: Longest lifetime a token may be given (``expires_in`` / ``expires_at``): ten years.
MAX_TOKEN_LIFETIME_S = 10 * 366 * 24 * 3600


class TokenRequest(StrictBody):
    """Body of ``POST /v1/tokens``; ``expires_at`` or ``expires_in`` (not both) sets an expiry."""

    name: str = Field(min_length=1, max_length=128)
    grants: list[Grant] = Field(min_length=1, max_length=100)
    default_namespace: str | None = Field(default=None, max_length=64)
    expires_at: AwareDatetime | None = Field(
        default=None, description="when the token stops working (ISO-8601 with a UTC offset)"
    )
    expires_in: int | None = Field(
        default=None, ge=1, le=MAX_TOKEN_LIFETIME_S, description="seconds from now"
    )

    @model_validator(mode="after")
    def _one_expiry(self) -> TokenRequest:
        """At most one way of saying when the token expires."""
        if self.expires_at is not None and self.expires_in is not None:
            raise InvalidRequest("give expires_at or expires_in, not both")
        return self


class PresetRequest(StrictBody):
    """Body of ``PUT /v1/presets/{name}``: the train params the preset holds."""

    params: dict[str, Any] = Field(
        description="train-job params: r and lora_alpha required; target_modules, steps, "
        "epochs, lr, seed, max_length, batch_size, eval_fraction optional"
    )
    description: str | None = Field(default=None, max_length=1024)


class NamespaceRequest(StrictBody):
    """Body of ``POST /v1/namespaces``."""

    name: str = Field(min_length=1, max_length=64)
    private: bool = False


# --- Errors -------------------------------------------------------------------------


class ErrorBody(BaseModel):
    """What went wrong: a stable code and a message that says how to fix it."""

    code: str = Field(description="stable machine-readable code, e.g. not_found, invalid_request")
    message: str = Field(description="what is wrong and what to do about it")
    details: Any = Field(
        default=None, description="optional structured detail (validation errors, mismatches)"
    )


class ErrorResponse(BaseModel):
    """The body of every non-2xx answer: ``{"error": {"code": ..., "message": ...}}``."""

    error: ErrorBody


def _error_doc(description: str) -> dict[str, Any]:
    return {"model": ErrorResponse, "description": description}


#: Every error answer of the API, by status; routes pick theirs with :func:`error_responses`.
ERROR_RESPONSES: dict[int, dict[str, Any]] = {
    400: _error_doc(
        "bad_request: the body is not valid JSON; invalid_cursor: a list's cursor was "
        "altered or belongs to another query (start again without one)"
    ),
    401: _error_doc("unauthorized: malformed, unknown or revoked token, or a token is needed"),
    403: _error_doc("forbidden: the token lacks the scope this action needs"),
    404: _error_doc("not_found: no such object, or it is in a private namespace"),
    409: _error_doc(
        "conflict or missing_blob: the request conflicts with the current state; "
        "files_missing: the version's bytes are gone from the store (details.missing)"
    ),
    410: _error_doc("upload_expired: the upload session expired or was already committed"),
    413: _error_doc("payload_too_large: the request body or a file is over a limit"),
    422: _error_doc(
        "invalid_request (schema errors, naming the field) or a validation code: "
        "invalid_name, invalid_ref, invalid_manifest, invalid_job, shape_mismatch, ..."
    ),
    500: _error_doc("internal: a bug; the server log has the traceback"),
    503: _error_doc(
        "database_unavailable, store_unavailable or broker_unavailable: a dependency is down; "
        "retry after the Retry-After header's seconds"
    ),
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The ``responses=`` of a route: the given error statuses plus 500 and 503.

    Declaring 422 here also replaces FastAPI's default ``HTTPValidationError``
    schema with ours, so every route with parameters lists 422.
    """
    return {status: ERROR_RESPONSES[status] for status in (*statuses, 500, 503)}


# --- Responses ----------------------------------------------------------------------

ItemT = TypeVar("ItemT")


class Page(BaseModel, Generic[ItemT]):
    """One page of a list (``registry.services.pagination``): pass ``next_cursor`` back
    as ``cursor`` with the same query parameters for the next page; null on the last."""

    items: list[ItemT]
    next_cursor: str | None = Field(
        description="opaque; the cursor of the next page, or null on the last page"
    )


Timestamp = Annotated[
    str, Field(description="ISO-8601 timestamp (UTC)", examples=["2025-01-01T12:00:00+00:00"])
]


class DependencyCheck(BaseModel):
    """One dependency's answer to the health check."""

    status: Literal["ok", "unavailable"]
    latency_ms: float = Field(description="how long the check took")
    error: str | None = Field(default=None, description="why it is unavailable (else null)")


class Liveness(BaseModel):
    """``GET /v1/livez``: the process is up (no dependency is checked)."""

    status: Literal["ok"]


class Health(BaseModel):
    """``GET /v1/health``: 200 when every dependency answers; else a 503 error whose
    ``details`` is this report."""

    status: Literal["ok", "unavailable"]
    version: str
    storage: str = Field(description="local or s3")
    database: str = Field(description="sqlite or postgresql")
    checks: dict[str, DependencyCheck] = Field(
        description="database, store, and broker when one is configured (LOREG_REDIS_URL)"
    )


class GrantView(BaseModel):
    """A scope the caller holds on a namespace (``*`` = every namespace)."""

    namespace: str
    scope: Scope


class WhoAmI(BaseModel):
    """``GET /v1/whoami``: who the bearer token belongs to."""

    authenticated: bool
    token_name: str | None
    default_namespace: str
    grants: list[GrantView]


class ResolvedFile(BaseModel):
    """One file of a version, with a short-lived download URL (no token needed)."""

    path: str
    size: int
    sha256: str = Field(description="lowercase hex sha256 of the bytes")
    url: str = Field(description="S3 presigned GET or signed /v1/blobs/{sha256} URL")


class LineageParent(BaseModel):
    """The parent of a lineage edge: an adapter version or a base model."""

    kind: LineageNodeKindWord
    ref: str | None = Field(description="canonical ref of the version, or the base model name")
    digest: str | None = None
    private: bool = Field(
        default=False,
        description="a version in a private namespace the caller cannot read: ref and digest "
        "are withheld",
    )


class LineageEdgeView(BaseModel):
    """How a version was derived from one parent."""

    relation: str = Field(description="continued_from, trained_from, combined_from, ...")
    parent: LineageParent
    params: dict[str, Any]


class LineageNode(LineageParent):
    """A node of a lineage graph answer (``GET /v1/lineage/...``)."""

    key: str = Field(description="unique within this answer (n0 is the root); edges name it")
    namespace: str | None = Field(description="a version's namespace (null otherwise or hidden)")
    name: str | None = Field(description="a version's adapter or dataset name")
    version: int | None = Field(description="a version's number")


class AncestryEdge(BaseModel):
    """One edge of a lineage graph: ``child`` was derived from ``parent``."""

    child: LineageNode
    relation: str
    parent: LineageNode
    params: dict[str, Any]
    direction: LineageDirectionWord = Field(
        description="up: found walking to parents; down: walking to dependents"
    )
    depth: int = Field(ge=1, description="edges from the root to this edge's far end")


class Ancestry(BaseModel):
    """``GET /v1/lineage/...``: every edge within ``depth`` of a version or base model,
    to its parents (``up``), its dependents (``down``) or both."""

    root: LineageNode
    direction: LineageDirectionWord
    depth: int = Field(description="the depth asked for (edges from the root)")
    nodes: list[LineageNode] = Field(description="every node of the edges, the root first")
    edges: list[AncestryEdge] = Field(description="nearest first (up edges before down edges)")
    truncated: bool = Field(description="true when the edge limit cut the walk short")
    depth_limited: bool = Field(description="true when edges go on past ``depth``")


class ResolvedVersion(BaseModel):
    """``GET /v1/resolve/{ref}``: a version manifest with download URLs (the SDK's pull path)."""

    ref: str = Field(
        description="canonical ref, e.g. default/medical-v3", examples=["default/medical-v3"]
    )
    namespace: str
    name: str
    version: int = Field(ge=1)
    digest: str = Field(description="sha256:<hex> of the manifest")
    files: list[ResolvedFile]
    config: dict[str, Any] | None = Field(description="the PEFT adapter_config.json")
    base_model: str | None
    base_model_registered: bool
    aliases: list[str]
    description: str | None
    metadata: dict[str, Any]
    lineage: list[LineageEdgeView]
    summary: dict[str, Any] = Field(
        description="r, lora_alpha, target_modules, parameter_count, ..."
    )
    size: int = Field(description="total bytes of the files")
    created_at: Timestamp
    created_by: str | None


class AliasView(BaseModel):
    """``PUT``/``DELETE .../aliases/{alias}``: where the alias points now and before."""

    alias: str
    version: int | None = Field(description="the version it points at now (null once deleted)")
    previous: int | None = Field(description="the version it pointed at before (null if new)")


class JobInputView(BaseModel):
    """An input of a job, its ref pinned to a version at submission."""

    ref: str
    weight: float


class JobView(BaseModel):
    """A job: ``POST /v1/jobs`` (202), ``GET /v1/jobs/{id}``, ``POST .../cancel``."""

    id: str
    type: JobTypeWord
    status: JobStatus
    queue: str = Field(description="gpu or cpu")
    namespace: str
    output: str = Field(description="name of the adapter (or base model, for merge) to create")
    inputs: list[JobInputView]
    params: dict[str, Any]
    progress: float = Field(description="0..1")
    message: str | None
    error: str | None = Field(description="why the job failed (its last error)")
    attempts: int
    cancel_requested: bool
    result: dict[str, Any] | None = Field(description="ref, digest, ... of what the job registered")
    created_by: str | None
    created_at: Timestamp
    started_at: Timestamp | None
    heartbeat_at: Timestamp | None
    finished_at: Timestamp | None


class JobLog(BaseModel):
    """``GET /v1/jobs/{id}/logs``: the tail of a job's log."""

    id: str
    status: JobStatus
    log: str


# --- Responses of the tokens, catalog, base-model, publish and admin routes -----------
# Each mirrors the dict its service builds, key for key and in the same order, with
# the same nulls; a key the service leaves out is a field with a default that the route
# drops with ``response_model_exclude_unset`` (only ``BlobPlan.upload``).


class TokenCreated(BaseModel):
    """``POST /v1/tokens`` (201): the new token; ``token`` is the secret, shown only here."""

    id: int
    name: str
    token: str = Field(description="the bearer secret; only its hash is stored")
    grants: list[GrantView]
    default_namespace: str
    created_at: Timestamp
    expires_at: Timestamp | None = Field(description="when it stops working (null: never)")


class TokenView(BaseModel):
    """A token as ``GET /v1/tokens`` lists it and ``DELETE /v1/tokens/{id}`` answers (no
    secret: only its first characters)."""

    id: int
    name: str
    prefix: str = Field(description="the first 8 characters of the secret, to recognise it")
    grants: list[GrantView]
    default_namespace: str
    created_by: str | None
    created_at: Timestamp
    expires_at: Timestamp | None = Field(description="when it stops working (null: never)")
    revoked_at: Timestamp | None = Field(description="when it was revoked (null: not revoked)")
    active: bool = Field(description="neither revoked nor expired now")


class AuditEventView(BaseModel):
    """One row of the audit log (``GET /v1/audit``)."""

    id: int
    at: Timestamp
    actor: str = Field(description="the token name (or job:<id>, mirror:<id>) that acted")
    action: str = Field(description="what was done, e.g. version.publish, alias.set")
    namespace: str | None = Field(description="the namespace acted on (null: global)")
    target: str | None = Field(description="what was acted on, e.g. medical-v3, medical@prod")
    detail: dict[str, Any] = Field(
        description="before and after (null when the thing did not exist before or after)"
    )


class PresetView(BaseModel):
    """A training preset: a built-in (``namespace`` null, read-only) or a namespace's own."""

    name: str
    namespace: str | None = Field(description="the namespace it belongs to (null: built-in)")
    builtin: bool
    description: str | None
    params: dict[str, Any] = Field(description="the train params a job naming it gets")
    created_by: str | None
    created_at: Timestamp | None
    updated_by: str | None
    updated_at: Timestamp | None


class NamespaceView(BaseModel):
    """A namespace: ``GET /v1/namespaces`` (each) and ``POST /v1/namespaces`` (201)."""

    name: str
    private: bool
    created_at: Timestamp


class DeprecationView(BaseModel):
    """An adapter's deprecation: why, and what to use instead."""

    message: str
    successor: str | None = Field(description="the ref to use instead (validated when set)")
    deprecated_by: str | None
    deprecated_at: Timestamp | None


class YankView(BaseModel):
    """A version's yank: latest and ``main`` skip it; exact refs still pull it."""

    yanked_at: Timestamp
    yanked_by: str | None
    reason: str | None


_LATEST_DOC = "the version a bare name resolves to: the highest not yanked (null if none)"


class AdapterSummary(BaseModel):
    """``GET /v1/adapters`` (each): an adapter (or dataset) and its latest version."""

    namespace: str
    name: str
    description: str | None
    base_model: str | None
    latest_version: int | None = Field(description=_LATEST_DOC)
    versions: int = Field(description="how many versions it has")
    aliases: dict[str, int] = Field(description="alias name -> version number")
    updated_at: Timestamp
    deprecation: DeprecationView | None = Field(description="null unless deprecated")


class VersionSummary(BaseModel):
    """One version: ``GET /v1/adapters/{namespace}/{name}/versions`` (each), and the
    adapter detail's ``recent_versions``."""

    version: int
    digest: str = Field(description="sha256:<hex> of the manifest")
    size: int = Field(description="total bytes of the files")
    file_count: int
    created_at: Timestamp
    created_by: str | None
    base_model: str | None
    yanked: YankView | None = Field(description="null unless yanked")
    card_status: CardStatusWord = Field(
        description="the version's computed card: pending, ready or failed (GET .../card)"
    )


class AdapterDetail(AdapterSummary):
    """``GET /v1/adapters/{namespace}/{name}``: the summary (``versions`` is the count)
    and the first page of its versions, newest first."""

    recent_versions: Page[VersionSummary] = Field(
        description="the newest versions (at most 20), newest first; pass next_cursor as "
        "cursor to GET /v1/adapters/{namespace}/{name}/versions for the older ones"
    )


class YankRequest(StrictBody):
    """``POST .../versions/{number}/yank``: why (shown to whoever still pulls it)."""

    reason: str | None = Field(None, max_length=1024)


class YankResult(BaseModel):
    """``POST .../yank`` and ``.../unyank``: the version and its yank now (null: unyanked)."""

    ref: str = Field(description="the version, e.g. default/medical-v3")
    yanked: YankView | None
    latest_version: int | None = Field(description=_LATEST_DOC)


class DeprecateRequest(StrictBody):
    """``PUT .../deprecation``: the message and, optionally, the ref to use instead."""

    message: str = Field(min_length=1, max_length=1024)
    successor: str | None = Field(None, max_length=256)


class DeprecationResult(BaseModel):
    """``PUT``/``DELETE .../deprecation``: the adapter's deprecation now (null: cleared)."""

    namespace: str
    name: str
    deprecation: DeprecationView | None


class Dependent(BaseModel):
    """A version or base model derived (directly or not) from a version being deleted."""

    kind: str = Field(description="version or base_model")
    ref: str | None = Field(description="null when it is in a namespace the caller cannot read")
    private: bool
    depth: int = Field(description="1: made directly from a deleted version; 2: from such a one")


class DeleteResult(BaseModel):
    """``DELETE`` of a version or an adapter: what was removed."""

    deleted_versions: list[str] = Field(description="refs of the versions removed")
    deleted_aliases: list[str] = Field(description="name@alias of the aliases removed with them")
    adapter_deleted: bool
    unreferenced_blobs: int = Field(
        description="blobs no longer used by anything: gc removes them after the grace period"
    )


class BaseModelSummary(BaseModel):
    """``GET /v1/base-models`` (each): a registered base model."""

    name: str
    revision: str | None
    architecture: str | None
    model_type: str | None
    module_count: int = Field(description="how many linear modules it has")
    digest: str = Field(description="sha256:<hex> of the manifest")
    size: int = Field(description="total bytes of the files")
    created_at: Timestamp


class BaseModelDetail(BaseModelSummary):
    """``GET /v1/base-models/{name}``: config, linear-module shapes, lineage, files."""

    config: dict[str, Any] | None = Field(description="the model's config.json")
    modules: dict[str, list[int]] = Field(
        description="linear module name -> [out_features, in_features]"
    )
    metadata: dict[str, Any]
    lineage: list[LineageEdgeView]
    files: list[ResolvedFile]


class PartUpload(BaseModel):
    """One part of a multipart upload: where to PUT it."""

    part_number: int
    url: str


class ApiUpload(BaseModel):
    """Send the bytes to the API: ``PUT url`` with the bearer token (no complete call)."""

    method: Literal["api"]
    url: str
    headers: dict[str, str]
    complete_url: None


class PutUpload(BaseModel):
    """Send the bytes in one presigned ``PUT url`` with ``headers``, then ``POST complete_url``."""

    method: Literal["put"]
    url: str
    headers: dict[str, str]
    complete_url: str


class MultipartUpload(BaseModel):
    """``PUT`` each part (``part_size`` bytes, the last shorter), then ``POST complete_url``."""

    method: Literal["multipart"]
    url: None
    headers: dict[str, str]
    part_size: int
    parts: list[PartUpload]
    complete_url: str


UploadInstructions = Annotated[
    ApiUpload | PutUpload | MultipartUpload, Field(discriminator="method")
]


class BlobPlan(BaseModel):
    """One distinct blob of an upload: present already, or how to send it."""

    sha256: str
    size: int
    present: bool = Field(description="true: the store holds it for this caller; send nothing")
    upload: UploadInstructions | None = Field(
        default=None, description="how to send the bytes; absent when present is true"
    )


class UploadCreated(BaseModel):
    """``POST /v1/uploads`` (201): the upload session and which blobs to send."""

    upload_id: str
    expires_at: Timestamp
    blobs: list[BlobPlan] = Field(description="one entry per distinct blob")


class BlobStored(BaseModel):
    """``PUT /v1/uploads/{id}/blobs/{sha256}`` and ``POST .../complete``: the blob is stored."""

    sha256: str
    size: int
    present: Literal[True]


class CommitResult(BaseModel):
    """``POST /v1/uploads/{id}/commit``: 201 with the new version, or 200 with the same one."""

    created: bool = Field(description="false when an identical version already existed")
    resolved: ResolvedVersion | BaseModelDetail = Field(
        description="the resolve object of the version, or the base-model object"
    )


class GcReport(BaseModel):
    """``POST /v1/admin/gc``: what garbage collection removed."""

    expired_uploads: int
    deleted_blobs: int
    freed_bytes: int


class BlobProblem(BaseModel):
    """A blob fsck marked: missing, another size, or (hashing) other bytes."""

    sha256: str
    problem: Literal["missing", "size", "sha256"]
    expected_size: int | None
    found_size: int | None


class AffectedVersion(BaseModel):
    """A version or base model holding a marked blob: it resolves 409 ``files_missing``."""

    kind: ArtifactKind
    ref: str = Field(description="canonical ref of the version, or the base model name")
    missing: list[str] = Field(description="paths of the files affected")


class FsckReport(BaseModel):
    """``POST /v1/admin/fsck``: what the check found, marked and cleared."""

    ok: bool = Field(description="true when no blob is marked after this pass")
    verify_hashes: bool
    blobs_checked: int
    bytes_checked: int
    bytes_hashed: int
    marked: int
    cleared: int
    problems: list[BlobProblem] = Field(description="every blob marked after this pass")
    versions: list[AffectedVersion]
    duration_s: float


class RepairReport(BaseModel):
    """``POST /v1/admin/repair-json``: the stored JSON values rewritten."""

    repaired: list[str] = Field(description='"<table>.<column> id=<n>: <problem>" each')


# --- Mirrors ------------------------------------------------------------------------

#: Longest sync interval a mirror may have (a year), and the shortest.
MAX_MIRROR_INTERVAL_S = 366 * 24 * 3600
MIN_MIRROR_INTERVAL_S = 1


class MirrorRequest(StrictBody):
    """Body of ``POST /v1/mirrors``: keep ``namespace/name`` in sync with an upstream repo."""

    repo: str = Field(min_length=3, max_length=200, description="upstream model repo, org/name")
    revision: str | None = Field(
        default=None, max_length=128, description="branch, tag or commit (default branch if null)"
    )
    namespace: str | None = Field(default=None, max_length=64)
    name: str = Field(min_length=1, max_length=64, description="the target adapter")
    interval_s: int | None = Field(
        default=None,
        ge=MIN_MIRROR_INTERVAL_S,
        le=MAX_MIRROR_INTERVAL_S,
        description="seconds between scheduled syncs; null: only when asked",
    )


class MirrorView(BaseModel):
    """A mirror: ``GET /v1/mirrors`` (each), ``POST /v1/mirrors`` (201), ``DELETE``."""

    id: int
    direction: Literal["import"] = Field(description="import: upstream -> loreg")
    upstream: str = Field(description="hf://org/name[@revision]")
    repo: str
    revision: str | None
    hub_url: str = Field(description="the upstream hub (the server's LOREG_HUB_URL)")
    namespace: str
    name: str
    interval_s: int | None
    next_sync_at: Timestamp | None
    last_job_id: str | None
    last_status: JobStatus | None = Field(description="status of the last sync job")
    last_commit: str | None = Field(description="upstream commit of the last successful sync")
    last_error: str | None
    last_synced_at: Timestamp | None
    created_by: str | None
    created_at: Timestamp


class MirrorSync(BaseModel):
    """One mirror's sync: the job submitted now, or the one still in flight."""

    mirror: MirrorView
    submitted: bool = Field(description="false when an earlier sync job is still queued or running")
    job: JobView


# --- Pages of the audit, token and preset lists (parametrised here, so their module is
# this one) -------------------------------------------------------------------------

TokenPage = Page[TokenView]
AuditPage = Page[AuditEventView]
PresetPage = Page[PresetView]


class SearchHit(BaseModel):
    """``GET /v1/search`` (each item): an adapter and its current version."""

    namespace: str
    name: str
    ref: str = Field(description="ref of the current version, e.g. team/med-lora-v3")
    kind: str = Field(description="adapter or dataset")
    description: str | None
    base_model: str | None
    task_type: str | None = Field(description="PEFT task_type of the current version")
    peft_type: str | None = Field(description="PEFT peft_type, e.g. LORA")
    rank: int | None = Field(description="LoRA rank r of the current version")
    tags: list[str] = Field(description="tags of the current version (metadata.tags)")
    version: int | None = Field(
        description="the current version: the latest not yanked (the latest if all are)"
    )
    versions: int = Field(description="how many versions the adapter has")
    has_alias: bool = Field(description="whether any alias points at one of its versions")
    yanked: bool = Field(description="true when every version is yanked")
    created_at: Timestamp
    updated_at: Timestamp = Field(description="when the current version was published")
    score: float | None = Field(
        description="relevance (higher is better) when q is given, else null; comparable "
        "within one search only"
    )


#: ``GET /v1/search``: a page of hits (parametrized here, so the model is this module's).
SearchPage = Page[SearchHit]


class VersionCardView(BaseModel):
    """``GET /v1/adapters/{namespace}/{name}/versions/{n}/card``: a version's computed card."""

    namespace: str
    name: str
    version: int
    ref: str
    digest: str = Field(description="sha256:<hex> of the manifest")
    card_status: CardStatusWord = Field(
        description="pending (its card job has not ended), ready or failed (see error)"
    )
    card: dict[str, Any] | None = Field(
        description="when ready: the figures computed from the weights (per module rank, alpha, "
        "scaling, norm, singular values, effective rank, energy) merged with a job result's card"
    )
    readme: str | None = Field(description="when ready: the version's README.md (bounded)")
    error: str | None = Field(description="why the card failed (null unless failed)")
    job_id: str | None = Field(description="the card job that owns the card (null: not yet)")
    updated_at: Timestamp | None


class CardBackfillReport(BaseModel):
    """``POST /v1/admin/cards/backfill``: one bounded batch of card jobs submitted."""

    submitted: int = Field(description="versions given a pending card and a card job now")
    remaining: int = Field(description="versions still without a card (call again until 0)")
