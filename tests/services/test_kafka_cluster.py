"""The local 3-node KRaft cluster: every node serves, and a replicated topic outlives its leader."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, NodeNotReadyError, RequestTimedOutError

from tests.fixtures.waiting import eventually_true
from tokenwire.kafka_clients import new_admin, new_consumer, new_producer
from tokenwire.kafka_settings import KafkaConnection
from tokenwire.services import kafka
from tokenwire.settings import Settings

RECOVERY_TIMEOUT_S = 60.0


@pytest.fixture
async def admin(kafka_cluster3: Settings) -> AsyncIterator[AIOKafkaAdminClient]:
    client = new_admin(_connection(kafka_cluster3), client_id="test-cluster-admin")
    await client.start()
    try:
        yield client
    finally:
        await client.close()


def _connection(settings: Settings) -> KafkaConnection:
    return KafkaConnection.plaintext(settings.kafka_bootstrap)


async def _partition(admin: AIOKafkaAdminClient, topic: str) -> dict[str, Any]:
    """Partition 0 as some live node describes it.

    The admin client asks one node it picks; that may be the node just stopped (it does not try
    another) or one that has not learnt of a new topic yet: ask again.
    """
    async with asyncio.timeout(RECOVERY_TIMEOUT_S):
        while True:
            try:
                (described,) = await admin.describe_topics([topic])
            except (NodeNotReadyError, KafkaConnectionError, RequestTimedOutError):
                described = {"partitions": []}
            if described["partitions"]:
                return dict(described["partitions"][0])
            await asyncio.sleep(0.1)


async def _replicated_topic(admin: AIOKafkaAdminClient, topic: str) -> None:
    await admin.create_topics([NewTopic(topic, 1, 3, topic_configs={"min.insync.replicas": "2"})])

    async def fully_replicated() -> bool:
        partition = await _partition(admin, topic)
        return partition["leader"] >= 0 and len(partition["isr"]) == 3

    await eventually_true(fully_replicated, RECOVERY_TIMEOUT_S)


async def _values(settings: Settings, topic: str, count: int) -> list[bytes]:
    consumer = new_consumer(_connection(settings), client_id="test-cluster-reader")
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        values: list[bytes] = []
        async with asyncio.timeout(RECOVERY_TIMEOUT_S):
            while len(values) < count:
                batch = await consumer.getmany(tp, timeout_ms=500)
                values += [record.value for record in batch.get(tp, [])]
        return values
    finally:
        await consumer.stop()


async def _back_in_sync(admin: AIOKafkaAdminClient, topic: str, node_id: int) -> None:
    async def in_isr() -> bool:
        return node_id in (await _partition(admin, topic))["isr"]

    await eventually_true(in_isr, RECOVERY_TIMEOUT_S)


async def test_three_nodes_serve_as_one_cluster(
    kafka_cluster3: Settings, admin: AIOKafkaAdminClient
) -> None:
    assert kafka.node_ids(kafka_cluster3) == [1, 2, 3]
    assert all(kafka.node_pid(kafka_cluster3, node) for node in (1, 2, 3))
    cluster = await admin.describe_cluster()
    brokers = {(b["node_id"], f"{b['host']}:{b['port']}") for b in cluster["brokers"]}
    assert brokers == {(n, kafka.node_address(kafka_cluster3, n)) for n in (1, 2, 3)}


async def test_an_rf3_topic_survives_kill_9_of_its_leader(
    kafka_cluster3: Settings, admin: AIOKafkaAdminClient, unique_name: Callable[..., str]
) -> None:
    topic = unique_name("rf3")
    await _replicated_topic(admin, topic)
    leader = (await _partition(admin, topic))["leader"]
    producer = new_producer(_connection(kafka_cluster3), client_id="test-cluster-producer")
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"before")
        await asyncio.to_thread(kafka.kill_node, kafka_cluster3, leader)
        try:
            assert kafka.node_pid(kafka_cluster3, leader) is None
            # acks=all with min.insync 2: the two survivors must both have it.
            await producer.send_and_wait(topic, b"after")
            partition = await _partition(admin, topic)
            assert partition["leader"] not in (leader, -1)
            assert await _values(kafka_cluster3, topic, 2) == [b"before", b"after"]
        finally:
            await asyncio.to_thread(kafka.start_node, kafka_cluster3, leader)
        assert kafka.node_pid(kafka_cluster3, leader) is not None
        await _back_in_sync(admin, topic, leader)
        await producer.send_and_wait(topic, b"back")
    finally:
        await producer.stop()
        await admin.delete_topics([topic])


async def test_a_graceful_stop_hands_leadership_over_and_start_brings_the_node_back(
    kafka_cluster3: Settings, admin: AIOKafkaAdminClient, unique_name: Callable[..., str]
) -> None:
    topic = unique_name("rf3-stop")
    await _replicated_topic(admin, topic)
    leader = (await _partition(admin, topic))["leader"]
    await asyncio.to_thread(kafka.stop_node, kafka_cluster3, leader)
    try:
        assert kafka.node_pid(kafka_cluster3, leader) is None
        assert (await _partition(admin, topic))["leader"] not in (leader, -1)
        producer = new_producer(_connection(kafka_cluster3), client_id="test-cluster-producer")
        await producer.start()
        try:
            await producer.send_and_wait(topic, b"while one node is down")
        finally:
            await producer.stop()
    finally:
        await asyncio.to_thread(kafka.start_node, kafka_cluster3, leader)
    await _back_in_sync(admin, topic, leader)
    await admin.delete_topics([topic])
