"""The typed POST /v1/jobs body (registry.job_params): messages, stored params, schema."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from loreg.vocabulary import CombineMethod, JobType, Preset
from registry.errors import InvalidJob
from registry.job_params import JobRequest

TRAIN = {"base_model": "tiny", "dataset": "chat"}


def body(job_type: str, params: Any, **extra: Any) -> dict[str, Any]:
    """A job body with one input (none for train)."""
    inputs = [] if job_type == "train" else [{"ref": "a"}]
    return {"type": job_type, "inputs": inputs, "params": params, "output": "out", **extra}


@pytest.mark.parametrize(
    ("job_type", "params", "message"),
    [
        ("combine", {"method": "svd"}, "params.rank is required"),
        ("combine", {"method": "svd", "rank": 0}, "params.rank = 0 is out of range [1, 4096]"),
        ("combine", {"method": "svd", "rank": 2.0}, "params.rank must be an integer"),
        ("combine", {"method": "svd", "rank": True}, "params.rank must be an integer"),
        ("combine", {"method": "ties", "rank": 2}, "params.density is required"),
        (
            "combine",
            {"method": "ties", "rank": 2, "density": 0},
            "params.density = 0 is out of range (0.0, 1.0]",
        ),
        ("combine", {"method": "ties", "density": "x"}, "params.density must be a number"),
        (
            "combine",
            {"method": "svd", "rank": 2, "density": 0.5},
            "params.density has no meaning for method 'svd'",
        ),
        (
            "combine",
            {"method": "linear", "seed": 2**63},
            "params.seed = 9223372036854775808 is out of range [0, 9223372036854775807]",
        ),
        (
            "combine",
            {"method": "ties", "rank": 2, "density": 0.5, "majority_sign_method": "max"},
            "params.majority_sign_method must be 'total' or 'frequency'",
        ),
        (
            "combine",
            {"method": "svd", "rank": 4, "majority_sign_method": "frequency"},
            "params.majority_sign_method applies to ties, dare_ties only, not 'svd'",
        ),
        (
            "combine",
            {"method": "cat", "rank": 4},
            "method 'cat' does not truncate and takes no rank: drop params.rank",
        ),
        (
            "combine",
            {"method": "bogus"},
            "params.method 'bogus' is not one of cat, linear, svd, ties, dare_linear, "
            "dare_ties, magnitude_prune, fedit, flora, delta_avg",
        ),
        (
            "combine",
            {"zeta": 1, "alpha": 2, "rank": 0},
            "unknown params for a combine job: alpha, zeta; "
            "allowed: density, majority_sign_method, method, rank, seed",
        ),
        ("compress", {}, "a compress job needs params.rank, params.energy or params.precision"),
        ("compress", {"rank": 2, "energy": 0.5}, "give params.rank or params.energy, not both"),
        ("compress", {"energy": 1.1}, "params.energy = 1.1 is out of range (0.0, 1.0]"),
        ("compress", {"precision": "fp32"}, "params.precision must be one of fp16, bf16, int8"),
        ("merge", {"x": 1}, "unknown params for a merge job: x; allowed: "),
        ("train", {}, "params.base_model (a registered base model name) is required"),
        (
            "train",
            {"base_model": "tiny", "dataset": 5},
            "params.dataset (a dataset ref, see `loreg dataset push`) is required",
        ),
        (
            "train",
            {**TRAIN, "preset": None},
            "params.preset must be a preset name: a built-in (small, medium, large, xlarge) "
            "or one saved in the job's namespace (loreg preset save)",
        ),
        ("train", {**TRAIN, "lr": 0}, "params.lr = 0 is out of range (0.0, 1.0]"),
        (
            "train",
            {**TRAIN, "lora_alpha": 2e6},
            "params.lora_alpha = 2000000.0 is out of range (0.0, 1000000.0]",
        ),
        ("train", {**TRAIN, "epochs": 2.0}, "params.epochs must be an integer"),
        (
            "train",
            {**TRAIN, "target_modules": []},
            "params.target_modules must be a non-empty list of module names",
        ),
        ("train", {**TRAIN, "continue_from": 5}, "params.continue_from must be an adapter ref"),
    ],
)
def test_a_bad_param_is_an_invalid_job_naming_the_field(job_type, params, message) -> None:
    with pytest.raises(InvalidJob) as caught:
        JobRequest.model_validate(body(job_type, params))
    assert caught.value.message == message
    assert caught.value.code == "invalid_job" and caught.value.status == 422


@pytest.mark.parametrize("params", [5, [], None, "x"])
def test_params_that_are_no_object_are_an_invalid_request(params) -> None:
    with pytest.raises(ValidationError) as caught:
        JobRequest.model_validate(body("combine", params))
    [error] = caught.value.errors()
    assert error["loc"] == ("params",) and error["msg"] == "Input should be a valid dictionary"


@pytest.mark.parametrize(
    ("data", "loc", "msg"),
    [
        ({"output": "x"}, ("type",), "Field required"),
        (
            {"type": "nope", "output": "x"},
            ("type",),
            "Input should be 'combine', 'compress', 'merge', 'train', 'mirror_import' or "
            "'mirror_export'",
        ),
        ({"type": "combine"}, ("output",), "Field required"),
        (
            {"type": "combine", "output": "x", "queue": "tpu"},
            ("queue",),
            "Input should be 'gpu' or 'cpu'",
        ),
    ],
)
def test_other_fields_are_named_as_in_a_flat_body(data, loc, msg) -> None:
    with pytest.raises(ValidationError) as caught:
        JobRequest.model_validate(data)
    [error] = caught.value.errors()
    assert (error["loc"], error["msg"]) == (loc, msg)


def test_stored_params_keep_what_was_given_and_the_defaults_that_matter() -> None:
    combine = JobRequest.model_validate(body("combine", {"rank": None})).root
    assert combine.params.stored() == {"method": "linear", "rank": None}
    ties = body("combine", {"method": "ties", "rank": 2, "density": 1})
    assert JobRequest.model_validate(ties).root.params.stored() == {
        "method": "ties",
        "rank": 2,
        "density": 1,
    }
    stored = JobRequest.model_validate(body("train", {**TRAIN, "lr": 1})).root.params.stored()
    assert stored == {**TRAIN, "preset": "small", "lr": 1}
    assert type(stored["lr"]) is int and type(stored["preset"]) is str  # JSON as given
    compress = JobRequest.model_validate(body("compress", {"precision": "int8"}, queue="gpu"))
    assert compress.root.queue == "gpu" and type(compress.root.queue) is str
    assert compress.root.params.stored() == {"precision": "int8"}


def test_the_schema_documents_each_job_types_params() -> None:
    schema = JobRequest.model_json_schema()
    mapping = schema["discriminator"]["mapping"]
    assert schema["discriminator"]["propertyName"] == "type"
    # every type a client may submit: card jobs are the registry's own (refused below)
    assert set(mapping) == {str(t) for t in JobType} - {JobType.CARD}
    defs = schema["$defs"]
    for job_type, model in mapping.items():
        params = defs[model.rsplit("/", 1)[1]]["properties"]["params"]["$ref"].rsplit("/", 1)[1]
        assert params == "".join(word.capitalize() for word in job_type.split("_")) + "Params"
        assert defs[params]["additionalProperties"] is False
    combine = defs["CombineParams"]["properties"]
    assert set(combine) == {"method", "rank", "density", "seed", "majority_sign_method"}
    assert defs["CombineMethod"]["enum"] == [str(m) for m in CombineMethod]
    assert combine["density"]["anyOf"][0] == {
        "exclusiveMinimum": 0.0,
        "maximum": 1.0,
        "type": "number",
    }
    train = defs["TrainParams"]
    assert set(train["required"]) == {"base_model", "dataset"}
    assert train["properties"]["preset"]["default"] == Preset.SMALL
    assert defs["MergeParams"]["properties"] == {}


def test_card_jobs_are_the_registrys_own() -> None:
    with pytest.raises(InvalidJob, match=r"submitted by the registry itself.*versions/\{n\}/card"):
        JobRequest.model_validate({"type": "card", "output": "x", "inputs": [{"ref": "a"}]})
