"""A small, thread-safe progress bar for transfers, drawn on stderr.

On by default only when stderr is a terminal and ``LOREG_NO_PROGRESS`` is
unset; ``enabled=True/False`` forces it. A disabled bar still counts bytes
(``done``), so callers can always report totals.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import TextIO

from loreg.constants import progress_disabled

_REFRESH_S = 0.1
_BAR_WIDTH = 24


def progress_enabled(stream: TextIO | None = None) -> bool:
    """Default switch: a TTY on ``stream`` (stderr) and no ``LOREG_NO_PROGRESS``."""
    stream = stream if stream is not None else sys.stderr
    if progress_disabled():
        return False
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def format_bytes(n: float) -> str:
    """Human-readable size: ``512 B``, ``1.5 KiB``, ``200.0 MiB``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{int(n)} B" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # unreachable, keeps type checkers happy


class Progress:
    """Byte counter with an optional one-line bar (bytes done / total, rate).

    Use as a context manager; ``update(n)`` may be called from any thread.
    """

    def __init__(
        self,
        total: int,
        description: str = "",
        *,
        enabled: bool | None = None,
        stream: TextIO | None = None,
    ):
        self.total = max(int(total), 0)
        self.description = description
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = progress_enabled(self.stream) if enabled is None else enabled
        self.done = 0
        self._lock = threading.Lock()
        self._start = time.monotonic()
        self._last_draw = 0.0
        self._closed = False

    def update(self, n: int) -> None:
        """Count ``n`` more bytes (negative to undo a failed attempt's bytes)."""
        with self._lock:
            self.done += n
            if not self.enabled:
                return
            now = time.monotonic()
            if now - self._last_draw >= _REFRESH_S or self.done >= self.total:
                self._last_draw = now
                self._draw(now)

    def close(self) -> None:
        """Draw the final state and end the line."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self.enabled:
                self._draw(time.monotonic())
                self.stream.write("\n")
                self.stream.flush()

    def _draw(self, now: float) -> None:
        elapsed = max(now - self._start, 1e-6)
        rate = self.done / elapsed
        if self.total:
            fraction = min(self.done / self.total, 1.0)
            filled = int(fraction * _BAR_WIDTH)
            bar = "#" * filled + "-" * (_BAR_WIDTH - filled)
            amount = f"{format_bytes(self.done)}/{format_bytes(self.total)}"
            line = f"{self.description} [{bar}] {fraction:4.0%} {amount}"
        else:
            line = f"{self.description} {format_bytes(self.done)}"
        line += f" {format_bytes(rate)}/s"
        try:
            self.stream.write("\r" + line.strip() + "\x1b[K")
            self.stream.flush()
        except (OSError, ValueError):
            self.enabled = False

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
