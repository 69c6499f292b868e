"""Followers long-poll, and what aiokafka must keep doing for ``wake_fetch`` and friends to work.

``tokenwire.kafka_clients`` reaches into aiokafka (the client's send and connections, the
fetcher's requests in flight) so that a long poll never delays a new partition or another
request. These tests fail if aiokafka changes what those lines rely on: the long poll is made
30 s here, so anything that waits behind it misses the 10 s deadlines.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from tests.fixtures.waiting import eventually
from tokenwire.kafka_clients import (
    learn_leaders,
    new_follower,
    stop_consumer,
    wake_fetch,
)
from tokenwire.kafka_settings import KafkaConnection

LONG_POLL_MS = 30_000
DEADLINE_S = 10.0


@pytest.fixture
async def topics(
    kafka_admin: AIOKafkaAdminClient, unique_name: Callable[..., str]
) -> AsyncIterator[tuple[str, str]]:
    quiet, busy = unique_name("quiet"), unique_name("busy")
    await kafka_admin.create_topics([NewTopic(quiet, 1, 1), NewTopic(busy, 1, 1)])
    yield quiet, busy
    await kafka_admin.delete_topics([quiet, busy])


@pytest.fixture
async def follower(kafka_bootstrap: str) -> AsyncIterator[AIOKafkaConsumer]:
    consumer = new_follower(
        KafkaConnection.plaintext(kafka_bootstrap), client_id="test-long-poll",
        fetch_max_wait_ms=LONG_POLL_MS,
    )  # fmt: skip
    await consumer.start()
    yield consumer
    await stop_consumer(consumer)


async def _in_long_poll(consumer: AIOKafkaConsumer, tp: TopicPartition) -> None:
    consumer.assign([tp])
    consumer.seek(tp, 0)
    await eventually(lambda: bool(consumer._fetcher._in_flight))


async def test_a_partition_assigned_during_a_long_poll_is_fetched_at_once(
    follower: AIOKafkaConsumer, topics: tuple[str, str], kafka_producer: AIOKafkaProducer
) -> None:
    quiet, busy = (TopicPartition(topic, 0) for topic in topics)
    await _in_long_poll(follower, quiet)
    await (await kafka_producer.send(busy.topic, b"first"))
    await learn_leaders(follower, [quiet, busy], timeout_s=DEADLINE_S)

    follower.assign([quiet, busy])
    follower.seek(quiet, 0)
    follower.seek(busy, 0)
    taken = wake_fetch(follower)
    batch = await follower.getmany(busy, timeout_ms=int(DEADLINE_S * 1000))

    assert [record.value for record in batch[busy]] == [b"first"]
    assert taken, "no fetch connection was in flight"
    await eventually(lambda: not any(conn.connected() for conn in taken))


async def test_other_requests_do_not_wait_behind_a_long_poll(
    follower: AIOKafkaConsumer, topics: tuple[str, str]
) -> None:
    quiet = TopicPartition(topics[0], 0)
    await _in_long_poll(follower, quiet)

    async with asyncio.timeout(DEADLINE_S):
        ends = await follower.end_offsets([quiet])

    assert ends == {quiet: 0}
