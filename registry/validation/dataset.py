"""Chat JSONL datasets (docs/design.md §7): one JSON object per line.

A record is ``{"system": str?, "conversation": [{"human": str, "assistant": str}, ...]}``.
Validation streams the file, so a large dataset is never held in memory.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from registry.errors import InvalidDataset

MAX_LINE_BYTES = 4 * 2**20


def check_record(record: Any, where: str) -> None:
    """Raise InvalidDataset unless ``record`` is one chat example."""
    if not isinstance(record, dict):
        raise InvalidDataset(f"{where}: each line must be a JSON object")
    system = record.get("system")
    if system is not None and not isinstance(system, str):
        raise InvalidDataset(f"{where}: 'system' must be a string")
    turns = record.get("conversation")
    if not isinstance(turns, list) or not turns:
        raise InvalidDataset(
            f"{where}: 'conversation' must be a non-empty list of "
            '{"human": ..., "assistant": ...} turns'
        )
    for i, turn in enumerate(turns):
        if (
            not isinstance(turn, dict)
            or not isinstance(turn.get("human"), str)
            or not isinstance(turn.get("assistant"), str)
        ):
            raise InvalidDataset(
                f"{where}: conversation[{i}] needs string fields 'human' and 'assistant'"
            )


def iter_lines(chunks: Iterable[bytes], path: str) -> Iterable[tuple[int, bytes]]:
    """Split a byte stream into (line number, line) pairs, bounding line length."""
    buf = b""
    number = 0
    for chunk in chunks:
        buf += chunk
        *lines, buf = buf.split(b"\n")
        for line in lines:
            number += 1
            yield number, line
        if len(buf) > MAX_LINE_BYTES:
            raise InvalidDataset(f"{path}: line {number + 1} is longer than {MAX_LINE_BYTES} bytes")
    if buf.strip():
        yield number + 1, buf


def validate_jsonl(chunks: Iterable[bytes], path: str) -> int:
    """Check every line of a chat JSONL stream; returns the number of records."""
    count = 0
    for number, line in iter_lines(chunks, path):
        if not line.strip():
            continue
        where = f"{path} line {number}"
        try:
            record = json.loads(line)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InvalidDataset(f"{where}: not valid JSON ({exc})") from None
        check_record(record, where)
        count += 1
    if count == 0:
        raise InvalidDataset(f"{path}: no records")
    return count
