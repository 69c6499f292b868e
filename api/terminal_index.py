"""Where recent requests ended: (session topic, request id) → offset of their done/error event.

Each offset is kept with the topic's generation (epoch) it was read in, and answers only for that
generation: an offset of a deleted topic means nothing in the topic created again under its name.

Lets ``until=done`` reconnects get their 204 without re-reading the topic. Bounded: the least
recently ended are forgotten first (``Settings.sse_terminal_index_size``), and forgetting a
deleted topic costs its own entries only.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable

from api.session_feed import Entry
from schemas.session_events import TERMINAL_TYPES


class TerminalIndex:
    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self._capacity = capacity
        self._offsets: OrderedDict[tuple[str, str], tuple[str, int]] = OrderedDict()
        self._by_topic: dict[str, set[str]] = {}

    def __len__(self) -> int:
        return len(self._offsets)

    def get(self, topic: str, request_id: str, epoch: str) -> int | None:
        known = self._offsets.get((topic, request_id))
        if known is None or known[0] != epoch:
            return None
        return known[1]

    def remember(self, topic: str, epoch: str, entries: Iterable[Entry | None]) -> None:
        for entry in entries:
            if entry is not None and entry.type in TERMINAL_TYPES:
                key = (topic, entry.request_id)
                self._offsets[key] = (epoch, entry.offset)
                self._offsets.move_to_end(key)
                self._by_topic.setdefault(topic, set()).add(entry.request_id)
        while len(self._offsets) > self._capacity:
            (old_topic, old_request), _ = self._offsets.popitem(last=False)
            self._discard(old_topic, old_request)

    def forget_topic(self, topic: str) -> None:
        """Drop a deleted (or re-created) topic's entries: they only take room now."""
        for request_id in self._by_topic.pop(topic, ()):
            del self._offsets[(topic, request_id)]

    def _discard(self, topic: str, request_id: str) -> None:
        requests = self._by_topic.get(topic)
        if requests is not None:
            requests.discard(request_id)
            if not requests:
                del self._by_topic[topic]
