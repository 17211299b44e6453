"""Every safetensors header the registry accepts is one the real (Rust) parser loads."""

from __future__ import annotations

import json
import re
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors import deserialize

from registry.errors import InvalidSafetensors
from registry.validation.safetensors_header import DTYPE_SIZES, parse_safetensors_bytes


def _file(header_text: str | bytes, data: bytes = b"") -> bytes:
    raw = header_text.encode("utf-8") if isinstance(header_text, str) else header_text
    return struct.pack("<Q", len(raw)) + raw + data


U8 = '{"dtype":"U8","shape":[2],"data_offsets":[0,2]}'


@pytest.mark.parametrize(
    ("header", "fragment"),
    [
        ('{"\\ud800":' + U8 + "}", "lone surrogate"),
        ('{"a\\udc00b":' + U8 + "}", "lone surrogate"),
        ('{"__metadata__":{"k":"\\ud800"},"t":' + U8 + "}", "lone surrogate"),
        ('{"__metadata__":{"\\udfff":"v"},"t":' + U8 + "}", "lone surrogate"),
        ('{"t":{"dtype":"U8","shape":[-0],"data_offsets":[0,0]}}', "negative number -0"),
        ('{"t":{"dtype":"U8","shape":[2],"data_offsets":[-0,2]}}', "negative number -0"),
        ('{"t":{"dtype":"U8","shape":[18446744073709551616,0],"data_offsets":[0,0]}}', "2**64"),
        (
            '{"t":{"dtype":"U8","shape":[4611686018427387904,4,0],"data_offsets":[0,0]}}',
            "overflows",
        ),
        ('{"a\\u0000":' + U8 + "}", "NUL"),
    ],
    ids=[
        "surrogate-name",
        "surrogate-inside-name",
        "surrogate-metadata-value",
        "surrogate-metadata-key",
        "minus-zero-dim",
        "minus-zero-offset",
        "dim-over-u64",
        "shape-product-overflow",
        "nul-in-name",
    ],
)
def test_what_the_rust_parser_refuses_is_refused(header, fragment):
    blob = _file(header, b"ab")
    if 'data_offsets":[0,0]' in header:
        blob = _file(header)
    with pytest.raises(InvalidSafetensors) as info:
        parse_safetensors_bytes(blob, path="w.safetensors")
    assert fragment in info.value.message and "w.safetensors" in info.value.message
    if fragment != "NUL":  # NUL is the registry's own rule (Postgres); Rust accepts it
        with pytest.raises(Exception, match="(?i)error|invalid|overflow"):
            deserialize(blob)
    info.value.to_dict()["error"]["message"].encode("utf-8")  # renders as UTF-8


def test_a_valid_surrogate_pair_is_fine():
    blob = _file('{"\\ud83d\\ude00":' + U8 + "}", b"ab")
    assert list(parse_safetensors_bytes(blob).tensors) == ["\U0001f600"]
    assert [name for name, _ in deserialize(blob)] == ["\U0001f600"]


# ------------------------------------------------------------------ property test

_ANY_CHAR = st.characters(min_codepoint=0, max_codepoint=0x10FFFF, exclude_categories=())
_NAMES = st.one_of(st.text(_ANY_CHAR, max_size=6), st.from_regex(r"[a-z.]{1,8}", fullmatch=True))
_DTYPES = st.one_of(st.sampled_from(sorted(DTYPE_SIZES)), st.sampled_from(["F4", "X", "f32"]))
_DIM = st.one_of(st.integers(0, 3), st.sampled_from([2**32, 2**62, 2**63, 2**64 - 1, 2**64, -1]))


@st.composite
def _headers(draw):
    """A header dict (mostly consistent), its JSON text (with mutations) and its data area."""
    header: dict = {}
    offset = 0
    for _ in range(draw(st.integers(0, 3))):
        dtype = draw(_DTYPES)
        shape = draw(st.lists(_DIM, max_size=3))
        size = DTYPE_SIZES.get(dtype, 1)
        for dim in shape:
            size *= max(dim, 0)
        size = size if size <= 64 else draw(st.integers(0, 64))
        end = offset + size + draw(st.sampled_from([0, 0, 0, 1]))
        header[draw(_NAMES)] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, end]}
        offset = end
    if draw(st.booleans()):
        header["__metadata__"] = draw(st.dictionaries(_NAMES, _NAMES, max_size=2))
    text = json.dumps(header, ensure_ascii=draw(st.booleans()))
    if draw(st.booleans()):
        text = re.sub(r"\b0\b", "-0", text, count=1)
    text += " " * draw(st.integers(0, 3))
    raw = text.encode("utf-8", "surrogatepass")
    return raw, bytes(offset + draw(st.sampled_from([0, 0, 1])))


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_headers())
def test_every_accepted_header_loads_with_safetensors(case):
    raw, data = case
    blob = _file(raw, data)
    try:
        header = parse_safetensors_bytes(blob)
    except InvalidSafetensors:
        return
    loaded = dict(deserialize(blob))
    assert set(loaded) == set(header.tensors)
    for name, info in header.tensors.items():
        assert loaded[name]["dtype"].upper() == info.dtype.upper()
        assert tuple(loaded[name]["shape"]) == info.shape
