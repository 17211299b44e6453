"""The streaming parser of Hub commit bodies (registry.services.hub.ndjson).

A regular upload puts a whole file, base64-encoded, inside one NDJSON line; the
parser must decode it as it streams, whatever the chunking, and never hold the line.
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest

from registry.errors import InvalidRequest, PayloadTooLarge
from registry.services.hub.ndjson import (
    AddFile,
    AddStoredFile,
    CommitBodyParser,
    CommitHeader,
    DeletePath,
)

MiB = 2**20


def _parser(tmp: Path, **limits: int) -> CommitBodyParser:
    return CommitBodyParser(
        tmp,
        max_line_bytes=limits.get("line", MiB),
        max_file_bytes=limits.get("file", 256 * MiB),
    )


def _parse(tmp: Path, body: bytes, step: int, **limits: int) -> list:
    parser = _parser(tmp, **limits)
    for i in range(0, len(body), step):
        parser.feed(body[i : i + step])
    parser.close()
    return parser.ops


def _lines(*items: dict) -> bytes:
    return b"".join(json.dumps(item).encode() + b"\n" for item in items)


HEADER = {"key": "header", "value": {"summary": 'a "quoted" é 😀 \\ /', "description": "d"}}


def test_every_line_kind_parses_whatever_the_chunking(tmp_path):
    data = random.Random(1).randbytes(3001)
    body = _lines(
        {**HEADER, "value": {**HEADER["value"], "parentCommit": "a" * 40}},
        {"key": "file", "value": {"content": base64.b64encode(data).decode(), "path": "a/b.md"}},
        {"key": "lfsFile", "value": {"path": "w.safetensors", "algo": "sha256", "oid": "0" * 64}},
        {"key": "deletedFile", "value": {"path": "old.txt"}},
        {"key": "deletedFolder", "value": {"path": "logs"}},
    ).replace(b"\\u00e9", "é".encode())  # raw UTF-8 and escapes both
    for step in (1, 2, 3, 5, 7, 64, len(body)):
        header, add, stored, delete, folder = _parse(tmp_path, body, step)
        assert header == CommitHeader('a "quoted" é 😀 \\ /', "d", "a" * 40)
        assert isinstance(add, AddFile) and add.path == "a/b.md" and add.size == len(data)
        assert add.sha256 == hashlib.sha256(data).hexdigest()
        assert add.local.read_bytes() == data
        assert stored == AddStoredFile("w.safetensors", "0" * 64, None)
        assert delete == DeletePath("old.txt", folder=False)
        assert folder == DeletePath("logs", folder=True)


def _big_body(size: int, block: int = 48 * 1024) -> Iterator[bytes]:
    """A commit body with one file of ``size`` bytes, generated as it is sent."""
    yield _lines(HEADER)
    yield b'{"key": "file", "value": {"content": "'
    rng = random.Random(7)
    for start in range(0, size, block):  # block % 3 == 0: the base64 pieces join up
        yield base64.b64encode(rng.randbytes(min(block, size - start)))
    yield b'", "path": "big.safetensors", "encoding": "base64"}}\n'


def test_a_line_far_larger_than_the_buffer_is_decoded_in_bounded_memory(tmp_path):
    size = 48 * MiB  # 64 MiB of base64 in one line
    expected = hashlib.sha256()
    rng = random.Random(7)
    for start in range(0, size, 48 * 1024):
        expected.update(rng.randbytes(min(48 * 1024, size - start)))
    parser = _parser(tmp_path)
    tracemalloc.start()
    try:
        pending = b""
        for piece in _big_body(size):  # re-chunked as a server receives it: 64 KiB reads
            pending += piece
            while len(pending) >= 64 * 1024:
                parser.feed(pending[: 64 * 1024])
                pending = pending[64 * 1024 :]
        parser.feed(pending)
        parser.close()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    (_, add) = parser.ops
    assert add.size == size and add.sha256 == expected.hexdigest()
    assert add.local.stat().st_size == size
    # holding the line (or the decoded file) would take 48-64 MiB
    assert peak < 2 * MiB, f"peak {peak / MiB:.1f} MiB"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "empty"),
        (_lines({"key": "file", "value": {"path": "a"}}), "first line must be the header"),
        (_lines(HEADER, {"key": "nope", "value": {}}), "unknown line key 'nope'"),
        (_lines(HEADER) + b'{"key": "file",\n"value": {}}', "line 2: a line ends inside"),
        (_lines(HEADER) + b"{}{}", "two JSON values"),
        (_lines(HEADER) + b'{"key": "file"', "ends inside a JSON value"),
        (b'{"key": "header", "value": {"summary": "a\\q"}}', "invalid escape"),
        (b'{"key": "header", "value": {"summary": "\\ud800"}}', "lone UTF-16 surrogate"),
        (b'{"key": "header", "value": {"summary": "\\u+123"}}', "invalid \\u escape"),
        (b'{"key": "header", "value": {"summary": 1}}', "'summary' must be a string"),
        (_lines(HEADER, HEADER), "a second header"),
        (
            _lines(HEADER, {"key": "file", "value": {"content": "abc", "path": "x"}}),
            "cut short",
        ),
        (
            _lines(HEADER, {"key": "file", "value": {"content": "ab!=", "path": "x"}}),
            "not valid base64",
        ),
        (
            _lines(
                HEADER, {"key": "file", "value": {"content": "", "path": "x", "encoding": "utf-8"}}
            ),
            "encoding 'utf-8' is not supported",
        ),
        (
            _lines(HEADER, {"key": "lfsFile", "value": {"path": "x", "oid": "XYZ"}}),
            "64 lowercase hex",
        ),
    ],
)
def test_malformed_bodies_are_refused_with_the_line(tmp_path, body, message):
    with pytest.raises(InvalidRequest) as err:
        _parse(tmp_path, body, 3)
    assert message in err.value.message


def test_limits_hold_for_lines_and_files(tmp_path):
    long = _lines({"key": "header", "value": {"summary": "x" * (2 * MiB)}})
    with pytest.raises(PayloadTooLarge, match="line 1"):
        _parse(tmp_path, long, 65536, line=MiB)
    content = base64.b64encode(b"\0" * (MiB + 3)).decode()
    big = _lines(HEADER, {"key": "file", "value": {"content": content, "path": "x"}})
    parser = _parser(tmp_path, file=MiB)
    with pytest.raises(PayloadTooLarge, match="over the limit"):
        parser.feed(big)
    parser.discard()
    assert not any(tmp_path.iterdir()), "the half-decoded file is removed"
    deletions = _lines(HEADER, *[{"key": "deletedFile", "value": {"path": "x"}}] * 11)
    with pytest.raises(PayloadTooLarge, match="at most 10 operations"):
        CommitBodyParser(tmp_path, max_line_bytes=MiB, max_file_bytes=MiB, max_ops=10).feed(
            deletions
        )
