"""Partitions Faust pauses are paused in the Kafka client too (agents/chat/faust_transport.py).

Faust pauses a table's changelog partitions once recovery is done. With Faust's own transport
aiokafka kept fetching them into a buffer nothing drained, which held back every other fetch.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import faust
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from agents.chat import faust_transport
from tests.fixtures.waiting import eventually

STARTUP_TIMEOUT_S = 30.0


async def test_changelog_partitions_are_paused_in_the_kafka_client_after_recovery(
    kafka_bootstrap: str,
    kafka_admin: AIOKafkaAdminClient,
    unique_name: Callable[..., str],
    tmp_path: Path,
) -> None:
    app_id, source = unique_name("faust-pause"), unique_name("faust-pause-in")
    changelog = f"{app_id}-counts-changelog"
    await kafka_admin.create_topics([NewTopic(source, 1, 1), NewTopic(changelog, 1, 1)])
    app = faust.App(
        app_id,
        broker=f"{faust_transport.SCHEME}://{kafka_bootstrap}",
        store="memory://",
        datadir=str(tmp_path),
        autodiscover=False,
        web_enabled=False,
        topic_disable_leader=True,
        topic_allow_declare=False,
        consumer_auto_offset_reset="earliest",
    )
    counts = app.Table("counts", default=int, partitions=1)
    source_topic = app.topic(source, value_type=bytes, value_serializer="raw")

    @app.agent(source_topic)
    async def count(stream: faust.StreamT[bytes]) -> None:
        async for value in stream:
            counts[value] += 1

    try:
        async with asyncio.timeout(STARTUP_TIMEOUT_S):
            await app.start()
            await app.tables.recovery.completed.wait()
        client = app.consumer._thread._consumer  # type: ignore[attr-defined]
        await eventually(lambda: TopicPartition(changelog, 0) in client.paused())
        # What streams read stays live.
        assert TopicPartition(source, 0) not in client.paused()
    finally:
        await app.stop()
        await kafka_admin.delete_topics([source, changelog])
