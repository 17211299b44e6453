"""Pickle-bearing content is recognised by its bytes (registry.validation.content)."""

from __future__ import annotations

import bz2
import gzip
import io
import json
import lzma
import pickle
import struct
import zipfile

import pytest

from registry.validation.content import pickle_content


def _zip_with_pickle() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:  # the layout torch.save writes
        z.writestr("archive/data.pkl", pickle.dumps({"w": [1.0]}))
    return buf.getvalue()


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_every_binary_pickle_protocol_is_found(protocol):
    found = pickle_content(pickle.dumps({"x": list(range(10))}, protocol=protocol))
    assert found == f"a pickle (protocol {protocol})"


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (_zip_with_pickle(), "a zip archive"),
        (b"\x93NUMPY\x01\x00", "a numpy array file"),
        (gzip.compress(pickle.dumps(1, protocol=4)), "gzip-compressed a pickle (protocol 4)"),
        (bz2.compress(pickle.dumps(1, protocol=3)), "bz2-compressed a pickle (protocol 3)"),
        (lzma.compress(pickle.dumps(1, protocol=5)), "xz-compressed a pickle (protocol 5)"),
        (gzip.compress(gzip.compress(pickle.dumps(1, protocol=2))), "gzip-compressed gzip-"),
    ],
    ids=["torch-zip", "npy", "gzip", "bz2", "xz", "gzip-in-gzip"],
)
def test_containers_of_pickles_are_found(data, expected):
    found = pickle_content(data[:4096])
    assert found is not None and found.startswith(expected), found


@pytest.mark.parametrize(
    "data",
    [
        json.dumps({"peft_type": "LORA", "r": 8}).encode(),
        b"# Model card\n\nA LoRA adapter.\n",
        struct.pack("<Q", 2) + b"{}",  # a safetensors header
        gzip.compress(b'{"plain": "json"}\n'),  # compressed text is fine
        b"\x80",  # too short to be a pickle
        b"\x80\x01not-a-protocol-2-pickle",
        b"\x1f\x8b broken gzip",
        b"",
    ],
    ids=[
        "json",
        "markdown",
        "safetensors",
        "gzip-json",
        "lone-0x80",
        "proto-1",
        "bad-gzip",
        "empty",
    ],
)
def test_plain_files_are_not_flagged(data):
    assert pickle_content(data) is None
