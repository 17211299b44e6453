"""The closed sets of words the API, the workers, the SDK and the CLI share.

Each name is defined here once and imported everywhere else: job types and
statuses, artifact kinds, token scopes, queues, combine methods and their
groups, precisions and the built-in training presets. Standard library only:
the CLI imports this at start-up and the API process imports it without torch.

The enums are ``StrEnum``: a member *is* its string (``JobStatus.FAILED ==
"failed"``), so values read from JSON or the database compare equal to them and
``", ".join(JobType)`` lists the accepted words in their documented order.
"""

from __future__ import annotations

from enum import StrEnum


class JobType(StrEnum):
    """What a job does to its inputs (``POST /v1/jobs`` ``type``)."""

    COMBINE = "combine"
    COMPRESS = "compress"
    MERGE = "merge"
    TRAIN = "train"
    MIRROR_IMPORT = "mirror_import"
    MIRROR_EXPORT = "mirror_export"
    #: The registry's own: computes a version's card (submitted on publish, never by a client).
    CARD = "card"


class JobStatus(StrEnum):
    """Where a job is in its life: queued -> running -> one terminal status."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


#: Statuses a job never leaves.
TERMINAL_STATUSES: tuple[JobStatus, ...] = (
    JobStatus.SUCCEEDED,
    JobStatus.FAILED,
    JobStatus.CANCELLED,
)


class CardStatus(StrEnum):
    """Where a version's computed card is: ``pending`` until its ``card`` job ends."""

    PENDING = "pending"
    READY = "ready"
    FAILED = "failed"


class ArtifactKind(StrEnum):
    """What a published version holds."""

    ADAPTER = "adapter"
    BASE_MODEL = "base_model"
    DATASET = "dataset"


class LineageNodeKind(StrEnum):
    """What a lineage node points at (a version of an adapter or dataset, a base model, or a
    commit of an upstream Hub repo that a version was mirrored from)."""

    VERSION = "version"
    BASE_MODEL = "base_model"
    UPSTREAM = "upstream"
    UNKNOWN = "unknown"


class LineageDirection(StrEnum):
    """Which way a lineage walk goes from its root: to parents, to dependents, or both."""

    UP = "up"
    DOWN = "down"
    BOTH = "both"


class LineageFormat(StrEnum):
    """How ``loreg lineage`` shows a lineage graph (the API answers ``json`` or ``svg``)."""

    TREE = "tree"
    MERMAID = "mermaid"
    DOT = "dot"
    SVG = "svg"
    JSON = "json"


class LineageMedia(StrEnum):
    """What ``GET /v1/lineage/...`` answers with ``format``: the JSON graph or an SVG drawing."""

    JSON = "json"
    SVG = "svg"


class Relation(StrEnum):
    """How a lineage parent relates to its child."""

    CONTINUED_FROM = "continued_from"
    TRAINED_FROM = "trained_from"
    COMBINED_FROM = "combined_from"
    COMPRESSED_FROM = "compressed_from"
    MIRRORED_FROM = "mirrored_from"


class JobRelation(StrEnum):
    """Lineage relations only the registry's own jobs record (a client cannot declare them)."""

    MERGED_INTO = "merged_into"


class MirrorDirection(StrEnum):
    """Which way a mirror copies: from an upstream Hub into loreg (``export``: not yet)."""

    IMPORT = "import"
    EXPORT = "export"


class WarningKind(StrEnum):
    """Why a resolve answer carries a ``Warning`` header (``loreg.notices``)."""

    YANKED = "yanked"
    DEPRECATED = "deprecated"


class Scope(StrEnum):
    """What a token may do in a namespace; each scope includes the ones below it."""

    READ = "read"
    WRITE = "write"
    ADMIN = "admin"


#: Order of the scopes: a grant of level n allows every scope of level <= n.
SCOPE_LEVELS: dict[Scope, int] = {Scope.READ: 1, Scope.WRITE: 2, Scope.ADMIN: 3}


class Queue(StrEnum):
    """The Celery queue (and worker pool) a job runs on."""

    GPU = "gpu"
    CPU = "cpu"


class CombineMethod(StrEnum):
    """How a ``combine`` job folds its input adapters into one."""

    CAT = "cat"
    LINEAR = "linear"
    SVD = "svd"
    TIES = "ties"
    DARE_LINEAR = "dare_linear"
    DARE_TIES = "dare_ties"
    MAGNITUDE_PRUNE = "magnitude_prune"
    FEDIT = "fedit"
    FLORA = "flora"
    DELTA_AVG = "delta_avg"


_M = CombineMethod
#: Methods whose result equals the weighted sum of deltas (up to rank truncation).
EXACT_METHODS: tuple[CombineMethod, ...] = (_M.CAT, _M.LINEAR, _M.SVD, _M.FLORA, _M.DELTA_AVG)
#: Methods that work element-wise on dense per-module deltas and need ``density``.
DENSITY_METHODS: tuple[CombineMethod, ...] = (
    _M.TIES,
    _M.DARE_LINEAR,
    _M.DARE_TIES,
    _M.MAGNITUDE_PRUNE,
)
#: Methods that elect a sign per element (take ``majority_sign_method``).
SIGN_METHODS: tuple[CombineMethod, ...] = (_M.TIES, _M.DARE_TIES)
#: Methods that draw random numbers (need ``seed`` for reproducibility).
SEEDED_METHODS: tuple[CombineMethod, ...] = (_M.DARE_LINEAR, _M.DARE_TIES)
#: Methods whose output rank is the sum of the input ranks (no ``rank`` parameter).
FULL_RANK_METHODS: tuple[CombineMethod, ...] = (_M.CAT, _M.FLORA, _M.FEDIT)
#: Federated-averaging methods (inputs are clients of one round).
FEDERATED_METHODS: tuple[CombineMethod, ...] = (_M.FEDIT, _M.FLORA, _M.DELTA_AVG)
#: Methods that truncate to a target rank and so require ``rank``.
RANK_REQUIRED_METHODS: tuple[CombineMethod, ...] = (
    _M.SVD,
    _M.TIES,
    _M.DARE_LINEAR,
    _M.DARE_TIES,
    _M.MAGNITUDE_PRUNE,
    _M.DELTA_AVG,
)
del _M


class MajoritySign(StrEnum):
    """Sign-election rules of ``ties`` and ``dare_ties``."""

    TOTAL = "total"
    FREQUENCY = "frequency"


class Precision(StrEnum):
    """Target precisions of a ``compress`` job."""

    FP16 = "fp16"
    BF16 = "bf16"
    INT8 = "int8"


#: Precisions reached by a plain dtype cast (int8 is quantised with per-row scales).
CAST_PRECISIONS: tuple[Precision, ...] = (Precision.FP16, Precision.BF16)


class Preset(StrEnum):
    """Built-in LoRA sizes of a ``train`` job."""

    SMALL = "small"
    MEDIUM = "medium"
    LARGE = "large"
    XLARGE = "xlarge"


class SearchSort(StrEnum):
    """Orders of ``GET /v1/search`` (``sort``); relevance needs a text query ``q``."""

    RELEVANCE = "relevance"
    CREATED = "created"
    NAME = "name"


#: ``(r, lora_alpha)`` of each built-in preset.
PRESET_SHAPES: dict[Preset, tuple[int, int]] = {
    Preset.SMALL: (4, 8),
    Preset.MEDIUM: (8, 16),
    Preset.LARGE: (16, 32),
    Preset.XLARGE: (32, 64),
}

__all__ = [
    "CAST_PRECISIONS",
    "DENSITY_METHODS",
    "EXACT_METHODS",
    "FEDERATED_METHODS",
    "FULL_RANK_METHODS",
    "PRESET_SHAPES",
    "RANK_REQUIRED_METHODS",
    "SCOPE_LEVELS",
    "SEEDED_METHODS",
    "SIGN_METHODS",
    "TERMINAL_STATUSES",
    "ArtifactKind",
    "CardStatus",
    "CombineMethod",
    "JobRelation",
    "JobStatus",
    "JobType",
    "LineageDirection",
    "LineageFormat",
    "LineageMedia",
    "LineageNodeKind",
    "MajoritySign",
    "MirrorDirection",
    "Precision",
    "Preset",
    "Queue",
    "Relation",
    "Scope",
    "SearchSort",
]


class AdapterSort(StrEnum):
    """The orders of ``GET /v1/adapters`` (``sort``): by namespace (in creation order)
    then name (the default), or most recently updated (published to) first."""

    NAME = "name"
    UPDATED = "updated"
