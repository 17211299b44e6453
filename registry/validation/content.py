"""Recognise pickle-bearing content by its bytes, whatever the file is called.

Refusing ``.bin``/``.pt``/``.pkl`` names (``registry.validation.paths``) stops
honest mistakes; this module stops a pickle renamed ``notes.dat``. It looks at
the first bytes of a file only: pickle protocols 2-5 open with ``0x80`` and the
protocol number, ``torch.save`` and numpy ``.npz`` write zip archives (of
pickles), numpy ``.npy`` files may embed pickled objects. Compressed streams
(gzip, bz2, xz) are opened just far enough to look at what they hold.
"""

from __future__ import annotations

import bz2
import lzma
import zlib

HEAD_BYTES = 4096
_PICKLE_PROTOCOLS = range(2, 6)
_MAX_DEPTH = 3


def _decompressed_head(head: bytes) -> tuple[str, bytes] | None:
    """The compression name and the first bytes it decompresses to, if ``head`` is compressed."""
    try:
        if head.startswith(b"\x1f\x8b"):
            return "gzip", zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(head, 64)
        if head.startswith(b"BZh"):
            return "bz2", bz2.BZ2Decompressor().decompress(head, 64)
        if head.startswith(b"\xfd7zXZ\x00"):
            return "xz", lzma.LZMADecompressor().decompress(head, 64)
    except (OSError, EOFError, ValueError, zlib.error, lzma.LZMAError):
        return None
    return None


def pickle_content(head: bytes, _depth: int = 0) -> str | None:
    """What pickle-bearing format ``head`` (a file's first bytes) is, or None if none.

    Returns a short phrase such as ``"a pickle (protocol 4)"`` for messages.
    """
    if len(head) >= 2 and head[0] == 0x80 and head[1] in _PICKLE_PROTOCOLS:
        return f"a pickle (protocol {head[1]})"
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return "a zip archive (the torch.save and numpy .npz format, which hold pickles)"
    if head.startswith(b"\x93NUMPY"):
        return "a numpy array file (it can embed pickled objects)"
    if _depth < _MAX_DEPTH:
        inner = _decompressed_head(head)
        if inner is not None:
            found = pickle_content(inner[1], _depth + 1)
            if found is not None:
                return f"{inner[0]}-compressed {found}"
    return None
