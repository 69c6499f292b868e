"""A progress bar for long replays: records read against the records the ranges hold.

Drawn on stderr only when stderr is a terminal, so piped output (JSONL export, CI logs) never
carries carriage returns. No dependency: the bar is one line rewritten with ``\\r``.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

BAR_WIDTH = 30
REDRAW_INTERVAL_S = 0.1


class Progress:
    def __init__(self, stream: TextIO | None = None, *, enabled: bool | None = None) -> None:
        self._stream = stream if stream is not None else sys.stderr
        self.enabled = _is_tty(self._stream) if enabled is None else enabled
        self.total = 0
        self.done = 0
        self._label = ""
        self._drawn_at = 0.0
        self._width = 0

    def expect(self, records: int, label: str) -> None:
        """A new range of ``records`` records (named ``label``) is about to be read."""
        self.total += max(0, records)
        self._label = label
        self._draw(force=True)

    def advance(self, records: int) -> None:
        self.done += records
        self._draw(force=self.done >= self.total)

    def close(self) -> None:
        if self.enabled and self._width:
            self._stream.write("\r" + " " * self._width + "\r")
            self._stream.flush()
            self._width = 0

    def _draw(self, *, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self._drawn_at < REDRAW_INTERVAL_S:
            return
        self._drawn_at = now
        fraction = min(1.0, self.done / self.total) if self.total else 0.0
        filled = int(fraction * BAR_WIDTH)
        line = (
            f"replay [{'#' * filled}{'.' * (BAR_WIDTH - filled)}] "
            f"{self.done}/{self.total} records  {self._label}"
        )[:120]
        self._stream.write("\r" + line.ljust(self._width))
        self._stream.flush()
        self._width = len(line)


def _is_tty(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())
