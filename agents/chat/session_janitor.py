"""Deletes session topics idle for longer than the TTL, so partitions track live sessions.

A topic is idle when it holds no record newer than the TTL (asked of the broker by timestamp).
An empty topic (created by the ingress before its first event) gets the same grace from when the
janitor first saw it empty. The durable record is ``chat.requests`` + ``chat.events``.

A sweep reads offsets in batches of ``session_janitor_batch_size`` topics in name order, each
within ``session_janitor_batch_timeout_s``, and deletes a batch's idle topics before it reads the
next: however many sessions there are, one request stays small and one slow or failing batch
(a topic deleted by another worker's janitor since the listing, a leader moving) skips only its
own topics until the next sweep. What a sweep holds beyond the topic names is one batch.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from tokenwire.kafka_clients import new_consumer, stop_consumer
from tokenwire.settings import Settings
from tokenwire.topics import SessionTopics

log = logging.getLogger(__name__)

CLIENT_ID = "tokenwire-janitor"


@dataclass(frozen=True, slots=True)
class BatchOffsets:
    """Per topic of a batch: its end offset, and whether it holds a record newer than the TTL."""

    ends: dict[str, int]
    recent: set[str]


class SessionJanitor:
    def __init__(
        self, settings: Settings, admin: AIOKafkaAdminClient, session_topics: SessionTopics
    ) -> None:
        self._settings = settings
        self._admin = admin
        self._session_topics = session_topics
        self._empty_since: dict[str, float] = {}
        self.failed_batches = 0  # in the last sweep

    async def run_forever(self) -> None:
        while True:
            await asyncio.sleep(self._settings.session_janitor_interval_s)
            try:
                await self.sweep()
            except Exception:
                log.exception("session janitor sweep failed; will try again")

    async def sweep(self) -> list[str]:
        """Delete idle session topics now; returns their names."""
        prefix = self._settings.session_topic_prefix
        topics = sorted(t for t in await self._admin.list_topics() if t.startswith(prefix))
        deleted: list[str] = []
        self.failed_batches = 0
        empty_since: dict[str, float] = {}
        consumer: AIOKafkaConsumer | None = None
        try:
            for batch in _batches(topics, self._settings.session_janitor_batch_size):
                if consumer is None:
                    consumer = await self._start_consumer()
                try:
                    offsets = await self._read_offsets(consumer, batch)
                except Exception as exc:  # this batch only: the others are read all the same
                    self.failed_batches += 1
                    log.warning(
                        "session janitor skips a batch topics=%d first=%s error=%r",
                        len(batch), batch[0], exc,
                    )
                    # Grace already running stays running: nothing is known about them now.
                    empty_since.update(
                        (t, self._empty_since[t]) for t in batch if t in self._empty_since
                    )
                    # The failed requests may still be pending in it: the next batch gets a new one.
                    await self._stop(consumer)
                    consumer = None
                    continue
                gone = await self._delete(self._idle(batch, offsets, empty_since))
                for topic in gone:
                    empty_since.pop(topic, None)
                deleted += gone
        finally:
            if consumer is not None:
                await self._stop(consumer)
        # Only topics empty now keep their grace start: no entry outlives its topic's emptiness
        # (a topic deleted by another worker's janitor, or written to since, is dropped).
        self._empty_since = empty_since
        if deleted or self.failed_batches:
            log.info(
                "session janitor swept topics=%d deleted=%d failed_batches=%d",
                len(topics), len(deleted), self.failed_batches,
            )
        return deleted

    async def _start_consumer(self) -> AIOKafkaConsumer:
        consumer = new_consumer(self._settings.kafka_connection, client_id=CLIENT_ID)
        try:
            # Every Kafka call of a sweep is bounded: a wedged one must not stall the janitor.
            async with asyncio.timeout(self._settings.session_janitor_batch_timeout_s):
                await consumer.start()
        except BaseException:
            await stop_consumer(consumer, timeout_s=self._settings.session_janitor_batch_timeout_s)
            raise
        return consumer

    async def _stop(self, consumer: AIOKafkaConsumer) -> None:
        await stop_consumer(consumer, timeout_s=self._settings.session_janitor_batch_timeout_s)

    async def _read_offsets(self, consumer: AIOKafkaConsumer, batch: list[str]) -> BatchOffsets:
        cutoff_ms = int((time.time() - self._settings.session_idle_ttl_s) * 1000)
        partitions = [TopicPartition(t, 0) for t in batch]
        # Assigned, their metadata comes with the assignment (offsets of unassigned partitions
        # can wait on stale metadata for the whole request timeout); paused, nothing is read.
        consumer.assign(partitions)
        consumer.pause(*partitions)
        try:
            async with asyncio.timeout(self._settings.session_janitor_batch_timeout_s):
                ends = await consumer.end_offsets(partitions)
                recent = await consumer.offsets_for_times({tp: cutoff_ms for tp in partitions})
        finally:
            consumer.unsubscribe()
        return BatchOffsets(
            {tp.topic: end for tp, end in ends.items()},
            {tp.topic for tp, found in recent.items() if found is not None},
        )

    def _idle(
        self, batch: list[str], offsets: BatchOffsets, empty_since: dict[str, float]
    ) -> list[str]:
        """The batch's idle topics; records in ``empty_since`` when each empty one was first
        seen empty."""
        ttl_s = self._settings.session_idle_ttl_s
        now = time.time()
        idle = []
        for topic in batch:
            if offsets.ends[topic] == 0:
                first_seen = empty_since[topic] = self._empty_since.get(topic, now)
                if now - first_seen >= ttl_s:
                    idle.append(topic)
            elif topic not in offsets.recent:
                idle.append(topic)
        return idle

    async def _delete(self, idle: list[str]) -> list[str]:
        if not idle:
            return []
        try:
            async with asyncio.timeout(self._settings.session_janitor_batch_timeout_s):
                await self._admin.delete_topics(idle)
        except Exception as exc:  # left for the next sweep; the other batches go on
            log.warning("session janitor could not delete topics=%d error=%r", len(idle), exc)
            return []
        for topic in idle:
            self._session_topics.forget(topic)
        log.info("deleted idle session topics count=%d first=%s", len(idle), idle[0])
        return idle


def _batches(topics: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(topics), size):
        yield topics[start:start + size]
