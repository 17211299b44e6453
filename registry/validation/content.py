"""What a version's files may hold: an allow-list of kinds, each checked by content.

Every file of a version is one of a few kinds, chosen by its name and then
checked against its bytes (:func:`file_kind`, :func:`check_file`):

* ``*.safetensors`` (any case): a valid safetensors file (the header is parsed
  and checked in full by :mod:`registry.validation.safetensors_header`);
* ``*.json``: strict JSON, bounded (:func:`registry.validation.json_values.loads_bounded`);
* ``*.jsonl``: one such JSON value per line;
* text (``*.md``, ``*.txt``, ``*.jinja``, ``*.yaml``, ``LICENSE``, ``.gitattributes``
  ...: :data:`TEXT_SUFFIXES`, :data:`TEXT_NAMES`): UTF-8 without control characters
  other than tab, newlines and form feed;
* ``*.model``: a sentencepiece model, i.e. a protobuf ``ModelProto`` whose
  top-level fields are the ones sentencepiece writes.

Anything else is refused (:class:`UnsupportedFile`), and before any of this the
first bytes of every non-safetensors file are searched for pickles
(:func:`pickle_content`): pickle protocols 0-5, also without the protocol
header, zip (``torch.save``, ``.npz``), tar (torch's legacy format), numpy
``.npy`` and compressed streams of those, so a refusal says what was found.
"""

from __future__ import annotations

import bz2
import codecs
import io
import lzma
import pickletools
import re
import zlib
from collections.abc import Callable, Iterable

from registry.errors import InvalidFileContent, UnsupportedFile
from registry.validation.dataset import iter_lines
from registry.validation.json_values import loads_bounded

HEAD_BYTES = 4096
#: Largest JSON or sentencepiece file parsed whole (tokenizer.json of big models is ~35 MB).
MAX_PARSED_BYTES = 128 * 2**20
_PICKLE_PROTOCOLS = range(2, 6)
_MAX_DEPTH = 3

SAFETENSORS, JSON, JSONL, TEXT, SENTENCEPIECE = (
    "safetensors",
    "json",
    "jsonl",
    "text",
    "sentencepiece",
)
#: Suffixes of text files (model cards, vocabularies, merges, chat templates, configs).
TEXT_SUFFIXES = (".md", ".txt", ".jinja", ".jinja2", ".yaml", ".yml", ".cff", ".csv", ".tsv")
#: File names (any case) of text files without one of those suffixes.
TEXT_NAMES = frozenset(
    {"license", "licence", "notice", "copying", "authors", "readme", ".gitattributes", ".gitignore"}
)
_ACCEPTED = (
    "*.safetensors weights, *.json, *.jsonl, text files (*.md, *.txt, *.jinja, *.yaml, "
    "LICENSE, ...) and sentencepiece *.model files"
)
#: C0 controls refused in text (tab, LF, VT, FF and CR are fine).
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f]")


# --------------------------------------------------------------------------- pickles


def _decompressed_head(head: bytes) -> tuple[str, bytes] | None:
    """The compression name and the first bytes it decompresses to, if ``head`` is compressed."""
    try:
        if head.startswith(b"\x1f\x8b"):
            return "gzip", zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(head, HEAD_BYTES)
        if head.startswith(b"BZh"):
            return "bz2", bz2.BZ2Decompressor().decompress(head, HEAD_BYTES)
        if head.startswith(b"\xfd7zXZ\x00"):
            return "xz", lzma.LZMADecompressor().decompress(head, HEAD_BYTES)
    except (OSError, EOFError, ValueError, zlib.error, lzma.LZMAError):
        return None
    return None


def _is_pickle_stream(head: bytes, complete: bool) -> bool:
    """Whether ``head`` reads as pickle opcodes from byte 0 up to STOP (or to its end).

    This finds protocol 0 and 1 pickles (``cos\\nsystem\\n...``), which have no
    magic bytes, and protocol 2-5 pickles whose 2-byte header was cut off
    (``pickle.loads`` still runs them). ``complete``: ``head`` is the whole file.
    """
    stream = io.BytesIO(head)
    count = 0
    try:
        for opcode, _arg, _pos in pickletools.genops(stream):
            count += 1
            if opcode.name == "STOP":
                return count >= 2
    except Exception:  # noqa: BLE001 - genops raises ValueError and others on non-pickles
        # Ran off the end of a head that continues in the file: still a pickle so far.
        return not complete and count >= 8 and stream.tell() >= len(head)
    return False


def pickle_content(
    head: bytes, _depth: int = 0, *, complete: bool = False, opcodes: bool = True
) -> str | None:
    """What pickle-bearing format ``head`` (a file's first bytes) is, or None if none.

    Returns a short phrase such as ``"a pickle (protocol 4)"`` for messages.
    ``complete`` says that ``head`` is the whole file; ``opcodes=False`` skips the
    search for header-less pickles (for JSON, which is parsed in full anyway).
    """
    if len(head) >= 2 and head[0] == 0x80 and head[1] in _PICKLE_PROTOCOLS:
        return f"a pickle (protocol {head[1]})"
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return "a zip archive (the torch.save and numpy .npz format, which hold pickles)"
    if head.startswith(b"\x93NUMPY"):
        return "a numpy array file (it can embed pickled objects)"
    if head[257:262] == b"ustar":
        return "a tar archive (torch's legacy save format, which holds pickles)"
    if opcodes and _is_pickle_stream(head, complete):
        return "a pickle (protocol 0/1, or without its protocol header)"
    if _depth < _MAX_DEPTH:
        inner = _decompressed_head(head)
        if inner is not None:
            found = pickle_content(inner[1], _depth + 1)
            if found is not None:
                return f"{inner[0]}-compressed {found}"
    return None


# --------------------------------------------------------------------------- kinds


def file_kind(path: str) -> str:
    """The kind a file's name says it is; :class:`UnsupportedFile` if none is accepted."""
    name = path.rsplit("/", 1)[-1].lower()
    if name.endswith(".safetensors"):
        return SAFETENSORS
    if name.endswith(".json"):
        return JSON
    if name.endswith(".jsonl"):
        return JSONL
    if name.endswith(".model"):
        return SENTENCEPIECE
    if name.endswith(TEXT_SUFFIXES) or name in TEXT_NAMES:
        return TEXT
    raise UnsupportedFile(
        f"file {_clip(path)} is not a kind of file the registry stores; accepted: {_ACCEPTED}. "
        "Leave it out of the folder (or convert it)"
    )


def _clip(path: str, limit: int = 120) -> str:
    text = repr(path)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _bad(path: str, kind: str, why: str) -> InvalidFileContent:
    return InvalidFileContent(f"file {_clip(path)} is named as {kind} but {why}")


def _read_bounded(chunks: Iterable[bytes], path: str, kind: str) -> bytes:
    data = bytearray()
    for chunk in chunks:
        data += chunk
        if len(data) > MAX_PARSED_BYTES:
            raise _bad(path, kind, f"is larger than the {MAX_PARSED_BYTES} bytes parsed")
    return bytes(data)


def _check_text(chunks: Iterable[bytes], path: str) -> None:
    decoder = codecs.getincrementaldecoder("utf-8")("strict")
    offset = 0
    try:
        for chunk in chunks:
            text = decoder.decode(chunk)
            bad = _CONTROL.search(text)
            if bad:
                raise _bad(
                    path, "text", f"holds the control character {bad.group()!r} (binary data?)"
                )
            offset += len(chunk)
        decoder.decode(b"", final=True)
    except UnicodeDecodeError as exc:
        raise _bad(path, "text", f"is not UTF-8 (near byte {offset + exc.start})") from None


def _check_json(chunks: Iterable[bytes], path: str) -> None:
    try:
        loads_bounded(_read_bounded(chunks, path, "JSON"))
    except ValueError as exc:
        raise _bad(path, "JSON", f"is not usable JSON: {exc}") from None


def _check_jsonl(chunks: Iterable[bytes], path: str) -> None:
    for number, line in iter_lines(chunks, path):
        if not line.strip():
            continue
        try:
            loads_bounded(line)
        except ValueError as exc:
            raise _bad(path, "JSON lines", f"line {number} is not usable JSON: {exc}") from None


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise ValueError("truncated or overlong varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos


def sentencepiece_problem(data: bytes) -> str | None:
    """Why ``data`` is not a sentencepiece ``ModelProto`` (top-level wire format), or None.

    ``ModelProto`` has the length-delimited fields 1-5 (pieces, trainer_spec,
    normalizer_spec, self_test_data, denormalizer_spec) and extensions from 200;
    every field must be well-formed and the fields must cover the file exactly.
    """
    pos = 0
    pieces = 0
    while pos < len(data):
        try:
            tag, pos = _varint(data, pos)
            field, wire = tag >> 3, tag & 7
            if 1 <= field <= 5 and wire == 2 or field >= 200 and wire == 2:
                length, pos = _varint(data, pos)
                if pos + length > len(data):
                    return f"field {field} runs past the end of the file"
                pos += length
                pieces += field == 1
            elif field >= 200 and wire in (0, 1, 5):
                pos = _varint(data, pos)[1] if wire == 0 else pos + (8 if wire == 1 else 4)
            else:
                return (
                    f"byte {pos}: field {field} (wire type {wire}) is not in a sentencepiece model"
                )
        except ValueError as exc:
            return f"byte {pos}: {exc}"
    if pos != len(data):
        return "the last field runs past the end of the file"
    if pieces == 0:
        return "it holds no vocabulary pieces"
    return None


def _check_sentencepiece(chunks: Iterable[bytes], path: str) -> None:
    problem = sentencepiece_problem(_read_bounded(chunks, path, "a sentencepiece model"))
    if problem is not None:
        raise _bad(path, "a sentencepiece model (protobuf)", f"is not one: {problem}")


_CHECKS: dict[str, Callable[[Iterable[bytes], str], None]] = {
    TEXT: _check_text,
    JSON: _check_json,
    JSONL: _check_jsonl,
    SENTENCEPIECE: _check_sentencepiece,
}


def check_file(kind: str, chunks: Iterable[bytes], path: str) -> None:
    """Check a non-safetensors file's bytes against its kind; :class:`InvalidFileContent` if not.

    ``chunks`` streams the whole file. Safetensors files are checked by their header parser.
    """
    _CHECKS[kind](chunks, path)
