"""SSE event ids: ``<epoch>-<offset>``, a session topic's generation and the event's offset in it.

Offsets alone are ambiguous: the janitor deletes an idle session topic and the next POST creates
it again, starting at offset 0, so an old ``Last-Event-ID: 41`` would skip the new answer's first
42 events (or be refused with 416). The epoch names the generation, as Centrifugo's offset +
epoch do: it is the first 8 bytes of the topic's Kafka id (a UUID the controller assigns at
creation and never reuses) in lowercase hex. A position of another generation is no position in
this one: the stream starts at the topic's beginning.

A plain offset (``41``, what clients of the edge before epochs hold) keeps its old meaning: that
offset in whichever generation is current.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass

EPOCH_BYTES = 8
EPOCH_CHARS = 2 * EPOCH_BYTES
MAX_OFFSET = 2**63 - 1
_POSITION = re.compile(rf"(?:(?P<epoch>[0-9a-f]{{{EPOCH_CHARS}}})-)?(?P<offset>[0-9]{{1,19}})")


@dataclass(frozen=True, slots=True)
class Position:
    """An offset, and the generation it belongs to when the client said (None: any)."""

    epoch: str | None
    offset: int

    def __str__(self) -> str:
        return format_event_id(self.epoch, self.offset)


def epoch_of(topic_id: uuid.UUID) -> str:
    return topic_id.bytes[:EPOCH_BYTES].hex()


def format_event_id(epoch: str | None, offset: int) -> str:
    return str(offset) if epoch is None else f"{epoch}-{offset}"


def parse_position(raw: str) -> Position | None:
    """``<epoch>-<offset>`` or ``<offset>``; None when ``raw`` is neither."""
    match = _POSITION.fullmatch(raw.strip())
    if match is None:
        return None
    offset = int(match["offset"])
    if offset > MAX_OFFSET:
        return None
    return Position(match["epoch"], offset)
