"""Parse and check a safetensors header without loading any tensor.

Layout of a safetensors file: an unsigned 64-bit little-endian header length
``N``, ``N`` bytes of UTF-8 JSON (an object mapping tensor names to
``{"dtype", "shape", "data_offsets"}`` plus an optional ``__metadata__``
str->str map, possibly padded with trailing spaces), then the data area. The
offsets are relative to the data area, and the tensors must tile it exactly.

Only the 8-byte prefix and the header are read, and the header length is
bounded before it is read, so a lying file costs at most ``max_header_bytes``.
Standard library only (no torch, no safetensors at runtime).
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from registry.errors import InvalidSafetensors, PayloadTooLarge
from registry.validation.json_values import (
    has_lone_surrogate,
    object_without_duplicates,
    reject_constant,
    text_problem,
)

#: Default bound on the JSON header.
DEFAULT_MAX_HEADER_BYTES = 16 * 2**20

#: Bytes per element of each safetensors dtype this registry accepts.
DTYPE_SIZES: dict[str, int] = {
    "BOOL": 1,
    "U8": 1,
    "I8": 1,
    "F8_E5M2": 1,
    "F8_E4M3": 1,
    "F8_E4M3FNUZ": 1,
    "F8_E5M2FNUZ": 1,
    "F8_E8M0": 1,
    "I16": 2,
    "U16": 2,
    "F16": 2,
    "BF16": 2,
    "I32": 4,
    "U32": 4,
    "F32": 4,
    "F64": 8,
    "I64": 8,
    "U64": 8,
    "C64": 8,
}

#: Largest dimension or offset: safetensors' Rust parser reads them as ``usize`` (64 bits).
USIZE_MAX = 2**64 - 1

_METADATA_KEY = "__metadata__"
_ENTRY_KEYS = frozenset({"dtype", "shape", "data_offsets"})
_PREFIX = 8


@dataclass(frozen=True)
class TensorInfo:
    """One tensor's dtype, shape and byte range (relative to the data area)."""

    dtype: str
    shape: tuple[int, ...]
    start: int
    end: int

    @property
    def numel(self) -> int:
        """Number of elements (product of the shape; 1 for a scalar)."""
        return math.prod(self.shape)


@dataclass(frozen=True)
class SafetensorsHeader:
    """A checked safetensors header: tensors in header order, metadata, sizes."""

    tensors: dict[str, TensorInfo]
    metadata: dict[str, str]
    header_size: int
    data_size: int


def _clip(value: object, limit: int = 120) -> str:
    """``repr(value)`` shortened for error messages (names and shapes can be huge)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _bounded_numel(shape: list[int], limit: int) -> int | None:
    """The product of ``shape``, or None as soon as it exceeds ``limit`` (lying sizes)."""
    if 0 in shape:
        return 0
    numel = 1
    for dim in shape:
        numel *= dim
        if numel > limit:
            return None
    return numel


def _overflows_usize(shape: list[int], itemsize: int) -> bool:
    """Whether safetensors' checked ``usize`` product of ``shape`` (then bits) overflows.

    The Rust parser multiplies the dimensions left to right with overflow
    checks, so ``[2**62, 4, 0]`` is refused although it holds no element.
    """
    product = 1
    for dim in shape:
        product *= dim
        if product > USIZE_MAX:
            return True
    return product * itemsize * 8 > USIZE_MAX


def _int_not_minus_zero(literal: str) -> int:
    # Rust reads sizes as unsigned and refuses "-0", which Python reads as a plain 0.
    if literal == "-0":
        raise ValueError("negative number -0 (sizes and offsets are unsigned)")
    return int(literal)


def _load_json(raw: bytes, path: str) -> dict[str, Any]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidSafetensors(
            f"{path}: the safetensors header is not valid UTF-8 (byte {exc.start})"
        ) from None
    try:
        obj = json.loads(
            text,
            object_pairs_hook=object_without_duplicates,
            parse_constant=reject_constant,
            parse_int=_int_not_minus_zero,
        )
    except RecursionError:
        raise InvalidSafetensors(f"{path}: the safetensors header is nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, duplicate keys, NaN, huge integers
        raise InvalidSafetensors(
            f"{path}: the safetensors header is not valid JSON: {exc}"
        ) from None
    if not isinstance(obj, dict):
        raise InvalidSafetensors(
            f"{path}: the safetensors header must be a JSON object, got {type(obj).__name__}"
        )
    _check_strings(obj, path)
    return obj


def _check_strings(obj: dict[str, Any], path: str) -> None:
    """Refuse strings the Rust parser or the database cannot take.

    safetensors refuses lone surrogates (``"\ud800"``, which Python reads) in
    any string; a NUL in a tensor name cannot be stored by Postgres (the module
    names of a base model are).
    """
    for name, entry in obj.items():
        problem = text_problem(name)
        if problem is not None:
            raise InvalidSafetensors(f"{path}: tensor name {_clip(name)} {problem}")
        if name == _METADATA_KEY and isinstance(entry, dict):
            for key, value in entry.items():
                for text in (key, value):
                    if isinstance(text, str) and has_lone_surrogate(text):
                        raise InvalidSafetensors(
                            f"{path}: '__metadata__' entry {_clip(key)} holds a lone surrogate "
                            "(not valid Unicode; safetensors refuses it)"
                        )


def _parse_metadata(value: object, path: str) -> dict[str, str]:
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise InvalidSafetensors(
            f"{path}: '__metadata__' must map strings to strings "
            "(safetensors metadata holds only text)"
        )
    return dict(value)


def _parse_entry(name: str, entry: object, data_size: int, path: str) -> TensorInfo:
    where = f"{path}: tensor {_clip(name)}"
    if not isinstance(entry, dict):
        raise InvalidSafetensors(f"{where}: entry must be an object, got {type(entry).__name__}")
    keys = set(entry)
    if keys != _ENTRY_KEYS:
        missing = sorted(_ENTRY_KEYS - keys)
        extra = sorted(keys - _ENTRY_KEYS)
        raise InvalidSafetensors(
            f"{where}: entry must have exactly dtype, shape and data_offsets"
            + (f"; missing {missing}" if missing else "")
            + (f"; unexpected {extra}" if extra else "")
        )
    dtype = entry["dtype"]
    if not isinstance(dtype, str) or dtype not in DTYPE_SIZES:
        raise InvalidSafetensors(
            f"{where}: unknown or unsupported dtype {_clip(dtype)}; "
            f"expected one of {', '.join(DTYPE_SIZES)}"
        )
    shape = entry["shape"]
    if not isinstance(shape, list) or not all(_is_int(d) and 0 <= d <= USIZE_MAX for d in shape):
        raise InvalidSafetensors(
            f"{where}: shape must be a list of non-negative integers below 2**64"
        )
    offsets = entry["data_offsets"]
    if not isinstance(offsets, list) or len(offsets) != 2 or not all(_is_int(o) for o in offsets):
        raise InvalidSafetensors(f"{where}: data_offsets must be a list of two integers")

    start, end = offsets
    if not 0 <= start <= end:
        raise InvalidSafetensors(
            f"{where}: data_offsets [{start}, {end}] must satisfy 0 <= start <= end"
        )
    if end > data_size:
        raise InvalidSafetensors(
            f"{where}: data_offsets end {end} is past the data area ({data_size} bytes)"
        )
    itemsize = DTYPE_SIZES[dtype]
    numel = _bounded_numel(shape, (end - start) // itemsize)
    if numel is None or numel * itemsize != end - start:
        needs = "more" if numel is None else str(numel * itemsize)
        raise InvalidSafetensors(
            f"{where}: {dtype} {_clip(shape)} needs {needs} bytes but data_offsets "
            f"[{start}, {end}] span {end - start} (dtype/shape and offsets disagree)"
        )
    if _overflows_usize(shape, itemsize):
        raise InvalidSafetensors(
            f"{where}: the product of shape {_clip(shape)} overflows 64 bits "
            "(safetensors refuses such a shape even when it holds no element)"
        )
    return TensorInfo(dtype=dtype, shape=tuple(shape), start=start, end=end)


def _check_tiling(tensors: dict[str, TensorInfo], data_size: int, path: str) -> None:
    """The tensors must cover the data area exactly: no overlap, no hole, no tail."""
    position = 0
    previous = None
    for name, info in sorted(tensors.items(), key=lambda item: (item[1].start, item[1].end)):
        if info.start < position:
            raise InvalidSafetensors(
                f"{path}: tensors {_clip(previous)} and {_clip(name)} overlap "
                f"(byte {info.start} is used twice)"
            )
        if info.start > position:
            raise InvalidSafetensors(
                f"{path}: bytes {position}..{info.start} of the data area belong to no tensor"
            )
        position = info.end
        previous = name
    if position != data_size:
        raise InvalidSafetensors(
            f"{path}: the tensors end at byte {position} of the data area but it holds "
            f"{data_size} bytes (trailing bytes belong to no tensor)"
        )


def _read_exact(read_range: Callable[[int, int], bytes], start: int, end: int, path: str) -> bytes:
    data = read_range(start, end)
    if len(data) != end - start:
        raise InvalidSafetensors(
            f"{path}: expected {end - start} bytes at offset {start}, got {len(data)} "
            "(file truncated?)"
        )
    return bytes(data)


def read_safetensors_header(
    read_range: Callable[[int, int], bytes],
    file_size: int,
    *,
    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES,
    path: str = "file",
) -> SafetensorsHeader:
    """Read and check the header of a safetensors file of ``file_size`` bytes.

    ``read_range(start, end)`` returns bytes ``[start, end)`` of the file; only
    the 8-byte prefix and the header are read. Raises :class:`InvalidSafetensors`
    (naming ``path`` and the problem), or :class:`PayloadTooLarge` when the
    header exceeds ``max_header_bytes``.
    """
    if file_size < _PREFIX:
        raise InvalidSafetensors(
            f"{path}: {file_size} bytes is too short for a safetensors file "
            "(it starts with an 8-byte header length)"
        )
    (header_size,) = struct.unpack("<Q", _read_exact(read_range, 0, _PREFIX, path))
    if header_size == 0:
        raise InvalidSafetensors(f"{path}: the safetensors header length is 0")
    if header_size > file_size - _PREFIX:
        raise InvalidSafetensors(
            f"{path}: the header length {header_size} runs past the end of the file "
            f"({file_size} bytes); is this a safetensors file?"
        )
    if header_size > max_header_bytes:
        raise PayloadTooLarge(
            f"{path}: the safetensors header is {header_size} bytes; "
            f"the limit is {max_header_bytes}"
        )
    data_size = file_size - _PREFIX - header_size
    obj = _load_json(_read_exact(read_range, _PREFIX, _PREFIX + header_size, path), path)
    metadata: dict[str, str] = {}
    tensors: dict[str, TensorInfo] = {}
    for name, entry in obj.items():
        if name == _METADATA_KEY:
            metadata = _parse_metadata(entry, path)
        else:
            tensors[name] = _parse_entry(name, entry, data_size, path)
    _check_tiling(tensors, data_size, path)
    return SafetensorsHeader(
        tensors=tensors, metadata=metadata, header_size=header_size, data_size=data_size
    )


def parse_safetensors_bytes(
    data: bytes, *, max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES, path: str = "file"
) -> SafetensorsHeader:
    """:func:`read_safetensors_header` on an in-memory file (tests, small files)."""
    view = memoryview(data)
    return read_safetensors_header(
        lambda start, end: view[start:end].tobytes(),
        len(data),
        max_header_bytes=max_header_bytes,
        path=path,
    )
