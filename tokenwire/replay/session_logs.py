"""Reading sessions' events in the layout the settings name (tokenwire/session_log.py).

The one module of the replay that tells the layouts apart:

- ``topic``: session ``S`` is the topic ``chat.session.S``. Reading a session reads its topic;
  a scan of all sessions finds them by topic prefix and reads one topic at a time.
- ``shared``: ``S``'s events are the records keyed ``S`` in partition ``partition_of(S)`` of
  ``chat.sessions``, among other sessions' (so its offsets are sparse). Reading a session reads
  its partition and keeps its key. A scan reads each partition once and groups its records by
  key: checking every session costs one read of the topic, not one per session, and memory holds
  one partition's records of the range. Sessions are found from the keys read.

A record of the shared topic that no reader of its session finds (no key, or in another
partition than its key's) is *misplaced*: scans gather them per session. An event whose
``session_id`` is not its key stays in its key's stream, where ``check_placement`` names it,
as it names an event on another session's topic.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections import defaultdict
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field

from pydantic import ValidationError

from schemas.session_events import parse_session_event
from tokenwire.replay.audit_log import SessionLog, decode_session_records
from tokenwire.replay.log_reader import LogReader, Record, Span, TimeRange, Where, ordered, text_key
from tokenwire.session_log import partition_of
from tokenwire.settings import Settings


@dataclass
class Misplaced:
    """Records of the shared topic with one (claimed session, key) that their session's readers
    never see; ``session_id``: the session their events name (None: they do not decode)."""

    session_id: str | None
    key: str | None
    count: int
    first: Where


def trimmed(spans: Iterable[Span]) -> bool:
    """Retention deleted records where these reads begin."""
    return any(s.first > 0 and s.start == s.first for s in spans)


class SessionLogs(ABC):
    """Sessions' logs in one layout, read with one ``LogReader``."""

    def __init__(self, reader: LogReader, settings: Settings) -> None:
        self.reader = reader
        self.settings = settings
        self._misplaced: dict[tuple[str | None, str | None], Misplaced] = {}

    @property
    @abstractmethod
    def description(self) -> str:
        """Where sessions' events are, for a report."""

    @abstractmethod
    async def read(self, session_id: str, window: TimeRange) -> SessionLog:
        """One session's events from ``window.onward`` (they follow the requests in ``window``)."""

    @abstractmethod
    def scan(
        self, window: TimeRange, sessions: set[str] | None, known: set[str]
    ) -> AsyncIterator[SessionLog]:
        """Each session's log once, as ``read`` reads it: those of ``sessions``, or (None) each of
        ``known`` and each other with records in ``window``."""

    @property
    def misplaced(self) -> list[Misplaced]:
        return list(self._misplaced.values())


class TopicSessionLogs(SessionLogs):
    @property
    def description(self) -> str:
        return f"a topic each, {self.settings.session_topic_prefix}<session>"

    async def read(self, session_id: str, window: TimeRange) -> SessionLog:
        topic = self.settings.session_topic(session_id)
        if not self.reader.exists(topic):
            gone = (
                f"session topic {topic} no longer exists (deleted by the session janitor or "
                "never created)"
            )
            return SessionLog(session_id, topic, False, False, [], [], gone)
        spans = await self.reader.spans(topic, window.onward)
        events, bad = decode_session_records(ordered(await self.reader.read(topic, window.onward)))
        return SessionLog(session_id, topic, True, trimmed(spans), events, bad)

    async def scan(
        self, window: TimeRange, sessions: set[str] | None, known: set[str]
    ) -> AsyncIterator[SessionLog]:
        names = sessions if sessions is not None else known | await self._found(window)
        for session_id in sorted(names):
            yield await self.read(session_id, window)

    async def _found(self, window: TimeRange) -> set[str]:
        prefix, reader = self.settings.session_topic_prefix, self.reader
        return {
            topic[len(prefix) :]
            for topic in reader.topics_with_prefix(prefix)
            if not window.bounded or any(s.size for s in await reader.spans(topic, window))
        }


@dataclass
class PartitionRead:
    """One partition of the shared topic as read: the wanted sessions' records, by key."""

    partition: int
    exists: bool
    trimmed: bool = False
    records: dict[str, list[Record]] = field(default_factory=lambda: defaultdict(list))
    # Sessions with a record in the scan's own range (not only after it).
    found: set[str] = field(default_factory=set)


class SharedSessionLogs(SessionLogs):
    @property
    def topic(self) -> str:
        return self.settings.sessions_topic

    @property
    def description(self) -> str:
        return f"keyed by session in {self.topic}"

    def partition_of(self, session_id: str) -> int:
        return partition_of(session_id, self.settings.requests_partitions)

    async def read(self, session_id: str, window: TimeRange) -> SessionLog:
        part = await self._read_partition(self.partition_of(session_id), window, {session_id})
        return self._log(session_id, part)

    async def scan(
        self, window: TimeRange, sessions: set[str] | None, known: set[str]
    ) -> AsyncIterator[SessionLog]:
        expected: dict[int, set[str]] = defaultdict(set)
        for session_id in known if sessions is None else sessions:
            expected[self.partition_of(session_id)].add(session_id)
        partitions = set(expected)
        if sessions is None:
            partitions |= set(self.reader.partitions(self.topic))
        for partition in sorted(partitions):
            part = await self._read_partition(partition, window, sessions)
            for session_id in sorted(expected[partition] | part.found):
                yield self._log(session_id, part)
                part.records.pop(session_id, None)  # checked: its memory goes

    async def _read_partition(
        self, partition: int, window: TimeRange, sessions: set[str] | None
    ) -> PartitionRead:
        """Records keyed by a session of ``sessions`` (None: any) in ``partition``, in order."""
        if partition not in self.reader.partitions(self.topic):
            return PartitionRead(partition, exists=False)
        spans = await self.reader.spans(self.topic, window.onward, [partition])
        part = PartitionRead(partition, exists=True, trimmed=trimmed(spans))
        batches = self.reader.batches(self.topic, window.onward, [partition])
        async with contextlib.aclosing(batches):
            async for batch in batches:
                for record in batch:
                    key = text_key(record)
                    if key is None or self.partition_of(key) != partition:
                        self._note_misplaced(record, key, sessions)
                    elif sessions is None or key in sessions:
                        part.records[key].append(record)
                        if window.contains_ms(record.timestamp):
                            part.found.add(key)
        return part

    def _note_misplaced(self, record: Record, key: str | None, sessions: set[str] | None) -> None:
        try:
            claimed: str | None = parse_session_event(record.value or b"").session_id
        except ValidationError:
            claimed = None
        if sessions is not None and not {key, claimed} & sessions:
            return
        group = self._misplaced.get((claimed, key))
        if group is None:
            self._misplaced[(claimed, key)] = Misplaced(claimed, key, 1, Where.of(record))
        else:
            group.count += 1

    def _log(self, session_id: str, part: PartitionRead) -> SessionLog:
        label = f"{self.topic}[{part.partition}] (key {session_id})"
        if not part.exists:
            gone = (
                f"{self.topic} (shared session layout) has no partition {part.partition}"
                if self.reader.exists(self.topic)
                else f"the shared session topic {self.topic} does not exist"
            )
            return SessionLog(session_id, label, False, False, [], [], gone)
        events, bad = decode_session_records(part.records.get(session_id, []))
        return SessionLog(session_id, label, True, part.trimmed, events, bad)


def session_logs(reader: LogReader, settings: Settings) -> SessionLogs:
    """The reader of ``settings.session_layout``."""
    if settings.session_layout == "shared":
        return SharedSessionLogs(reader, settings)
    return TopicSessionLogs(reader, settings)
