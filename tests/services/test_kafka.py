"""The Kafka broker the tests get is real: topics, idempotent acks=all produce, consume back."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError

RECORDS = 50
READ_TIMEOUT_S = 20.0


@pytest.fixture
async def admin(kafka_bootstrap: str) -> AsyncIterator[AIOKafkaAdminClient]:
    client = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap, client_id="test-admin")
    await client.start()
    try:
        yield client
    finally:
        await client.close()


async def read_all(bootstrap: str, topic: str, count: int) -> list[tuple[bytes, bytes, int]]:
    """(key, value, offset) of the first ``count`` records of partition 0, read from the start."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=50,
    )
    await consumer.start()
    try:
        partition = TopicPartition(topic, 0)
        consumer.assign([partition])
        await consumer.seek_to_beginning(partition)
        seen: list[tuple[bytes, bytes, int]] = []
        async with asyncio.timeout(READ_TIMEOUT_S):
            while len(seen) < count:
                batches = await consumer.getmany(partition, timeout_ms=500)
                for record in batches.get(partition, []):
                    seen.append((record.key, record.value, record.offset))
        return seen
    finally:
        await consumer.stop()


async def test_produce_idempotent_then_consume_in_order(
    kafka_bootstrap: str, admin: AIOKafkaAdminClient, unique_name: Callable[..., str]
) -> None:
    topic = unique_name("roundtrip")
    await admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    try:
        assert topic in await admin.list_topics()
        producer = AIOKafkaProducer(
            bootstrap_servers=kafka_bootstrap, acks="all", enable_idempotence=True, linger_ms=1
        )
        await producer.start()
        try:
            futures = [
                await producer.send(topic, key=b"k", value=f"record-{i}".encode())
                for i in range(RECORDS)
            ]
            metadata = await asyncio.gather(*futures)
        finally:
            await producer.stop()
        assert [m.offset for m in metadata] == list(range(RECORDS))

        records = await read_all(kafka_bootstrap, topic, RECORDS)
        assert [value for _, value, _ in records] == [
            f"record-{i}".encode() for i in range(RECORDS)
        ]
        assert [offset for _, _, offset in records] == list(range(RECORDS))
        assert {key for key, _, _ in records} == {b"k"}
    finally:
        await admin.delete_topics([topic])


async def test_topics_are_not_auto_created(
    kafka_bootstrap: str, admin: AIOKafkaAdminClient, unique_name: Callable[..., str]
) -> None:
    """The broker refuses to invent topics: every topic must be created on purpose."""
    missing = unique_name("never-created")
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, request_timeout_ms=2_000)
    await producer.start()
    try:
        with pytest.raises(KafkaError):
            await producer.send_and_wait(missing, b"nobody home")
    finally:
        await producer.stop()
    assert missing not in await admin.list_topics()
