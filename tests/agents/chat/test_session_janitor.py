"""The janitor deletes session topics idle past the TTL and nothing else, in bounded batches."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from agents.chat.session_janitor import SessionJanitor
from tests.fixtures.waiting import eventually_true
from tokenwire.settings import Settings
from tokenwire.topics import SessionTopics

TTL_S = 60.0
MANY_TOPICS = 300
BATCH_SIZE = 50
# Far above what one batch of 50 needs here, far below the test's patience.
BATCH_TIMEOUT_S = 5.0


async def test_a_sweep_deletes_only_topics_idle_past_the_ttl(
    kafka_bootstrap: str,
    kafka_admin: AIOKafkaAdminClient,
    kafka_producer: AIOKafkaProducer,
    unique_name: Callable[..., str],
) -> None:
    prefix = f"{unique_name('janitor')}."
    settings = Settings(
        kafka_bootstrap=kafka_bootstrap, session_topic_prefix=prefix, session_idle_ttl_s=TTL_S
    )
    idle, active, empty = (f"{prefix}{name}" for name in ("idle", "active", "empty"))
    await kafka_admin.create_topics([NewTopic(t, 1, 1) for t in (idle, active, empty)])
    hour_ago_ms = int((time.time() - 3600) * 1000)
    await (await kafka_producer.send(idle, b"{}", timestamp_ms=hour_ago_ms))
    await (await kafka_producer.send(active, b"{}"))
    janitor = SessionJanitor(settings, kafka_admin, SessionTopics(settings, kafka_admin))

    assert await janitor.sweep() == [idle]

    remaining = set(await kafka_admin.list_topics())
    # The empty topic's grace starts when the janitor first saw it empty.
    assert {active, empty} <= remaining
    await kafka_admin.delete_topics([active, empty])


class ListsAGoneTopic:
    """The real admin client, whose listing also names a topic deleted since it was taken (by
    another worker's janitor, say). Only the listing carries the fault: every other call,
    deletions included, is the real one, and the consumer asks the real broker about it."""

    def __init__(self, admin: AIOKafkaAdminClient, gone: str) -> None:
        self._admin = admin
        self._gone = gone

    async def list_topics(self) -> list[str]:
        return [*await self._admin.list_topics(), self._gone]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._admin, name)


def batches_of(topics: list[str], size: int) -> list[list[str]]:
    ordered = sorted(topics)
    return [ordered[i:i + size] for i in range(0, len(ordered), size)]


async def test_a_failing_batch_skips_only_its_own_topics(
    kafka_bootstrap: str,
    kafka_admin: AIOKafkaAdminClient,
    kafka_producer: AIOKafkaProducer,
    unique_name: Callable[..., str],
) -> None:
    """Regression: the janitor asked offsets of every session topic in one call under one 15 s
    deadline, so a single topic that could not answer (here one deleted since the listing; at
    scale, just the count) made every sweep give up and delete nothing."""
    prefix = f"{unique_name('janitor')}."
    settings = Settings(
        kafka_bootstrap=kafka_bootstrap, session_topic_prefix=prefix, session_idle_ttl_s=TTL_S,
        session_janitor_batch_size=BATCH_SIZE, session_janitor_batch_timeout_s=BATCH_TIMEOUT_S,
    )
    topics = [f"{prefix}t{i:03d}" for i in range(MANY_TOPICS)]
    idle = set(topics[::2])
    # Sorts into the middle of the listing: its batch is neither the first nor the last.
    gone = f"{prefix}t{MANY_TOPICS // 2:03d}x"
    await kafka_admin.create_topics([NewTopic(t, 1, 1) for t in [*topics, gone]])
    await kafka_admin.delete_topics([gone])

    async def all_there() -> bool:
        listed = set(await kafka_admin.list_topics())
        return set(topics) <= listed and gone not in listed

    await eventually_true(all_there)
    hour_ago_ms = int((time.time() - 3600) * 1000)
    sent = [
        await kafka_producer.send(t, b"{}", timestamp_ms=hour_ago_ms if t in idle else None)
        for t in topics
    ]
    await asyncio.gather(*sent)
    session_topics = SessionTopics(settings, kafka_admin)
    janitor = SessionJanitor(settings, ListsAGoneTopic(kafka_admin, gone), session_topics)  # type: ignore[arg-type]
    try:
        (skipped,) = [b for b in batches_of([*topics, gone], BATCH_SIZE) if gone in b]
        expected = sorted(idle - set(skipped))

        assert sorted(await janitor.sweep()) == expected
        assert janitor.failed_batches == 1

        kept = (set(topics) - idle) | (idle & set(skipped))

        async def only_kept_listed() -> bool:
            # A deletion reaches the broker's metadata a moment after DeleteTopics answers.
            return {t for t in await kafka_admin.list_topics() if t.startswith(prefix)} == kept

        await eventually_true(only_kept_listed)
        # Skipped until the next sweep only.
        healthy = SessionJanitor(settings, kafka_admin, session_topics)
        assert sorted(await healthy.sweep()) == sorted(idle & set(skipped))
        assert healthy.failed_batches == 0
    finally:
        left = [t for t in await kafka_admin.list_topics() if t.startswith(prefix)]
        if left:
            await kafka_admin.delete_topics(left)
