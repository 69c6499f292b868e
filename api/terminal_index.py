"""Where recent requests ended: (session topic, request id) → offset of their done/error event.

Lets ``until=done`` reconnects get their 204 without re-reading the topic; bounded, newest kept.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable

from api.session_feed import Entry
from schemas.session_events import TERMINAL_TYPES

REMEMBERED = 4_096


class TerminalIndex:
    def __init__(self, capacity: int = REMEMBERED) -> None:
        self._capacity = capacity
        self._offsets: OrderedDict[tuple[str, str], int] = OrderedDict()

    def get(self, topic: str, request_id: str) -> int | None:
        return self._offsets.get((topic, request_id))

    def remember(self, topic: str, entries: Iterable[Entry | None]) -> None:
        for entry in entries:
            if entry is not None and entry.type in TERMINAL_TYPES:
                key = (topic, entry.request_id)
                self._offsets[key] = entry.offset
                self._offsets.move_to_end(key)
        while len(self._offsets) > self._capacity:
            self._offsets.popitem(last=False)

    def forget_topic(self, topic: str) -> None:
        """A deleted topic's offsets mean nothing for a topic re-created under its name."""
        for key in [key for key in self._offsets if key[0] == topic]:
            del self._offsets[key]
