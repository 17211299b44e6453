"""The torch-free safetensors header parser, checked against the real library."""

from __future__ import annotations

import json
import math
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.numpy import save as np_save

from registry.errors import InvalidSafetensors, PayloadTooLarge
from registry.validation.safetensors_header import (
    DTYPE_SIZES,
    parse_safetensors_bytes,
    read_safetensors_header,
)

NUMPY_DTYPES = {
    "BOOL": np.bool_,
    "U8": np.uint8,
    "I8": np.int8,
    "I16": np.int16,
    "U16": np.uint16,
    "F16": np.float16,
    "I32": np.int32,
    "U32": np.uint32,
    "F32": np.float32,
    "F64": np.float64,
    "I64": np.int64,
    "U64": np.uint64,
}

shapes = st.lists(st.integers(min_value=0, max_value=5), min_size=0, max_size=4)
tensor_names = st.from_regex(r"[a-z][a-z0-9_.]{0,20}", fullmatch=True)


def build(header: dict, data: bytes, *, pad: int = 0, length: int | None = None) -> bytes:
    """A safetensors file from a header object and a data area (for crafting lies)."""
    raw = json.dumps(header).encode() + b" " * pad
    return struct.pack("<Q", len(raw) if length is None else length) + raw + data


def raw_header(text: bytes, data: bytes = b"") -> bytes:
    """A file whose header is ``text`` verbatim."""
    return struct.pack("<Q", len(text)) + text + data


def entry(dtype: str, shape: list[int], start: int, end: int | None = None) -> dict:
    size = math.prod(shape) * DTYPE_SIZES[dtype]
    return {
        "dtype": dtype,
        "shape": shape,
        "data_offsets": [start, start + size if end is None else end],
    }


def assert_consistent(header, file_size: int) -> None:
    """Invariants every accepted header satisfies."""
    assert 8 + header.header_size + header.data_size == file_size
    spans = sorted((t.start, t.end) for t in header.tensors.values())
    position = 0
    for start, end in spans:
        assert start == position
        position = end
    assert position == header.data_size
    for t in header.tensors.values():
        assert t.end - t.start == t.numel * DTYPE_SIZES[t.dtype]


# ----------------------------------------------------------------- agreement with safetensors


@given(
    st.dictionaries(
        tensor_names,
        st.tuples(st.sampled_from(sorted(NUMPY_DTYPES)), shapes),
        min_size=0,
        max_size=6,
    ),
    st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=3),
)
@settings(max_examples=80, suppress_health_check=[HealthCheck.too_slow])
def test_matches_files_written_by_safetensors_numpy(spec, metadata) -> None:
    rng = np.random.default_rng(0)
    arrays = {
        name: np.asarray(rng.integers(0, 100, size=shape) % (2 if dtype == "BOOL" else 100))
        .astype(NUMPY_DTYPES[dtype])
        .reshape(shape)
        for name, (dtype, shape) in spec.items()
    }
    blob = np_save(arrays, metadata=metadata or None)
    header = parse_safetensors_bytes(blob)
    assert_consistent(header, len(blob))
    assert set(header.tensors) == set(arrays)
    assert header.metadata == metadata
    data = blob[8 + header.header_size :]
    for name, array in arrays.items():
        info = header.tensors[name]
        assert info.dtype == spec[name][0]
        assert info.shape == array.shape
        assert data[info.start : info.end] == np.ascontiguousarray(array).tobytes()


@pytest.mark.parametrize(
    ("torch_dtype", "code"),
    [
        ("bfloat16", "BF16"),
        ("float16", "F16"),
        ("float8_e4m3fn", "F8_E4M3"),
        ("float8_e5m2", "F8_E5M2"),
        ("float64", "F64"),
        ("int64", "I64"),
        ("bool", "BOOL"),
        ("complex64", "C64"),
    ],
)
def test_matches_files_written_by_safetensors_torch(tmp_path, torch_dtype: str, code: str) -> None:
    torch = pytest.importorskip("torch")
    from safetensors.torch import save_file

    gen = torch.Generator().manual_seed(0)
    tensors = {
        "a.weight": torch.randn(3, 5, generator=gen).to(getattr(torch, torch_dtype)),
        "b": torch.randn(7, generator=gen).to(getattr(torch, torch_dtype)),
        "empty": torch.zeros(0, 4).to(getattr(torch, torch_dtype)),
        "scalar": torch.tensor(1.0).to(getattr(torch, torch_dtype)),
    }
    path = tmp_path / "x.safetensors"
    save_file(tensors, str(path), metadata={"format": "pt"})
    blob = path.read_bytes()
    header = parse_safetensors_bytes(blob)
    assert_consistent(header, len(blob))
    assert header.metadata == {"format": "pt"}
    for name, tensor in tensors.items():
        info = header.tensors[name]
        assert (info.dtype, info.shape) == (code, tuple(tensor.shape))
        assert info.end - info.start == tensor.numel() * tensor.element_size()


def test_reads_only_prefix_and_header() -> None:
    blob = np_save({"w": np.zeros((64, 64), np.float32)})
    calls: list[tuple[int, int]] = []

    def reader(start: int, end: int) -> bytes:
        calls.append((start, end))
        return blob[start:end]

    header = read_safetensors_header(reader, len(blob), path="w.safetensors")
    assert calls == [(0, 8), (8, 8 + header.header_size)]


@pytest.mark.parametrize(
    ("length", "file_size", "error", "fragment"),
    [
        (2**63, 10**12, InvalidSafetensors, "past the end"),  # a lie: longer than the file
        (2**30, 10**12, PayloadTooLarge, "limit"),  # fits the file, but over the bound
    ],
)
def test_huge_header_length_reads_nothing_more(length, file_size, error, fragment) -> None:
    calls: list[tuple[int, int]] = []
    blob = struct.pack("<Q", length) + b"{}"

    def reader(start: int, end: int) -> bytes:
        calls.append((start, end))
        return blob[start:end]

    with pytest.raises(error, match=fragment):
        read_safetensors_header(reader, file_size, path="big.safetensors")
    assert calls == [(0, 8)]


def test_padding_with_spaces_is_fine() -> None:
    blob = build({"a": entry("F32", [2], 0)}, bytes(8), pad=5)
    header = parse_safetensors_bytes(blob)
    assert header.tensors["a"].shape == (2,)
    assert header.data_size == 8


def test_empty_header_object_is_a_valid_empty_file() -> None:
    header = parse_safetensors_bytes(build({}, b""))
    assert header.tensors == {} and header.data_size == 0


# ----------------------------------------------------------------- lies


LIES = [
    ("short file", b"\x01\x02", "too short"),
    ("zero header length", struct.pack("<Q", 0), "length is 0"),
    ("header past end", struct.pack("<Q", 100) + b"{}", "past the end"),
    ("not utf-8", raw_header(b"\xff\xfe"), "UTF-8"),
    ("not json", raw_header(b"{x}"), "not valid JSON"),
    ("bom", raw_header(b"\xef\xbb\xbf{}"), "not valid JSON"),
    ("json array", build([], b""), "JSON object"),  # type: ignore[arg-type]
    ("nan", raw_header(b'{"a": NaN}  '), "not valid JSON"),
    ("huge int", raw_header(b'{"a": ' + b"9" * 5000 + b"}"), "not valid JSON"),
    ("duplicate key", raw_header(b'{"a": {}, "a": {} }'), "duplicate"),
    ("deep nesting", raw_header(b"[" * 200000), "nested too deeply"),
    ("metadata not dict", build({"__metadata__": ["x"]}, b""), "__metadata__"),
    ("metadata not str", build({"__metadata__": {"a": 1}}, b""), "__metadata__"),
    ("entry not object", build({"a": [1]}, b""), "must be an object"),
    ("missing key", build({"a": {"dtype": "F32", "shape": [1]}}, bytes(4)), "missing"),
    ("extra key", build({"a": {**entry("F32", [1], 0), "x": 1}}, bytes(4)), "unexpected"),
    ("unknown dtype", build({"a": {**entry("F32", [1], 0), "dtype": "F128"}}, bytes(4)), "dtype"),
    ("dtype not str", build({"a": {**entry("F32", [1], 0), "dtype": 4}}, bytes(4)), "dtype"),
    (
        "negative dim",
        build({"a": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}, bytes(4)),
        "non-negative",
    ),
    (
        "float dim",
        build({"a": {"dtype": "F32", "shape": [1.0], "data_offsets": [0, 4]}}, bytes(4)),
        "non-negative",
    ),
    (
        "bool dim",
        build({"a": {"dtype": "F32", "shape": [True], "data_offsets": [0, 4]}}, bytes(4)),
        "non-negative",
    ),
    (
        "shape not list",
        build({"a": {"dtype": "F32", "shape": 1, "data_offsets": [0, 4]}}, bytes(4)),
        "shape",
    ),
    (
        "offsets length",
        build({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0]}}, bytes(4)),
        "two integers",
    ),
    ("offsets reversed", build({"a": entry("F32", [0], 4, 0)}, bytes(4)), "start <= end"),
    ("offset negative", build({"a": entry("F32", [1], -4, 0)}, bytes(4)), "start <= end"),
    ("offset past data", build({"a": entry("F32", [2], 0)}, bytes(4)), "past the data area"),
    ("dtype lies", build({"a": entry("F16", [2], 0, 8)}, bytes(8)), "disagree"),
    ("shape lies", build({"a": entry("F32", [3], 0, 8)}, bytes(8)), "disagree"),
    (
        "huge shape",
        build({"a": entry("F32", [1], 0) | {"shape": [2**62, 2**62]}}, bytes(4)),
        "disagree",
    ),
    (
        "overlap",
        build({"a": entry("F32", [2], 0), "b": entry("F32", [2], 4)}, bytes(12)),
        "overlap",
    ),
    (
        "hole",
        build({"a": entry("F32", [1], 0), "b": entry("F32", [1], 8)}, bytes(12)),
        "belong to no tensor",
    ),
    ("trailing bytes", build({"a": entry("F32", [1], 0)}, bytes(12)), "trailing"),
    ("data but no tensors", build({}, bytes(4)), "trailing"),
]


@pytest.mark.parametrize(("label", "blob", "fragment"), LIES, ids=[lie[0] for lie in LIES])
def test_lies_are_refused(label: str, blob: bytes, fragment: str) -> None:
    with pytest.raises(InvalidSafetensors) as info:
        parse_safetensors_bytes(blob, path="adapter_model.safetensors")
    message = str(info.value)
    assert "adapter_model.safetensors" in message
    assert fragment in message


def test_header_over_limit_is_payload_too_large() -> None:
    blob = build({"a": entry("F32", [1], 0)}, bytes(4), pad=100)
    with pytest.raises(PayloadTooLarge, match="limit is 64"):
        parse_safetensors_bytes(blob, max_header_bytes=64)
    assert parse_safetensors_bytes(blob, max_header_bytes=len(blob)).tensors


def test_short_read_is_refused() -> None:
    blob = build({"a": entry("F32", [1], 0)}, bytes(4))
    with pytest.raises(InvalidSafetensors, match="truncated"):
        read_safetensors_header(lambda s, e: blob[s : e - 1], len(blob))


def test_huge_names_are_clipped_in_messages() -> None:
    name = "n" * 100_000
    blob = build({name: entry("F16", [2], 0, 8)}, bytes(8))
    with pytest.raises(InvalidSafetensors) as info:
        parse_safetensors_bytes(blob)
    assert len(str(info.value)) < 1000


# ----------------------------------------------------------------- fuzz


def _valid_file() -> bytes:
    return np_save(
        {
            "layer.lora_A.weight": np.arange(12, dtype=np.float32).reshape(3, 4),
            "layer.lora_B.weight": np.arange(6, dtype=np.float16).reshape(2, 3),
            "z": np.zeros((0,), np.int64),
        },
        metadata={"format": "np"},
    )


VALID = _valid_file()


@st.composite
def mutated_files(draw) -> bytes:
    blob = bytearray(VALID)
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        action = draw(st.sampled_from(["flip", "truncate", "insert", "delete", "length"]))
        if action == "flip" and blob:
            i = draw(st.integers(min_value=0, max_value=len(blob) - 1))
            blob[i] = draw(st.integers(min_value=0, max_value=255))
        elif action == "truncate":
            blob = blob[: draw(st.integers(min_value=0, max_value=len(blob)))]
        elif action == "insert":
            i = draw(st.integers(min_value=0, max_value=len(blob)))
            blob[i:i] = draw(st.binary(min_size=1, max_size=8))
        elif action == "delete" and blob:
            i = draw(st.integers(min_value=0, max_value=len(blob) - 1))
            del blob[i : i + draw(st.integers(min_value=1, max_value=8))]
        elif action == "length" and len(blob) >= 8:
            blob[:8] = struct.pack("<Q", draw(st.integers(min_value=0, max_value=2**64 - 1)))
    return bytes(blob)


@given(mutated_files())
@settings(max_examples=500)
def test_fuzz_mutations(blob: bytes) -> None:
    try:
        header = parse_safetensors_bytes(blob, max_header_bytes=4096)
    except (InvalidSafetensors, PayloadTooLarge):
        return
    assert_consistent(header, len(blob))


@given(st.binary(max_size=300))
@settings(max_examples=300)
def test_fuzz_random_bytes(blob: bytes) -> None:
    try:
        header = parse_safetensors_bytes(blob)
    except (InvalidSafetensors, PayloadTooLarge):
        return
    assert_consistent(header, len(blob))


@given(
    st.dictionaries(
        st.text(max_size=5),
        st.fixed_dictionaries(
            {
                "dtype": st.sampled_from([*DTYPE_SIZES, "F4", "x", 3]),
                "shape": st.lists(st.integers(min_value=-2, max_value=4), max_size=3),
                "data_offsets": st.lists(st.integers(min_value=-2, max_value=40), max_size=3),
            }
        ),
        max_size=4,
    ),
    st.integers(min_value=0, max_value=64),
)
@settings(max_examples=400)
def test_fuzz_structured_headers(header: dict, data_size: int) -> None:
    blob = build(header, bytes(data_size))
    try:
        parsed = parse_safetensors_bytes(blob)
    except InvalidSafetensors:
        return
    assert_consistent(parsed, len(blob))
    assert set(parsed.tensors) == set(header) - {"__metadata__"}
