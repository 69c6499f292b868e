"""Reading the audit log by time range, with no consumer group.

Replay must never move a live group's committed offsets, so the one consumer here has no group
id and is assigned partitions by hand: it joins no group and commits nothing. A time range maps
to offsets with ``offsets_for_times`` (the first offset whose timestamp is at or after a time),
records are also filtered by their own timestamp, and the end of every read is fixed when it
starts, so replaying a live topic terminates.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

from aiokafka import ConsumerRecord, TopicPartition

from tokenwire.errors import TokenwireError
from tokenwire.kafka_clients import new_admin, new_consumer, stop_consumer
from tokenwire.kafka_settings import KafkaConnection
from tokenwire.replay.progress import Progress

log = logging.getLogger(__name__)

READ_TIMEOUT_MS = 200
STALL_TIMEOUT_S = 30.0
CLOCK_SKEW_S = 60.0
Record = ConsumerRecord[bytes, bytes]


class ReplayError(TokenwireError):
    """A replay could not read the log (broker unreachable, a read stalled, bad arguments)."""


def parse_time(text: str) -> float:
    """Epoch seconds (``1718000000``, ``1718000000.5``) or ISO-8601; no zone means UTC."""
    value = text.strip()
    try:
        return float(value)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(
            f"{text!r} is neither epoch seconds nor ISO-8601 (e.g. 2025-01-31T12:00:00Z)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def format_time(epoch_s: float | None) -> str:
    if epoch_s is None:
        return "-"
    return datetime.fromtimestamp(epoch_s, UTC).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class TimeRange:
    """``[since, until)`` in epoch seconds; ``None`` leaves that side open."""

    since: float | None = None
    until: float | None = None

    def __post_init__(self) -> None:
        if self.since is not None and self.until is not None and self.since >= self.until:
            raise ValueError(f"--since ({self.since}) must be before --until ({self.until})")

    @property
    def since_ms(self) -> int | None:
        return None if self.since is None else int(self.since * 1000)

    @property
    def until_ms(self) -> int | None:
        return None if self.until is None else int(self.until * 1000)

    @property
    def onward(self) -> TimeRange:
        """From ``since`` to now: events and dead letters follow the request that caused them.

        Starts a little earlier: record times come from different producers' clocks.
        """
        return TimeRange(None if self.since is None else self.since - CLOCK_SKEW_S, None)

    @property
    def bounded(self) -> bool:
        return self.since is not None or self.until is not None

    def contains_ms(self, timestamp_ms: int) -> bool:
        since, until = self.since_ms, self.until_ms
        return (since is None or timestamp_ms >= since) and (until is None or timestamp_ms < until)

    def describe(self) -> str:
        if not self.bounded:
            return "whole log"
        return f"[{format_time(self.since)}, {format_time(self.until)})"


WHOLE_LOG = TimeRange()


@dataclass(frozen=True)
class Span:
    """The offsets of one partition a read covers: ``[start, end)``; ``first`` is the log start."""

    partition: TopicPartition
    first: int
    start: int
    end: int

    @property
    def size(self) -> int:
        return max(0, self.end - self.start)


class LogReader:
    """One group-less consumer (and an admin client for topic metadata), used for a whole replay."""

    def __init__(
        self,
        kafka: KafkaConnection,
        *,
        progress: Progress | None = None,
        client_id: str = "tokenwire-replay",
    ) -> None:
        # group_id=None: manual assignment, no commits, no effect on any consumer group.
        self._consumer = new_consumer(kafka, client_id=client_id, group_id=None)
        self._admin = new_admin(kafka, client_id=f"{client_id}-admin")
        self.progress = progress or Progress(enabled=False)
        self._partitions: dict[str, list[int]] = {}

    async def __aenter__(self) -> LogReader:
        try:
            await self._consumer.start()
            await self._admin.start()
            await self.refresh_topics()
        except Exception as exc:
            await self.close()
            raise ReplayError(f"cannot read the log: {exc!r}") from exc
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        self.progress.close()
        await stop_consumer(self._consumer)
        await self._admin.close()

    async def refresh_topics(self) -> None:
        described: list[dict[str, Any]] = await self._admin.describe_topics()
        self._partitions = {
            t["topic"]: sorted(p["partition"] for p in t["partitions"])
            for t in described
            if t.get("error_code", 0) == 0
        }

    def exists(self, topic: str) -> bool:
        return topic in self._partitions

    def topics_with_prefix(self, prefix: str) -> list[str]:
        return sorted(t for t in self._partitions if t.startswith(prefix))

    def partitions(self, topic: str) -> list[int]:
        return list(self._partitions.get(topic, []))

    async def spans(
        self, topic: str, window: TimeRange = WHOLE_LOG, partitions: Collection[int] | None = None
    ) -> list[Span]:
        """Where ``window`` lies in each partition of ``topic`` (or those of ``partitions`` it
        has; empty if the topic is absent)."""
        tps = [
            TopicPartition(topic, p)
            for p in self._partitions.get(topic, [])
            if partitions is None or p in partitions
        ]
        if not tps:
            return []
        consumer = self._consumer
        first = await consumer.beginning_offsets(tps)
        last = await consumer.end_offsets(tps)
        since_ms, until_ms = window.since_ms, window.until_ms
        start = first if since_ms is None else await self._offsets_at(tps, since_ms, last)
        end = last if until_ms is None else await self._offsets_at(tps, until_ms, last)
        return [Span(tp, first[tp], max(first[tp], start[tp]), end[tp]) for tp in tps]

    async def _offsets_at(
        self, tps: list[TopicPartition], at_ms: int, last: dict[TopicPartition, int]
    ) -> dict[TopicPartition, int]:
        found = await self._consumer.offsets_for_times({tp: max(0, at_ms) for tp in tps})
        return {tp: last[tp] if found.get(tp) is None else found[tp].offset for tp in tps}

    async def batches(
        self, topic: str, window: TimeRange = WHOLE_LOG, partitions: Collection[int] | None = None
    ) -> AsyncIterator[list[Record]]:
        """Every record of ``topic`` (only ``partitions``, if given) in ``window``, batch by
        batch, each partition in order."""
        spans = [s for s in await self.spans(topic, window, partitions) if s.size]
        if not spans:
            return
        self.progress.expect(sum(s.size for s in spans), topic)
        consumer = self._consumer
        consumer.assign([s.partition for s in spans])
        for span in spans:
            consumer.seek(span.partition, span.start)
        ends = {s.partition: s.end for s in spans}
        moved_at = time.monotonic()
        while ends:
            fetched = await consumer.getmany(*ends, timeout_ms=READ_TIMEOUT_MS)
            for tp, records in fetched.items():
                end = ends.get(tp)
                if end is None:
                    continue
                self.progress.advance(len(records))
                moved_at = time.monotonic()
                kept = [r for r in records if r.offset < end and window.contains_ms(r.timestamp)]
                if kept:
                    yield kept
            for tp in list(ends):
                if await consumer.position(tp) >= ends[tp]:
                    del ends[tp]
                    consumer.pause(tp)
            if ends and time.monotonic() - moved_at > STALL_TIMEOUT_S:
                stuck = ", ".join(f"{tp.partition}<{end}" for tp, end in ends.items())
                raise ReplayError(f"reading {topic} stalled for {STALL_TIMEOUT_S}s ({stuck})")
        log.debug("read topic=%s partitions=%s window=%s", topic, len(spans), window.describe())

    async def read(
        self, topic: str, window: TimeRange = WHOLE_LOG, partitions: Collection[int] | None = None
    ) -> list[Record]:
        return [
            record async for batch in self.batches(topic, window, partitions) for record in batch
        ]


@dataclass(frozen=True)
class Where:
    """A record's coordinates; printed as ``topic[partition]@offset``."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int

    @classmethod
    def of(cls, record: Record) -> Where:
        return cls(record.topic, record.partition, record.offset, record.timestamp)

    @property
    def timestamp(self) -> float:
        return self.timestamp_ms / 1000

    def __str__(self) -> str:
        return f"{self.topic}[{self.partition}]@{self.offset}"


def header(record: Record, name: str) -> str | None:
    for key, value in record.headers or ():
        if key == name:
            return value.decode("utf-8", errors="replace")
    return None


def text_key(record: Record) -> str | None:
    return None if record.key is None else record.key.decode("utf-8", errors="replace")


def ordered(records: Sequence[Record]) -> list[Record]:
    """Records of one single-partition topic, in log order."""
    return sorted(records, key=lambda r: (r.partition, r.offset))
