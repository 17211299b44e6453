"""A streaming parser of the Hub commit body (``application/x-ndjson``).

The stock client sends a regular file's bytes base64-encoded inside one JSON line
(``{"key": "file", "value": {"content": "<base64>", "path": ..., "encoding":
"base64"}}``), so one line may be hundreds of megabytes. :class:`CommitBodyParser`
takes the body in chunks as they arrive and never holds a line: each ``content``
string is decoded as it streams into a file of its own (sha256 and size counted on
the way), every other string or number of a line is kept, bounded in size. Its
memory use is one chunk plus a few bytes, whatever the size of the body.

Each line becomes one operation (:class:`CommitHeader`, :class:`AddFile`,
:class:`AddStoredFile`, :class:`DeletePath`); anything else is refused with a
message that names the line.
"""

from __future__ import annotations

import binascii
import hashlib
import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from registry.errors import InvalidRequest, PayloadTooLarge

_ESCAPES = {
    ord('"'): b'"',
    ord("\\"): b"\\",
    ord("/"): b"/",
    ord("b"): b"\b",
    ord("f"): b"\f",
    ord("n"): b"\n",
    ord("r"): b"\r",
    ord("t"): b"\t",
}
_LITERAL = frozenset(b"0123456789+-.eEtruefalsn")
_WHITESPACE = frozenset(b" \t\r")
_MAX_LITERAL = 64
_MAX_DEPTH = 8
_SHA256 = re.compile(r"[0-9a-f]{64}")
_HEX4 = re.compile(rb"[0-9a-fA-F]{4}")
#: The most bytes :meth:`CommitBodyParser.feed` keeps between calls (an escape cut in two).
MAX_CARRY = 12


@dataclass(frozen=True)
class CommitHeader:
    """The first line: the commit message and the commit it must apply to (if any)."""

    summary: str
    description: str
    parent_commit: str | None


@dataclass(frozen=True)
class AddFile:
    """A file whose bytes came in the body, decoded to ``local``."""

    path: str
    local: Path
    size: int
    sha256: str


@dataclass(frozen=True)
class AddStoredFile:
    """A file naming a blob by sha256 (``lfsFile``): sent before, or already stored.

    ``size`` is None when the client left it out (a copy of a file in the repo).
    """

    path: str
    sha256: str
    size: int | None


@dataclass(frozen=True)
class DeletePath:
    """A file (or, with ``folder``, everything under a folder) to remove."""

    path: str
    folder: bool


CommitOp = CommitHeader | AddFile | AddStoredFile | DeletePath


class _Base64File:
    """Decodes base64 text as it streams into a file, counting size and sha256."""

    def __init__(self, path: Path, max_bytes: int, line: int):
        self.path = path
        self._out: BinaryIO = open(path, "wb")  # noqa: SIM115 - closed by finish/discard
        self._rest = b""
        self._max = max_bytes
        self._line = line
        self._hash = hashlib.sha256()
        self.size = 0

    def write(self, text: bytes) -> None:
        """Decode every complete 4-character group of ``text`` (the rest waits)."""
        data = self._rest + text if self._rest else text
        cut = len(data) - len(data) % 4
        self._rest = data[cut:]
        if not cut:
            return
        try:
            decoded = binascii.a2b_base64(data[:cut], strict_mode=True)
        except binascii.Error as exc:
            raise InvalidRequest(
                f"line {self._line}: a file's 'content' is not valid base64 ({exc})"
            ) from None
        self.size += len(decoded)
        if self.size > self._max:
            raise PayloadTooLarge(
                f"line {self._line}: a file's content is over the limit of {self._max} bytes"
            )
        self._hash.update(decoded)
        self._out.write(decoded)

    def finish(self) -> _Decoded:
        """Close the file; the string ended here."""
        self._out.close()
        if self._rest:
            raise InvalidRequest(
                f"line {self._line}: a file's base64 'content' is cut short "
                "(its length is not a multiple of 4)"
            )
        return _Decoded(self.path, self.size, self._hash.hexdigest())

    def discard(self) -> None:
        """Close and remove the file."""
        self._out.close()
        self.path.unlink(missing_ok=True)


@dataclass(frozen=True)
class _Decoded:
    """A decoded ``content`` string, as it stands in the parsed line."""

    local: Path
    size: int
    sha256: str


class _Frame:
    """An object or array being parsed: what it holds so far and what comes next."""

    __slots__ = ("expect", "key", "obj", "parent_key")

    def __init__(self, obj: dict[str, Any] | list[Any], parent_key: str | None, expect: str):
        self.obj = obj
        self.parent_key = parent_key
        self.key: str | None = None
        self.expect = expect


class CommitBodyParser:
    """Push-style parser: :meth:`feed` chunks as they arrive, then :meth:`close`.

    Decoded files go to ``tmp_dir`` (the caller removes it). ``max_line_bytes``
    bounds the bytes of a line outside its ``content`` strings, ``max_file_bytes``
    each decoded file and ``max_ops`` the operation lines (so the list of operations
    stays small however long the body).
    """

    def __init__(
        self, tmp_dir: Path, *, max_line_bytes: int, max_file_bytes: int, max_ops: int = 10_000
    ):
        self._tmp = tmp_dir
        self._max_line = max_line_bytes
        self._max_file = max_file_bytes
        self._max_ops = max_ops
        self._carry = b""
        self._line = 1
        self._line_bytes = 0
        self._stack: list[_Frame] = []
        self._done: Any = _NOTHING  # the line's top-level value, once parsed
        self._text: bytearray | None = None  # a string being read (not a content string)
        self._sink: _Base64File | None = None  # a content string being decoded
        self._string_is_key = False
        self._literal: bytearray | None = None
        self._line_has_content = False
        self._seen_header = False
        self.ops: list[CommitOp] = []

    # ------------------------------------------------------------------ input

    def feed(self, data: bytes) -> list[CommitOp]:
        """Parse ``data`` (the next bytes of the body); returns the operations it completed."""
        before = len(self.ops)
        buf = self._carry + data if self._carry else data
        self._carry = b""
        i = self._scan(buf)
        self._carry = bytes(buf[i:])
        if len(self._carry) > MAX_CARRY:  # pragma: no cover - _scan keeps at most an escape
            raise AssertionError("the parser kept more than an escape sequence")
        return self.ops[before:]

    def close(self) -> list[CommitOp]:
        """The body ended: finish the last line (it need not end in a newline)."""
        before = len(self.ops)
        if self._carry or self._text is not None or self._sink is not None:
            raise self._error("the body ends inside a string")
        if self._literal is not None:
            self._end_literal()
        if self._stack:
            raise self._error("the body ends inside a JSON value")
        if self._done is not _NOTHING:
            self._emit()
        if not self._seen_header:
            raise InvalidRequest("the commit body is empty: it needs a header line first")
        return self.ops[before:]

    def discard(self) -> None:
        """Remove a file still being decoded (after an error)."""
        if self._sink is not None:
            self._sink.discard()
            self._sink = None

    # ------------------------------------------------------------------ scanning

    def _scan(self, buf: bytes) -> int:
        """Consume ``buf``; returns how far it got (the rest is a cut escape sequence)."""
        i, n = 0, len(buf)
        while i < n:
            if self._text is not None or self._sink is not None:
                i = self._scan_string(buf, i, n)
                if i < 0:
                    return -i - 1
                continue
            c = buf[i]
            if self._literal is not None:
                if c in _LITERAL:
                    self._literal.append(c)
                    if len(self._literal) > _MAX_LITERAL:
                        raise self._error("a number or literal is too long")
                    i += 1
                    continue
                self._end_literal()
            i += 1
            if c in _WHITESPACE:
                continue
            if c == 0x0A:  # newline
                self._newline()
            elif c == 0x22:  # '"'
                self._start_string()
            elif c in (0x7B, 0x5B):  # '{', '['
                self._open(c == 0x7B)
            elif c in (0x7D, 0x5D):  # '}', ']'
                self._close_container(c == 0x7D)
            elif c == 0x3A:  # ':'
                self._colon()
            elif c == 0x2C:  # ','
                self._comma()
            elif c in _LITERAL:
                self._value_position()
                self._literal = bytearray([c])
            else:
                raise self._error(f"unexpected character {chr(c)!r}")
        return n

    def _scan_string(self, buf: bytes, i: int, n: int) -> int:
        """Read string bytes from ``i``; returns the next index, or ``-(i+1)`` to wait."""
        quote = buf.find(b'"', i)
        end = buf.find(b"\\", i, n if quote < 0 else quote)  # memchr-fast, unlike a regex
        if end < 0:
            end = n if quote < 0 else quote
        if end > i:
            self._string_bytes(buf[i:end])
        if end == n:
            return n
        if buf[end] == 0x22:
            self._end_string()
            return end + 1
        # a backslash escape
        if end + 1 >= n:
            return -(end + 1)
        code = buf[end + 1]
        if code != ord("u"):
            out = _ESCAPES.get(code)
            if out is None:
                raise self._error(f"invalid escape '\\{chr(code)}' in a string")
            self._string_bytes(out)
            return end + 2
        if end + 6 > n:
            return -(end + 1)
        point = self._hex4(buf[end + 2 : end + 6])
        if 0xD800 <= point < 0xDC00:  # a surrogate pair: \uD8xx\uDCxx
            if not b"\\u".startswith(buf[end + 6 : end + 8]):  # what came of the next "\\u"
                raise self._error("a lone UTF-16 surrogate in a string")
            if end + 12 > n:
                return -(end + 1)
            low = self._hex4(buf[end + 8 : end + 12])
            if not 0xDC00 <= low < 0xE000:
                raise self._error("a lone UTF-16 surrogate in a string")
            point = 0x10000 + ((point - 0xD800) << 10) + (low - 0xDC00)
            self._string_bytes(chr(point).encode())
            return end + 12
        if 0xDC00 <= point < 0xE000:
            raise self._error("a lone UTF-16 surrogate in a string")
        self._string_bytes(chr(point).encode())
        return end + 6

    def _hex4(self, digits: bytes) -> int:
        if not _HEX4.fullmatch(digits):
            raise self._error("an invalid \\u escape in a string")
        return int(digits, 16)

    # ------------------------------------------------------------------ strings

    def _start_string(self) -> None:
        frame = self._stack[-1] if self._stack else None
        if frame is not None and isinstance(frame.obj, dict) and frame.expect in ("key", "key|end"):
            self._string_is_key = True
            self._text = bytearray()
            return
        self._value_position()
        self._string_is_key = False
        if self._is_content_position():
            if self._line_has_content:
                raise self._error("a line holds more than one 'content' string")
            self._line_has_content = True
            fd, name = tempfile.mkstemp(dir=self._tmp, prefix="hub-file-")
            os.close(fd)
            self._sink = _Base64File(Path(name), self._max_file, self._line)
            return
        self._text = bytearray()

    def _is_content_position(self) -> bool:
        """Whether the string starting now is ``value.content`` of the line's object."""
        if len(self._stack) != 2:
            return False
        inner = self._stack[1]
        return (
            inner.parent_key == "value" and isinstance(inner.obj, dict) and inner.key == "content"
        )

    def _string_bytes(self, data: bytes) -> None:
        if self._sink is not None:
            self._sink.write(data)
            return
        assert self._text is not None, "string bytes arrive inside a string"
        if 0x0A in data:
            raise self._error("a raw newline inside a string (a JSON value must be one line)")
        self._count(len(data))
        self._text += data

    def _end_string(self) -> None:
        if self._sink is not None:
            decoded = self._sink.finish()
            self._sink = None
            self._value(decoded)
            return
        assert self._text is not None, "a string ends after it started"
        try:
            text = self._text.decode("utf-8")
        except UnicodeDecodeError:
            raise self._error("a string is not UTF-8") from None
        self._text = None
        if self._string_is_key:
            frame = self._stack[-1]
            if text in frame.obj:
                raise self._error(f"the key {text!r} appears twice in one object")
            frame.key = text
            frame.expect = ":"
        else:
            self._value(text)

    def _end_literal(self) -> None:
        assert self._literal is not None, "a literal ends after it started"
        raw = bytes(self._literal)
        self._literal = None
        self._count(len(raw))
        try:
            value = json.loads(raw)
        except ValueError:
            raise self._error(f"{raw[:20].decode('ascii', 'replace')!r} is not JSON") from None
        self._value(value)

    # ------------------------------------------------------------------ structure

    def _value_position(self) -> None:
        """Raise unless a value may start here."""
        if not self._stack:
            if self._done is not _NOTHING:
                raise self._error("two JSON values on one line")
            return
        frame = self._stack[-1]
        if frame.expect not in ("value", "value|end"):
            raise self._error("a value where a key, ':' or ',' was expected")

    def _open(self, is_object: bool) -> None:
        self._value_position()
        if len(self._stack) >= _MAX_DEPTH:
            raise self._error("JSON nested too deeply")
        parent_key = self._stack[-1].key if self._stack else None
        obj: dict[str, Any] | list[Any] = {} if is_object else []
        self._stack.append(_Frame(obj, parent_key, "key|end" if is_object else "value|end"))

    def _close_container(self, is_object: bool) -> None:
        if not self._stack:
            raise self._error("a closing bracket with nothing open")
        frame = self._stack[-1]
        if isinstance(frame.obj, dict) != is_object or frame.expect not in (
            "key|end",
            "value|end",
            ",|end",
        ):
            raise self._error("a misplaced closing bracket")
        self._stack.pop()
        self._value(frame.obj)

    def _colon(self) -> None:
        if not self._stack or self._stack[-1].expect != ":":
            raise self._error("a misplaced ':'")
        self._stack[-1].expect = "value"

    def _comma(self) -> None:
        if not self._stack or self._stack[-1].expect != ",|end":
            raise self._error("a misplaced ','")
        frame = self._stack[-1]
        frame.expect = "key" if isinstance(frame.obj, dict) else "value"

    def _value(self, value: Any) -> None:
        """A value is complete: store it in its container, or as the line's value."""
        if not self._stack:
            self._done = value
            return
        frame = self._stack[-1]
        if isinstance(frame.obj, dict):
            assert frame.key is not None, "an object's value follows its key"
            frame.obj[frame.key] = value
            frame.key = None
        else:
            frame.obj.append(value)
        frame.expect = ",|end"

    def _newline(self) -> None:
        if self._stack:
            raise self._error("a line ends inside a JSON value (each value must be one line)")
        if self._done is not _NOTHING:
            self._emit()
        self._line += 1
        self._line_bytes = 0
        self._line_has_content = False

    def _count(self, n: int) -> None:
        self._line_bytes += n
        if self._line_bytes > self._max_line:
            raise PayloadTooLarge(
                f"line {self._line}: over {self._max_line} bytes outside file contents"
            )

    def _error(self, why: str) -> InvalidRequest:
        return InvalidRequest(f"commit body, line {self._line}: {why}")

    # ------------------------------------------------------------------ operations

    def _emit(self) -> None:
        value, self._done = self._done, _NOTHING
        is_header = isinstance(value, dict) and value.get("key") == "header"
        if is_header == self._seen_header:
            if isinstance(value, dict) and isinstance(value.get("value"), dict):
                self._drop(value["value"].get("content"))
            if is_header:
                raise self._error("a second header line")
            raise self._error('the first line must be the header ({"key": "header", ...})')
        self._seen_header = True
        if len(self.ops) > self._max_ops:
            raise PayloadTooLarge(f"a commit holds at most {self._max_ops} operations")
        self.ops.append(self._operation(value))

    def _operation(self, line: Any) -> CommitOp:
        if not isinstance(line, dict) or not isinstance(line.get("value"), dict):
            raise self._error('expected {"key": ..., "value": {...}}')
        key, value = line.get("key"), line["value"]
        if key == "header":
            return CommitHeader(
                summary=self._text_field(value, "summary", required=False) or "",
                description=self._text_field(value, "description", required=False) or "",
                parent_commit=self._text_field(value, "parentCommit", required=False),
            )
        if key == "file":
            content = value.get("content")
            encoding = value.get("encoding", "base64")
            if encoding != "base64":
                self._drop(content)
                raise self._error(f"file encoding {encoding!r} is not supported; use base64")
            if not isinstance(content, _Decoded):
                raise self._error("a file line needs its base64 'content' string")
            return AddFile(
                self._text_field(value, "path"), content.local, content.size, content.sha256
            )
        self._drop(value.get("content"))
        if key == "lfsFile":
            algo = value.get("algo", "sha256")
            oid = value.get("oid")
            size = value.get("size")
            if algo != "sha256" or not isinstance(oid, str) or not _SHA256.fullmatch(oid):
                raise self._error("an lfsFile needs algo 'sha256' and 'oid' (64 lowercase hex)")
            if size is not None and (
                not isinstance(size, int) or isinstance(size, bool) or size < 0
            ):
                raise self._error("an lfsFile's 'size' must be a byte count")
            return AddStoredFile(self._text_field(value, "path"), oid, size)
        if key in ("deletedFile", "deletedFolder"):
            return DeletePath(self._text_field(value, "path"), folder=key == "deletedFolder")
        raise self._error(
            f"unknown line key {key!r} (expected header, file, lfsFile, deletedFile, deletedFolder)"
        )

    def _text_field(self, value: dict[str, Any], name: str, *, required: bool = True) -> Any:
        field = value.get(name)
        if field is None and not required:
            return None
        if not isinstance(field, str):
            raise self._error(f"'{name}' must be a string")
        return field

    @staticmethod
    def _drop(content: Any) -> None:
        if isinstance(content, _Decoded):
            content.local.unlink(missing_ok=True)


class _Nothing:
    """No value parsed yet on this line."""


_NOTHING = _Nothing()
