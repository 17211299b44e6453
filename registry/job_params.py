"""The ``POST /v1/jobs`` body: one model per job type, chosen by ``type``.

Each job type's ``params`` is a model (:class:`CombineParams`,
:class:`CompressParams`, :class:`MergeParams`, :class:`TrainParams`,
:class:`MirrorImportParams`) whose fields
carry their types, bounds and defaults, so ``/openapi.json`` documents them and
pydantic checks them. The checks that need only the params are here too (a
``rank`` that ``svd`` requires, a ``density`` that ``svd`` has no use for); the
ones that need the database or the inputs (refs, base models, input ranks and
weights) stay in :mod:`registry.services.jobs`.

A bad param is the API's ``invalid_job`` (HTTP 422), not ``invalid_request``:
:meth:`JobParams._as_invalid_job` turns pydantic's first complaint into an
:class:`~registry.errors.InvalidJob` whose message names the field
(``params.rank = 0 is out of range [1, 4096]``). Standard models and pydantic
only: the API process imports this without torch.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

import annotated_types
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    RootModel,
    ValidationError,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticKnownError

from loreg.errors import ValidationFailedError
from loreg.hub_refs import MAX_REPO_ID, MAX_REVISION, validate_repo_id, validate_revision
from loreg.vocabulary import (
    DENSITY_METHODS,
    FULL_RANK_METHODS,
    RANK_REQUIRED_METHODS,
    SIGN_METHODS,
    CombineMethod,
    JobType,
    MajoritySign,
    Precision,
    Preset,
    Queue,
)
from registry.errors import InvalidJob
from registry.schemas import MAX_INT64, StrictBody

#: Largest LoRA rank a job may ask for.
MAX_RANK = 4096
#: Most input adapters one job takes.
MAX_INPUTS = 64
_RANGE_ERRORS = frozenset({"greater_than", "greater_than_equal", "less_than", "less_than_equal"})


def _integer(lo: int, hi: int, description: str) -> Any:
    """An optional integer field in ``[lo, hi]`` (JSON integers only: no 2.0, no true)."""
    return Field(None, ge=lo, le=hi, strict=True, description=description)


def _number(lo: float, hi: float, description: str, *, lo_open: bool = False) -> Any:
    """An optional finite number field in ``[lo, hi]``, or ``(lo, hi]`` when ``lo_open``."""
    return Field(
        None,
        gt=lo if lo_open else None,
        ge=None if lo_open else lo,
        le=hi,
        strict=True,
        allow_inf_nan=False,
        description=description,
    )


class JobParams(BaseModel):
    """What every job type's params share: unknown names refused, words kept as strings.

    Subclasses set ``job_type`` and may name, in ``problems``, the message for
    any complaint about one field (``{value!r}`` is the value given).
    """

    model_config = ConfigDict(extra="forbid", use_enum_values=True, validate_default=True)

    job_type: ClassVar[JobType]
    problems: ClassVar[dict[str, str]] = {}

    @model_validator(mode="wrap")
    @classmethod
    def _as_invalid_job(cls, data: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        """Validate; the first problem answers as ``InvalidJob``.

        Params that are not an object at all stay a plain ``invalid_request``.
        """
        if not isinstance(data, dict | cls):
            raise PydanticKnownError("dict_type")
        try:
            return handler(data)
        except ValidationError as exc:
            raise InvalidJob(cls._problem(exc.errors(include_url=False))) from None

    @field_validator("*", mode="wrap")
    @classmethod
    def _numbers_as_given(cls, value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        """A number field keeps an integer as given: the job row stores ``1``, not ``1.0``."""
        checked = handler(value)
        return value if type(value) is int and type(checked) is float else checked

    @classmethod
    def _problem(cls, errors: list[Any]) -> str:
        """The message for pydantic's complaints: unknown names first, then the first field's."""
        unknown = sorted(str(e["loc"][0]) for e in errors if e["type"] == "extra_forbidden")
        if unknown:
            return (
                f"unknown params for a {cls.job_type} job: {', '.join(unknown)}; "
                f"allowed: {', '.join(sorted(cls.model_fields))}"
            )
        error = errors[0]
        key, value = str(error["loc"][0]), error["input"]
        if key in cls.problems:
            return cls.problems[key].format(value=value)
        field = cls.model_fields[key]
        if error["type"] in _RANGE_ERRORS:
            return f"params.{key} = {value} is out of range {_bounds(field.metadata)}"
        kind = "an integer" if int in _types(field.annotation) else "a number"
        return f"params.{key} must be {kind}"

    def stored(self) -> dict[str, Any]:
        """The params as the job row keeps them: what was given (nulls too), plus set defaults."""
        given = self.model_fields_set
        fields = type(self).model_fields
        return {
            key: value
            for key, value in self.model_dump().items()
            if key in given or fields[key].default is not None
        }


def _types(annotation: Any) -> tuple[Any, ...]:
    args = getattr(annotation, "__args__", None)
    return tuple(args) if args else (annotation,)


def _bounds(metadata: list[Any]) -> str:
    """``[lo, hi]`` or ``(lo, hi]``, written as the field declares them."""
    lo: Any = None
    lo_open = False
    hi: Any = None
    for item in metadata:
        if isinstance(item, annotated_types.Ge):
            lo = item.ge
        elif isinstance(item, annotated_types.Gt):
            lo, lo_open = item.gt, True
        elif isinstance(item, annotated_types.Le):
            hi = item.le
    return f"({lo}, {hi}]" if lo_open else f"[{lo}, {hi}]"


def _one_of(field: str, words: Iterable[str], *, show_value: bool = False) -> str:
    listing = ", ".join(words)
    if show_value:
        return f"params.{field} {{value!r}} is not one of {listing}"
    return f"params.{field} must be one of {listing}"


class CombineParams(JobParams):
    """Params of a ``combine`` job: how its input adapters are folded into one."""

    job_type: ClassVar[JobType] = JobType.COMBINE
    problems: ClassVar[dict[str, str]] = {
        "method": _one_of("method", CombineMethod, show_value=True),
        "majority_sign_method": "params.majority_sign_method must be "
        + " or ".join(repr(str(sign)) for sign in MajoritySign),
    }

    method: CombineMethod = Field(CombineMethod.LINEAR, description="How the adapters combine.")
    rank: int | None = _integer(
        1, MAX_RANK, "Rank of the result; required by the methods that truncate."
    )
    density: float | None = _number(
        0.0,
        1.0,
        "Fraction of each delta's entries kept; required by ties, dare_* and magnitude_prune.",
        lo_open=True,
    )
    seed: int | None = _integer(0, MAX_INT64, "Seed of the random drops of dare_linear, dare_ties.")
    majority_sign_method: MajoritySign | None = Field(
        None, description="Sign election of ties and dare_ties (default total)."
    )

    @model_validator(mode="after")
    def _fits_the_method(self) -> CombineParams:
        """The params the method needs are there, and none it has no use for."""
        method = self.method
        if self.rank is None and method in RANK_REQUIRED_METHODS:
            raise InvalidJob("params.rank is required")
        if self.density is None and method in DENSITY_METHODS:
            raise InvalidJob("params.density is required")
        if self.density is not None and method not in DENSITY_METHODS:
            raise InvalidJob(f"params.density has no meaning for method {method!r}")
        if self.majority_sign_method is not None and method not in SIGN_METHODS:
            raise InvalidJob(
                f"params.majority_sign_method applies to {', '.join(SIGN_METHODS)} only, "
                f"not {method!r}"
            )
        if self.rank is not None and method in FULL_RANK_METHODS:
            raise InvalidJob(
                f"method {method!r} does not truncate and takes no rank: drop params.rank"
            )
        return self


class CompressParams(JobParams):
    """Params of a ``compress`` job: a lower rank (``rank`` or ``energy``), a precision, or both."""

    job_type: ClassVar[JobType] = JobType.COMPRESS
    problems: ClassVar[dict[str, str]] = {"precision": _one_of("precision", Precision)}

    rank: int | None = _integer(1, MAX_RANK, "Target rank (at most the input's).")
    energy: float | None = _number(
        0.0, 1.0, "Keep the smallest rank that keeps this fraction of the energy.", lo_open=True
    )
    precision: Precision | None = Field(None, description="Target precision of the factors.")

    @model_validator(mode="after")
    def _one_reduction(self) -> CompressParams:
        """Something to do, and at most one way to choose the rank."""
        if self.rank is None and self.energy is None and self.precision is None:
            raise InvalidJob("a compress job needs params.rank, params.energy or params.precision")
        if self.rank is not None and self.energy is not None:
            raise InvalidJob("give params.rank or params.energy, not both")
        return self


class MergeParams(JobParams):
    """Params of a ``merge`` job: none (the adapter and its base model say it all)."""

    job_type: ClassVar[JobType] = JobType.MERGE


class TrainParams(JobParams):
    """Params of a ``train`` job: a LoRA on a registered base model and a chat dataset."""

    job_type: ClassVar[JobType] = JobType.TRAIN
    problems: ClassVar[dict[str, str]] = {
        "base_model": "params.base_model (a registered base model name) is required",
        "dataset": "params.dataset (a dataset ref, see `loreg dataset push`) is required",
        "preset": "params.preset must be a preset name: a built-in ("
        + ", ".join(Preset)
        + ") or one saved in the job's namespace (loreg preset save)",
        "target_modules": "params.target_modules must be a non-empty list of module names",
        "continue_from": "params.continue_from must be an adapter ref",
    }

    base_model: str = Field(description="A registered base model name.")
    dataset: str = Field(description="A dataset ref (pinned to its version at submission).")
    preset: str = Field(
        Preset.SMALL.value,
        min_length=1,
        max_length=64,
        strict=True,
        description="A preset (r, lora_alpha, ...): a built-in size or one saved in the job's "
        "namespace; its values are copied into the job's params at submission, under the "
        "params given explicitly.",
    )
    steps: int | None = _integer(1, 1_000_000, "Optimizer steps (else epochs).")
    epochs: int | None = _integer(1, 1000, "Passes over the training split.")
    lr: float | None = _number(0.0, 1.0, "Learning rate.", lo_open=True)
    seed: int | None = _integer(0, MAX_INT64, "Seed of the split, the shuffling and the init.")
    max_length: int | None = _integer(8, 65536, "Longest example, in tokens.")
    batch_size: int | None = _integer(1, 4096, "Examples per step.")
    eval_fraction: float | None = _number(0.0, 0.5, "Share of the dataset held out for eval.")
    r: int | None = _integer(1, MAX_RANK, "LoRA rank (overrides the preset's).")
    lora_alpha: float | None = _number(
        0.0, 1e6, "LoRA alpha (overrides the preset's).", lo_open=True
    )
    target_modules: list[str] | None = Field(
        None, min_length=1, strict=True, description="Module names to adapt."
    )
    continue_from: str | None = Field(
        None, description="An adapter ref whose weights the run starts from."
    )


#: The train params a preset holds: the LoRA's shape and the run's settings, not what it
#: trains on (base model, dataset, parent adapter).
PRESET_KEYS = (
    "r",
    "lora_alpha",
    "target_modules",
    "steps",
    "epochs",
    "lr",
    "seed",
    "max_length",
    "batch_size",
    "eval_fraction",
)
#: What every saved preset must give.
PRESET_REQUIRED = ("r", "lora_alpha")


def preset_params(params: dict[str, Any]) -> dict[str, Any]:
    """A preset's params checked by the train job's own rules (:class:`TrainParams`).

    Only :data:`PRESET_KEYS`, with ``r`` and ``lora_alpha``; raises ``InvalidJob``
    naming the first problem. Returns the params as a job row would store them.
    """
    unknown = sorted(set(params) - set(PRESET_KEYS))
    if unknown:
        raise InvalidJob(
            f"unknown params for a preset: {', '.join(unknown)}; allowed: {', '.join(PRESET_KEYS)}"
        )
    for key in PRESET_REQUIRED:
        if params.get(key) is None:
            raise InvalidJob(f"a preset needs params.{key}")
    placeholder = {"base_model": "-", "dataset": "-"}  # what a preset never holds
    checked = TrainParams.model_validate({**placeholder, **params}).model_dump()
    return {key: checked[key] for key in params}


class MirrorImportParams(JobParams):
    """Params of a ``mirror_import`` job: the upstream Hub model repo and revision to copy.

    The upstream is the server's ``LOREG_HUB_URL``; ``output`` (and ``namespace``) name
    the adapter that gets a new version.
    """

    job_type: ClassVar[JobType] = JobType.MIRROR_IMPORT
    problems: ClassVar[dict[str, str]] = {
        "repo": "params.repo (an upstream model repo id, org/name) is required",
        "revision": "params.revision must be a branch, tag or commit name",
    }

    repo: str = Field(max_length=MAX_REPO_ID, description="Upstream model repo id (org/name).")
    revision: str | None = Field(
        None,
        max_length=MAX_REVISION,
        description="Branch, tag or commit upstream (default: the repo's default branch).",
    )

    @model_validator(mode="after")
    def _names(self) -> MirrorImportParams:
        """A model repo id and a plain revision name (the same rules as the CLI's)."""
        try:
            validate_repo_id(self.repo)
            validate_revision(self.revision)
        except ValidationFailedError as exc:
            raise InvalidJob(f"params: {exc}") from None
        return self


class MirrorExportParams(JobParams):
    """Params of a ``mirror_export`` job: the upstream Hub model repo to publish a version to.

    The one input is the version; the upstream is the server's ``LOREG_HUB_URL``. The
    repo is created when missing (``private`` then says how); an upstream that already
    holds the same files gets no commit.
    """

    job_type: ClassVar[JobType] = JobType.MIRROR_EXPORT
    problems: ClassVar[dict[str, str]] = {
        "repo": "params.repo (an upstream model repo id, org/name) is required",
        "private": "params.private must be true or false",
    }

    repo: str = Field(max_length=MAX_REPO_ID, description="Upstream model repo id (org/name).")
    private: bool | None = Field(
        None, strict=True, description="Visibility of the upstream repo if it is created."
    )

    @model_validator(mode="after")
    def _names(self) -> MirrorExportParams:
        """A model repo id (the same rules as the CLI's)."""
        try:
            validate_repo_id(self.repo)
        except ValidationFailedError as exc:
            raise InvalidJob(f"params: {exc}") from None
        return self


class JobInput(StrictBody):
    """One input adapter of a job, with its weight (combine)."""

    ref: str = Field(min_length=1, max_length=300)
    weight: float = 1.0


class JobBody(StrictBody):
    """What the body of every job type carries; each type narrows ``type`` and ``params``."""

    model_config = ConfigDict(use_enum_values=True)

    type: JobType
    inputs: list[JobInput] = Field(default_factory=list, max_length=MAX_INPUTS)
    params: JobParams
    output: str = Field(min_length=1, max_length=256)
    namespace: str | None = Field(default=None, max_length=64)
    queue: Queue | None = None


class CombineJob(JobBody):
    """Body of a ``combine`` job."""

    type: Literal[JobType.COMBINE]
    params: CombineParams = Field(default_factory=dict, validate_default=True)


class CompressJob(JobBody):
    """Body of a ``compress`` job."""

    type: Literal[JobType.COMPRESS]
    params: CompressParams = Field(default_factory=dict, validate_default=True)


class MergeJob(JobBody):
    """Body of a ``merge`` job."""

    type: Literal[JobType.MERGE]
    params: MergeParams = Field(default_factory=dict, validate_default=True)


class TrainJob(JobBody):
    """Body of a ``train`` job."""

    type: Literal[JobType.TRAIN]
    params: TrainParams = Field(default_factory=dict, validate_default=True)


class MirrorImportJob(JobBody):
    """Body of a ``mirror_import`` job (no inputs: the upstream is in ``params``)."""

    type: Literal[JobType.MIRROR_IMPORT]
    params: MirrorImportParams = Field(default_factory=dict, validate_default=True)


class MirrorExportJob(JobBody):
    """Body of a ``mirror_export`` job (one input: the version to publish upstream)."""

    type: Literal[JobType.MIRROR_EXPORT]
    params: MirrorExportParams = Field(default_factory=dict, validate_default=True)


_BODIES: dict[JobType, type[JobBody]] = {
    JobType.COMBINE: CombineJob,
    JobType.COMPRESS: CompressJob,
    JobType.MERGE: MergeJob,
    JobType.TRAIN: TrainJob,
    JobType.MIRROR_IMPORT: MirrorImportJob,
    JobType.MIRROR_EXPORT: MirrorExportJob,
}


if TYPE_CHECKING:
    SubmittableType = JobType
else:  # every type but the registry's own (card): a bad type's 422 lists only these
    SubmittableType = Literal[tuple(t.value for t in _BODIES)]


class _Kind(StrictBody):
    """The ``type`` of a job body alone, read after the checks every body gets."""

    model_config = ConfigDict(extra="ignore")

    type: SubmittableType


AnyJob = Annotated[
    CombineJob | CompressJob | MergeJob | TrainJob | MirrorImportJob | MirrorExportJob,
    Field(discriminator="type"),
]


class JobRequest(RootModel[AnyJob]):
    """Body of ``POST /v1/jobs`` (bounded like every request body: see ``StrictBody``).

    One model per job type, chosen by ``type``; ``params`` are that type's.
    """

    @model_validator(mode="before")
    @classmethod
    def _by_type(cls, data: Any) -> Any:
        """Validate against the model of the body's ``type``.

        So a complaint names the field as in a flat body (``output``, not
        ``combine.output``), and a bad ``type`` answers as a bad field would.
        """
        if isinstance(data, JobBody):  # built in process
            return data
        if isinstance(data, dict) and data.get("type") == JobType.CARD:
            raise InvalidJob(
                "type 'card' jobs are submitted by the registry itself; to compute a "
                "version's card again, POST /v1/adapters/{namespace}/{name}/versions/{n}/card"
            )
        return _BODIES[_Kind.model_validate(data).type].model_validate(data)
