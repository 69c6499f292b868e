"""Where a session's stream lives, and how a position in it is written and read.

Two layouts (``TOKENWIRE_SESSION_LAYOUT``), each a ``SessionLog``:

- ``topic`` (the default): session ``S`` is the topic ``chat.session.S``, one partition. The worker
  (and the edge's ingress) create it before its first event; a position is an offset in it; the
  janitor deletes idle ones. Simple to read by hand, but every session is a topic: a broker stops
  answering somewhere past ~18,000 of them, and each new session pays a CreateTopics.
- ``shared``: every session's events go to ``chat.sessions``, keyed by session id, in partition
  ``partition_of(S)`` (Kafka's default partitioner, so the same number as its requests in
  ``chat.requests``: the worker owning those writes them). A session is still one ordered stream
  inside its partition; a position is an offset in that partition, and readers skip other
  sessions' records by key. No topic is ever created per session, many sessions' events share
  record batches, and retention replaces the janitor. ``chat.sessions.index`` says where each
  request's events begin (schemas/session_index.py), so a reader seeks close to a session's
  events instead of reading its partition from the start.

The worker's writer and ledger, the edge's hub (api/session_hub.py, api/shared_session_hub.py),
resume and replay ask this module where a session is; only here do the layouts differ.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.partitioner import murmur2

from schemas.session_index import RequestStart
from tokenwire.kafka_clients import new_consumer, stop_consumer
from tokenwire.kafka_settings import KafkaConnection
from tokenwire.session_index import IndexReader, IndexTable
from tokenwire.settings import Settings
from tokenwire.topics import SessionTopics

log = logging.getLogger(__name__)

READ_TIMEOUT_MS = 500
# What a request's first event waits for (the shared layout's index write), or None.
Opening = Awaitable[object] | None
INDEX_TIMEOUT_S = 15.0


def partition_of(session_id: str, partitions: int) -> int:
    """The partition Kafka's default partitioner picks for key ``session_id``."""
    return (murmur2(session_id.encode()) & 0x7FFFFFFF) % partitions


def place_of(settings: Settings, session_id: str) -> TopicPartition:
    """Where ``session_id``'s events are, in the configured layout."""
    if settings.session_layout == "shared":
        return TopicPartition(
            settings.sessions_topic, partition_of(session_id, settings.requests_partitions)
        )
    return TopicPartition(settings.session_topic(session_id), 0)


async def read_partition(
    kafka: KafkaConnection,
    tp: TopicPartition,
    start: int,
    keep: Callable[[ConsumerRecord], bool],
    *,
    client_id: str,
) -> list[ConsumerRecord]:
    """The records of ``tp`` from ``start`` (or its oldest retained one) to its end as of now
    that ``keep`` takes; nothing if the topic does not exist."""
    consumer = new_consumer(kafka, client_id=client_id)
    await consumer.start()
    try:
        if tp.topic not in await consumer.topics():
            return []
        consumer.assign([tp])
        first = (await consumer.beginning_offsets([tp]))[tp]
        end = (await consumer.end_offsets([tp]))[tp]
        position = max(start, first)
        if end <= position:
            return []
        consumer.seek(tp, position)
        kept: list[ConsumerRecord] = []
        while await consumer.position(tp) < end:
            batches = await consumer.getmany(tp, timeout_ms=READ_TIMEOUT_MS)
            kept.extend(r for r in batches.get(tp, []) if r.offset < end and keep(r))
        return kept
    finally:
        await stop_consumer(consumer)


def request_event(
    record: ConsumerRecord, session_id: str, request_id: str
) -> dict[str, Any] | None:
    """The record as an event of ``request_id`` in ``session_id``, or None."""
    if record.value is None:
        return None
    try:
        event = orjson.loads(record.value)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(event, dict) or event.get("request_id") != request_id:
        return None
    if event.get("session_id") not in (None, session_id):
        return None
    return event


class SessionLog(ABC):
    """The worker's view of the layout: where to write, what to do before a request's first
    event, and how to read a request back after a crash."""

    layout: str
    # The topic layout deletes idle session topics; the shared one lets retention age them out.
    needs_janitor: bool

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def place(self, session_id: str) -> TopicPartition:
        return place_of(self.settings, session_id)

    @abstractmethod
    async def open_request(self, session_id: str, request_id: str) -> Opening:
        """Make the session writable for this request; before its first event, every attempt.

        Returns what the request's first event must wait for (the writer awaits it), or None:
        the shared layout's index write goes out now and is awaited only then, so it overlaps
        the LLM's time to first token instead of adding to it.
        """

    def written(self, tp: TopicPartition, offset: int) -> None:  # noqa: B027 (optional hook)
        """An event of a session is on the broker at ``offset``."""

    def forget(self, session_id: str) -> None:  # noqa: B027
        """A write failed: what was known of the session's place may be stale."""

    def note_ends(self, ends: dict[int, int]) -> None:  # noqa: B027
        """End offsets of session partitions at assignment (shared: a lower bound to start at)."""

    @abstractmethod
    async def request_events(self, session_id: str, request_id: str) -> list[dict[str, Any]]:
        """Every event of ``request_id`` on the log, in log order."""

    async def close(self) -> None:
        return None


class TopicSessionLog(SessionLog):
    layout = "topic"
    needs_janitor = True

    def __init__(self, settings: Settings, topics: SessionTopics) -> None:
        super().__init__(settings)
        self.topics = topics

    async def open_request(self, session_id: str, request_id: str) -> Opening:
        await self.topics.ensure(session_id)
        return None

    def forget(self, session_id: str) -> None:
        self.topics.forget(self.settings.session_topic(session_id))

    async def request_events(self, session_id: str, request_id: str) -> list[dict[str, Any]]:
        records = await read_partition(
            self.settings.kafka_connection, self.place(session_id), 0,
            lambda r: True, client_id="tokenwire-worker-ledger",
        )  # fmt: skip
        return [e for r in records if (e := request_event(r, session_id, request_id))]


class SharedSessionLog(SessionLog):
    """Writes a request's start to the index, acknowledged, before its first event.

    The start's offset is a lower bound of the request's first event: the highest offset this
    process saw acknowledged in the partition, plus one (or the partition's end at assignment,
    or asked of the broker once). Whoever writes the partition, that offset is below any event
    written after it.
    """

    layout = "shared"
    needs_janitor = False

    def __init__(self, settings: Settings, producer: AIOKafkaProducer) -> None:
        super().__init__(settings)
        self._producer = producer
        self._ends: dict[int, int] = {}
        self.index = IndexTable(settings.session_index_remembered)
        self._reader = IndexReader(
            settings.kafka_connection, settings.sessions_index_topic, self.index,
            client_id="tokenwire-worker-index",
        )  # fmt: skip

    async def open_request(self, session_id: str, request_id: str) -> Opening:
        tp = self.place(session_id)
        start = RequestStart(
            session_id=session_id, request_id=request_id, partition=tp.partition,
            offset=await self._lower_bound(tp),
        )  # fmt: skip
        # Keyed by request and offset: compaction keeps every bound written for a request (a
        # re-delivered one writes another, higher one), and readers take the lowest.
        sent = await self._producer.send(
            self.settings.sessions_index_topic, orjson.dumps(start.model_dump(mode="json")),
            key=f"{request_id}@{start.offset}".encode(), partition=tp.partition,
        )  # fmt: skip
        # Not kept in this process's table: a re-delivered request's lookup reads the index
        # up to its end anyway, and a worker's table would only grow with every request.
        return sent

    def written(self, tp: TopicPartition, offset: int) -> None:
        if offset >= self._ends.get(tp.partition, -1):
            self._ends[tp.partition] = offset + 1

    def note_ends(self, ends: dict[int, int]) -> None:
        for partition, end in ends.items():
            self._ends[partition] = max(end, self._ends.get(partition, 0))

    async def _lower_bound(self, tp: TopicPartition) -> int:
        known = self._ends.get(tp.partition)
        if known is None:
            kafka = self.settings.kafka_connection
            consumer = new_consumer(kafka, client_id="tokenwire-worker-end")
            await consumer.start()
            try:
                consumer.assign([tp])
                known = (await consumer.end_offsets([tp]))[tp]
            finally:
                await stop_consumer(consumer)
            self.note_ends({tp.partition: known})
        return known

    async def request_events(self, session_id: str, request_id: str) -> list[dict[str, Any]]:
        tp = self.place(session_id)
        # Always read the index up to its end: an earlier worker may have written a lower bound
        # for this request than this one just did.
        await self._reader.catch_up([tp.partition], timeout_s=INDEX_TIMEOUT_S)
        start = self.index.request_start(request_id)
        if start is None:
            if self.index.complete:
                return []  # no start on the index: the request never wrote an event
            start = 0
        key = session_id.encode()
        records = await read_partition(
            self.settings.kafka_connection, tp, start, lambda r: r.key == key,
            client_id="tokenwire-worker-ledger",
        )  # fmt: skip
        return [e for r in records if (e := request_event(r, session_id, request_id))]

    async def close(self) -> None:
        await self._reader.close()


def worker_session_log(
    settings: Settings, producer: AIOKafkaProducer, admin: AIOKafkaAdminClient
) -> SessionLog:
    if settings.session_layout == "shared":
        return SharedSessionLog(settings, producer)
    return TopicSessionLog(settings, SessionTopics(settings, admin))
