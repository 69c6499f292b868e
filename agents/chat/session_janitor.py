"""Deletes session topics idle for longer than the TTL, so partitions track live sessions.

A topic is idle when it holds no record newer than the TTL (asked of the broker by timestamp).
An empty topic (created by the ingress before its first event) gets the same grace from when the
janitor first saw it empty. The durable record is ``chat.requests`` + ``chat.events``.
"""

from __future__ import annotations

import asyncio
import logging
import time

from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from tokenwire.kafka_clients import new_consumer
from tokenwire.settings import Settings
from tokenwire.topics import SessionTopics

log = logging.getLogger(__name__)

# A sweep that cannot read offsets in this long gives up; the next one tries again.
OFFSETS_TIMEOUT_S = 15.0


class SessionJanitor:
    def __init__(
        self, settings: Settings, admin: AIOKafkaAdminClient, session_topics: SessionTopics
    ) -> None:
        self._settings = settings
        self._admin = admin
        self._session_topics = session_topics
        self._empty_since: dict[str, float] = {}

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
        topics = [t for t in await self._admin.list_topics() if t.startswith(prefix)]
        idle = await self._idle(topics)
        if idle:
            await self._admin.delete_topics(idle)
            for topic in idle:
                self._session_topics.forget(topic)
                self._empty_since.pop(topic, None)
            log.info("deleted idle session topics count=%s", len(idle))
        return idle

    async def _idle(self, topics: list[str]) -> list[str]:
        if not topics:
            self._empty_since.clear()
            return []
        ttl_s = self._settings.session_idle_ttl_s
        now = time.time()
        cutoff_ms = int((now - ttl_s) * 1000)
        partitions = [TopicPartition(t, 0) for t in topics]
        consumer = new_consumer(self._settings.kafka_connection, client_id="tokenwire-janitor")
        await consumer.start()
        try:
            # Assigned, their metadata comes with the assignment (offsets of unassigned partitions
            # can wait on stale metadata for the whole request timeout); paused, nothing is read.
            consumer.assign(partitions)
            consumer.pause(*partitions)
            async with asyncio.timeout(OFFSETS_TIMEOUT_S):
                ends = await consumer.end_offsets(partitions)
                recent = await consumer.offsets_for_times({tp: cutoff_ms for tp in partitions})
        finally:
            await consumer.stop()
        idle = []
        empty_since: dict[str, float] = {}
        for tp in partitions:
            if ends[tp] == 0:
                first_seen = empty_since[tp.topic] = self._empty_since.get(tp.topic, now)
                if now - first_seen >= ttl_s:
                    idle.append(tp.topic)
            elif recent.get(tp) is None:
                idle.append(tp.topic)
        # Only topics empty now keep their grace start: no entry outlives its topic's emptiness
        # (a topic deleted by another worker's janitor, or written to since, is dropped).
        self._empty_since = empty_since
        return idle
