"""One session's in-memory feed and the subscribers reading it, each at its own cursor.

The feed caches the newest ``capacity`` events of a session topic as ``Entry`` (offset, type,
request id, the SSE event as sent). It is complete from ``base`` up to ``next_offset`` (the
consumer's position): every record of the topic in that range is cached, or was not a session event.
A feed holds one generation of its topic, ``epoch`` (``api.event_ids``), known once the topic is
found; the hub drops the feed when the topic is deleted or re-created.

Each ``Subscription`` keeps ``cursor``, the next offset it wants, so any number of readers share
one cache and none sees an event twice. Nothing here touches Kafka: ``SessionHub`` feeds records
in and applies seeks and pauses.
"""

from __future__ import annotations

import asyncio
import bisect
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from operator import attrgetter

# Why a subscription ended; the SSE stream logs it and (for SLOW) counts it.
CLOSED_SLOW = "slow"
CLOSED_DELETED = "deleted"
# The topic is another generation than the reader's position belongs to: it resumes afresh.
CLOSED_RECREATED = "recreated"
CLOSED_SHUTDOWN = "shutdown"
CLOSED_LEFT = "left"
CLOSED_DISCONNECTED = "disconnected"


@dataclass(frozen=True, slots=True)
class Entry:
    offset: int
    type: str
    request_id: str
    sse: bytes  # the event encoded for the wire, once for all readers


class Subscription:
    """A reader of one session feed; ``next()`` yields entries from ``cursor`` on, in order."""

    def __init__(
        self,
        session_id: str,
        cursor: int,
        on_leave: Callable[[Subscription], None],
        *,
        epoch: str | None = None,
    ) -> None:
        self.session_id = session_id
        self.cursor = cursor
        # The generation ``cursor`` is an offset in; None: any (a start at 0 fits every one).
        self.epoch = epoch
        self.caught_up = False
        self.closed_reason: str | None = None
        self.feed: SessionFeed | None = None
        self._on_leave = on_leave
        self._wake = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    def close(self, reason: str) -> None:
        if self.closed_reason is None:
            self.closed_reason = reason
        self._wake.set()

    def leave(self) -> None:
        """Stop reading; idempotent. The hub releases the session when its last reader left."""
        self.close(CLOSED_LEFT)
        self._on_leave(self)

    def ready(self, limit: int) -> list[Entry]:
        """Up to ``limit`` entries already cached after ``cursor``, without waiting: a reader
        that fell behind sends them in one write instead of one each."""
        taken: list[Entry] = []
        while len(taken) < limit and self.closed_reason is None and self.feed is not None:
            entry = self.feed.entry_for(self)
            if entry is None:
                break
            self.cursor = entry.offset + 1
            taken.append(entry)
        return taken

    async def next(self, *, give_up_if_missing: bool = False) -> Entry | None:
        """The next entry at or after ``cursor``, waiting for it; None once closed.

        ``give_up_if_missing`` returns None instead of waiting for a topic that does not exist.
        """
        while self.closed_reason is None and self.feed is not None:
            entry = self.feed.entry_for(self)
            if entry is not None:
                self.cursor = entry.offset + 1
                return entry
            if give_up_if_missing and self.feed.missing:
                return None
            self._wake.clear()
            await self._wake.wait()
        return None


class SessionFeed:
    def __init__(self, topic: str, capacity: int, start: int) -> None:
        self.topic = topic
        self.capacity = capacity
        self.entries: deque[Entry] = deque()
        self.base = start
        self.next_offset = start
        self.subscribers: set[Subscription] = set()
        self.epoch: str | None = None
        # Lifecycle, driven by the hub: the topic exists and is assigned; a seek is owed.
        self.active = False
        self.missing = False
        self.needs_seek = True
        self.paused_since: float | None = None

    # --- readers ------------------------------------------------------------------------
    def entry_for(self, sub: Subscription) -> Entry | None:
        if not self.active:
            return None
        if sub.cursor < self.base:
            # Only a rewind in flight leaves a reader below base; it waits for the re-read.
            return None
        entry = self._at_or_after(sub.cursor)
        if entry is None and sub.cursor >= self.next_offset:
            sub.caught_up = True
        return entry

    def _at_or_after(self, offset: int) -> Entry | None:
        entries = self.entries
        if not entries or offset >= self.next_offset:
            return None
        first = entries[0].offset
        if offset <= first:
            return entries[0]
        index = offset - first
        if index < len(entries) and entries[index].offset == offset:
            return entries[index]
        index = bisect.bisect_left(entries, offset, key=attrgetter("offset"))
        return entries[index] if index < len(entries) else None

    def floor(self) -> int | None:
        """The lowest cursor of any reader: entries below it are no longer needed."""
        return min((sub.cursor for sub in self.subscribers), default=None)

    def head_needed(self) -> bool:
        """True when the cache is full and its oldest entry is still wanted by a reader."""
        floor = self.floor()
        return (
            len(self.entries) >= self.capacity
            and floor is not None
            and floor <= self.entries[0].offset
        )

    # --- writers (the hub) --------------------------------------------------------------
    def activate(self, epoch: str) -> list[Subscription]:
        """The topic is there, in generation ``epoch``: readers whose position belongs to
        another generation are closed (they resume afresh) and returned."""
        self.active, self.missing, self.epoch = True, False, epoch
        strangers = [s for s in self.subscribers if s.epoch is not None and s.epoch != epoch]
        for sub in strangers:
            self.subscribers.discard(sub)
            sub.close(CLOSED_RECREATED)
        return strangers

    def append(self, records: Iterable[tuple[int, Entry | None]]) -> int | None:
        """Cache records in offset order; a record without entry only advances the position.

        When the cache is full and its oldest entry is still wanted, stop and return the offset
        of the first record not taken: the hub seeks back there and pauses the partition.
        """
        floor = self.floor()
        for offset, entry in records:
            if offset < self.next_offset:
                continue
            if entry is not None:
                if len(self.entries) >= self.capacity:
                    head = self.entries[0]
                    if floor is not None and floor <= head.offset:
                        return offset
                    self.entries.popleft()
                    self.base = head.offset + 1
                self.entries.append(entry)
            self.next_offset = offset + 1
        return None

    def rewind(self, offset: int) -> None:
        """Re-read from ``offset``: readers ahead of it filter by cursor, so none sees a repeat."""
        self.entries.clear()
        self.base = self.next_offset = offset
        self.needs_seek = True
        self.paused_since = None

    def slow_readers(self, pending_before: int, limit: int) -> list[Subscription]:
        """Live readers that still had more than ``limit`` events unread when new ones came.

        Readers still catching up on history are exempt: their backlog is not slowness.
        """
        return [
            sub
            for sub in self.subscribers
            if sub.caught_up and pending_before - sub.cursor > limit
        ]

    def readers_at_head(self) -> list[Subscription]:
        head = self.entries[0].offset if self.entries else self.next_offset
        return [sub for sub in self.subscribers if sub.cursor <= head]

    def wake_all(self) -> None:
        for sub in self.subscribers:
            sub.wake()

    def close_all(self, reason: str) -> None:
        for sub in list(self.subscribers):
            sub.close(reason)
        self.subscribers.clear()
