"""Kafka clients around a dead broker: nothing stops working because one broker of a cluster died.

aiokafka's consumer, stopped while a fetch waits out its retry backoff after its broker died,
raised that fetch task's CancelledError from ``stop()``; the edge's session hub closed its
consumer that way when it replaced it, and the CancelledError ended the hub's loop: every stream
of the edge went silent (found by ``tokenwire faults``, leader-kill).
"""

from __future__ import annotations

import asyncio
import uuid

from aiokafka import TopicPartition
from aiokafka.admin import NewTopic

from api.session_hub import _close_consumer
from tests.fixtures.waiting import eventually_true
from tokenwire.kafka_clients import new_admin, new_consumer
from tokenwire.services import kafka
from tokenwire.settings import Settings
from tokenwire.topic_metadata import TopicMetadata

# Long enough that the consumer is certainly stopped while its fetch waits out the backoff.
FETCH_RETRY_BACKOFF_MS = 5_000


async def _topic_led_by_one_node(cluster: Settings) -> tuple[str, int]:
    topic = f"dead-broker-{uuid.uuid4().hex[:8]}"
    admin = new_admin(cluster.kafka_connection, client_id="test-dead-broker")
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 1, 3)])

        leaders: list[int] = []

        async def led() -> bool:
            # Asked of any broker: one that has not seen the topic yet lists no partitions.
            (described,) = await admin.describe_topics([topic])
            partitions = described["partitions"]
            if partitions and partitions[0]["leader"] >= 0:
                leaders.append(int(partitions[0]["leader"]))
            return bool(leaders)

        await eventually_true(led)
        return topic, leaders[0]
    finally:
        await admin.close()


async def test_the_hub_closes_a_consumer_whose_broker_died_without_being_cancelled(
    kafka_cluster3: Settings,
) -> None:
    topic, leader = await _topic_led_by_one_node(kafka_cluster3)
    tp = TopicPartition(topic, 0)
    consumer = new_consumer(
        kafka_cluster3.kafka_connection, client_id="test-dead-broker",
        retry_backoff_ms=FETCH_RETRY_BACKOFF_MS,
    )  # fmt: skip
    await consumer.start()
    consumer.assign([tp])
    consumer.seek(tp, 0)
    await consumer.getmany(timeout_ms=200)
    await asyncio.to_thread(kafka.kill_node, kafka_cluster3, leader)
    try:
        await consumer.getmany(timeout_ms=500)  # the fetch to the dead leader fails: backoff

        await _close_consumer(consumer)  # raised CancelledError here

        assert not asyncio.current_task().cancelling()  # type: ignore[union-attr]
        assert not any(conn.connected() for conn in consumer._client._conns.values())
    finally:
        await asyncio.to_thread(kafka.start_node, kafka_cluster3, leader)


async def test_topic_metadata_answers_while_a_broker_is_down(kafka_cluster3: Settings) -> None:
    topic, leader = await _topic_led_by_one_node(kafka_cluster3)
    metadata = TopicMetadata(kafka_cluster3.kafka_connection, client_id="test-dead-broker")
    await metadata.start()

    async def known_everywhere() -> bool:
        # A new topic reaches each broker's metadata a moment apart; asked of random brokers.
        for _ in range(9):
            if await metadata.existing([topic], timeout_s=10) != {topic}:
                return False
        return True

    await eventually_true(known_everywhere)
    await asyncio.to_thread(kafka.kill_node, kafka_cluster3, leader)
    try:
        # Asked many times: a random broker was the dead one a third of the time.
        for _ in range(12):
            assert await metadata.existing([topic], timeout_s=10) == {topic}
        assert await metadata.end_offset(topic, timeout_s=30) == 0
    finally:
        await metadata.close()
        await asyncio.to_thread(kafka.start_node, kafka_cluster3, leader)
