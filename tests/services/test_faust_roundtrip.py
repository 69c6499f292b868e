"""A Faust agent runs in-process against the real broker: it consumes one topic, forwards to
another, and what it forwarded is read back with aiokafka."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import faust
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

RECORDS = 20
STARTUP_TIMEOUT_S = 30.0
FORWARD_TIMEOUT_S = 25.0


async def _create_topics(bootstrap: str, *names: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(name, num_partitions=1, replication_factor=1) for name in names]
        )
    finally:
        await admin.close()


async def _delete_topics(bootstrap: str, *names: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.delete_topics(list(names))
    finally:
        await admin.close()


def _forwarding_app(
    bootstrap: str, app_id: str, source: str, sink: str, datadir: Path
) -> faust.App:
    app = faust.App(
        app_id,
        broker=f"kafka://{bootstrap}",
        store="memory://",
        datadir=str(datadir),
        autodiscover=False,
        web_enabled=False,
        topic_disable_leader=True,  # no <app>-__assignor-__leader topic (auto-create is off)
        topic_allow_declare=False,  # both topics are created by the test
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        broker_commit_interval=0.5,
    )
    source_topic = app.topic(source, key_type=bytes, value_type=bytes, value_serializer="raw")
    sink_topic = app.topic(sink, key_type=bytes, value_type=bytes, value_serializer="raw")

    @app.agent(source_topic)
    async def forward(stream: faust.StreamT[bytes]) -> AsyncIterator[bytes]:
        async for key, value in stream.items():
            await sink_topic.send(key=key, value=b"fwd:" + value)
            yield value

    return app


async def _read(bootstrap: str, topic: str, count: int) -> list[tuple[bytes, bytes]]:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        partition = TopicPartition(topic, 0)
        consumer.assign([partition])
        await consumer.seek_to_beginning(partition)
        seen: list[tuple[bytes, bytes]] = []
        async with asyncio.timeout(FORWARD_TIMEOUT_S):
            while len(seen) < count:
                batches = await consumer.getmany(partition, timeout_ms=500)
                seen.extend((r.key, r.value) for r in batches.get(partition, []))
        return seen
    finally:
        await consumer.stop()


async def test_faust_agent_forwards_records(
    kafka_bootstrap: str, unique_name: Callable[..., str], tmp_path: Path
) -> None:
    source, sink = unique_name("faust-in"), unique_name("faust-out")
    await _create_topics(kafka_bootstrap, source, sink)
    app = _forwarding_app(kafka_bootstrap, unique_name("faust-app"), source, sink, tmp_path)
    try:
        producer = AIOKafkaProducer(
            bootstrap_servers=kafka_bootstrap, acks="all", enable_idempotence=True
        )
        await producer.start()
        try:
            for i in range(RECORDS):
                await producer.send(source, key=f"k{i % 3}".encode(), value=f"v{i}".encode())
            await producer.flush()
        finally:
            await producer.stop()

        async with asyncio.timeout(STARTUP_TIMEOUT_S):
            await app.start()
        forwarded = await _read(kafka_bootstrap, sink, RECORDS)
    finally:
        await app.stop()
        await _delete_topics(kafka_bootstrap, source, sink)

    assert forwarded == [(f"k{i % 3}".encode(), f"fwd:v{i}".encode()) for i in range(RECORDS)]
