"""Token coalescing: how LLM chunks become session events.

- ``chunk``: one event per chunk (lowest latency, most events).
- ``bounded``: chunks are joined until ``max_chars`` are buffered or the oldest buffered chunk is
  ``max_delay_ms`` old, whichever comes first; the latency added to any chunk is bounded by the
  delay, and a fast model's many tiny chunks cost far fewer Kafka records.
- ``adaptive``: one event per chunk while the worker keeps up, as ``chunk``; while it is behind
  (more chunks already waiting to be written, or this answer's earlier events not yet
  acknowledged by the broker) chunks are joined as in ``bounded``, so a loaded worker writes
  fewer, larger events instead of falling further behind, within the same latency bound.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tokenwire.settings import CoalesceMode, Settings


@dataclass
class Coalescer:
    mode: CoalesceMode
    max_chars: int
    max_delay_s: float
    _parts: list[str] = field(default_factory=list)
    _chars: int = 0
    _first_at: float | None = None
    _last_received_at: float = 0.0

    @classmethod
    def from_settings(cls, settings: Settings) -> Coalescer:
        return cls(
            mode=settings.coalesce_mode,
            max_chars=settings.coalesce_max_chars,
            max_delay_s=settings.coalesce_max_delay_ms / 1000.0,
        )

    def add(self, text: str, received_at: float) -> None:
        if not text:
            return
        if self._first_at is None:
            self._first_at = received_at
        self._parts.append(text)
        self._chars += len(text)
        self._last_received_at = received_at

    @property
    def empty(self) -> bool:
        return not self._parts

    def due(self, now: float, *, behind: bool = False) -> bool:
        """``behind``: the writer has work queued (``adaptive`` joins chunks only then)."""
        if self.empty:
            return False
        if self.mode == "chunk" or self._chars >= self.max_chars:
            return True
        if self.mode == "adaptive" and not behind:
            return True
        return self.deadline() <= now

    def deadline(self) -> float:
        """When the buffered text must leave at the latest (meaningless when empty)."""
        return (self._first_at or 0.0) + self.max_delay_s

    def drain(self) -> tuple[str, float]:
        """The buffered text and when its last chunk was received; resets the buffer."""
        text, received_at = "".join(self._parts), self._last_received_at
        self._parts.clear()
        self._chars = 0
        self._first_at = None
        return text, received_at
