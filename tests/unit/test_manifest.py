"""Canonical JSON and manifest digests (loreg.manifest)."""

from __future__ import annotations

import hashlib
import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loreg.manifest import canonical_config, canonical_json, manifest_digest, sha256_file

HEX = "0123456789abcdef"
shas = st.text(alphabet=HEX, min_size=64, max_size=64)
paths = st.from_regex(r"[a-z0-9_]{1,12}(/[a-z0-9_.]{1,12}){0,2}", fullmatch=True)
file_lists = st.lists(
    st.tuples(paths, shas, st.integers(min_value=0, max_value=2**40)),
    min_size=1,
    max_size=8,
    unique_by=lambda row: row[0],
)
module_names = st.lists(
    st.sampled_from(["q_proj", "k_proj", "v_proj", "o_proj", "up_proj", "down_proj", "gate_proj"]),
    min_size=1,
    max_size=7,
    unique=True,
)


def lora_config(targets: list[str], **extra) -> dict:
    return {"peft_type": "LORA", "r": 8, "lora_alpha": 16, "target_modules": targets, **extra}


@given(file_lists, st.randoms(use_true_random=False))
def test_digest_ignores_file_order(files, rnd) -> None:
    shuffled = list(files)
    rnd.shuffle(shuffled)
    assert manifest_digest(files, None) == manifest_digest(shuffled, None)


@given(file_lists, module_names, st.randoms(use_true_random=False))
def test_digest_ignores_target_modules_order(files, targets, rnd) -> None:
    shuffled = list(targets)
    rnd.shuffle(shuffled)
    assert manifest_digest(files, lora_config(targets)) == manifest_digest(
        files, lora_config(shuffled)
    )
    # duplicates carry no meaning in a set either
    assert manifest_digest(files, lora_config(targets)) == manifest_digest(
        files, lora_config(shuffled + targets[:1])
    )


@given(file_lists, st.data())
@settings(max_examples=60)
def test_digest_changes_with_any_field(files, data) -> None:
    base = manifest_digest(files, lora_config(["q_proj"]))
    index = data.draw(st.integers(min_value=0, max_value=len(files) - 1))
    path, sha, size = files[index]
    position = data.draw(st.integers(min_value=0, max_value=63))
    flipped = sha[:position] + HEX[(HEX.index(sha[position]) + 1) % 16] + sha[position + 1 :]
    variants = [
        (path, flipped, size),
        (path, sha, size + 1),
        (path + "x", sha, size),
    ]
    for variant in variants:
        changed = list(files)
        changed[index] = variant
        if len({row[0] for row in changed}) == len(changed):
            assert manifest_digest(changed, lora_config(["q_proj"])) != base
    assert manifest_digest(files, lora_config(["k_proj"])) != base
    assert manifest_digest(files, lora_config(["q_proj"], r=16)) != base
    assert manifest_digest(files, None) != base
    if len(files) > 1:
        assert manifest_digest(files[:-1], lora_config(["q_proj"])) != base


def test_digest_is_sha256_of_the_canonical_document() -> None:
    files = [("b.json", "ff" * 32, 3), ("a.safetensors", "00" * 32, 10)]
    config = {"target_modules": ["v", "q"], "r": 4}
    document = {
        "config": {"r": 4, "target_modules": ["q", "v"]},
        "files": [["a.safetensors", "00" * 32, 10], ["b.json", "ff" * 32, 3]],
    }
    text = json.dumps(document, sort_keys=True, separators=(",", ":"))
    assert manifest_digest(files, config) == "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def test_digest_refuses_duplicate_paths_and_bad_sizes() -> None:
    with pytest.raises(ValueError, match="twice"):
        manifest_digest([("a", "00" * 32, 1), ("a", "11" * 32, 1)], None)
    with pytest.raises(ValueError, match="size"):
        manifest_digest([("a", "00" * 32, -1)], None)


def test_canonical_json_format() -> None:
    assert canonical_json({"b": [1, 2], "a": "é"}) == '{"a":"é","b":[1,2]}'.encode()
    assert canonical_json({"x": {"z": 1, "y": None}}) == b'{"x":{"y":null,"z":1}}'


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_canonical_json_refuses_non_finite(value: float) -> None:
    with pytest.raises(ValueError):
        canonical_json({"x": value})


@given(
    st.recursive(
        st.none()
        | st.booleans()
        | st.integers()
        | st.text(max_size=5)
        | st.floats(allow_nan=False, allow_infinity=False),
        lambda children: (
            st.lists(children, max_size=3)
            | st.dictionaries(st.text(max_size=4), children, max_size=3)
        ),
        max_leaves=12,
    )
)
def test_canonical_json_round_trips(obj) -> None:
    raw = canonical_json(obj)
    assert json.loads(raw) == obj
    assert canonical_json(json.loads(raw)) == raw


def test_canonical_config_sorts_only_set_fields_and_copies() -> None:
    config = {
        "target_modules": ["v_proj", "q_proj", "v_proj"],
        "exclude_modules": ["b", "a"],
        "modules_to_save": ["score", "classifier"],
        "layers_to_transform": [3, 1],
        "nested": {"target_modules": ["z", "a"]},
    }
    out = canonical_config(config)
    assert out["target_modules"] == ["q_proj", "v_proj"]
    assert out["exclude_modules"] == ["a", "b"]
    assert out["modules_to_save"] == ["score", "classifier"]
    assert out["layers_to_transform"] == [3, 1]
    assert config["target_modules"] == ["v_proj", "q_proj", "v_proj"]  # input untouched
    out["nested"]["target_modules"].append("x")
    assert config["nested"]["target_modules"] == ["z", "a"]  # deep copy
    assert canonical_config({"target_modules": ".*proj"})["target_modules"] == ".*proj"


@pytest.mark.parametrize("size", [0, 1, 1000, 3 * 1024 + 7])
def test_sha256_file(tmp_path, size: int) -> None:
    data = bytes(range(256)) * (size // 256) + bytes(size % 256)
    path = tmp_path / "f"
    path.write_bytes(data)
    assert sha256_file(path, chunk_size=1024) == hashlib.sha256(data).hexdigest()
    assert sha256_file(str(path)) == hashlib.sha256(data).hexdigest()
