"""Topic existence (and each topic's id) is asked of the broker for the named topics only."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from tests.fixtures.waiting import eventually_true
from tokenwire.kafka_settings import KafkaConnection
from tokenwire.metadata_protocol import (
    NO_TOPIC_ID,
    MetadataRequest_v10,
    MetadataWithIdsRequest,
    MetadataWithIdsStruct,
)
from tokenwire.topic_metadata import TopicMetadata

CLIENT_ID = "test-topic-metadata"


async def test_existing_answers_which_of_the_named_topics_exist(
    kafka_bootstrap: str, kafka_admin: AIOKafkaAdminClient, unique_name: Callable[..., str]
) -> None:
    present, absent = unique_name("meta-present"), unique_name("meta-absent")
    await kafka_admin.create_topics([NewTopic(present, 1, 1)])
    metadata = TopicMetadata(KafkaConnection.plaintext(kafka_bootstrap), client_id=CLIENT_ID)
    await metadata.start()
    try:
        # A topic just created is known to every broker a moment later.
        async def only_present() -> bool:
            return await metadata.existing([present, absent], timeout_s=10) == {present}

        await eventually_true(only_present)
        assert await metadata.existing([], timeout_s=10) == set()
        # Asking about a missing topic does not create it.
        assert absent not in await kafka_admin.list_topics()
    finally:
        await metadata.close()
        await kafka_admin.delete_topics([present])


async def test_existing_refuses_before_start(kafka_bootstrap: str) -> None:
    metadata = TopicMetadata(KafkaConnection.plaintext(kafka_bootstrap), client_id=CLIENT_ID)
    with pytest.raises(RuntimeError, match="not started"):
        await metadata.existing(["t"], timeout_s=1)


async def test_end_offset_is_where_the_next_record_goes_and_none_for_no_topic(
    kafka_bootstrap: str, kafka_admin: AIOKafkaAdminClient, kafka_producer: AIOKafkaProducer,
    unique_name: Callable[..., str],
) -> None:
    present, absent = unique_name("meta-end"), unique_name("meta-end-absent")
    await kafka_admin.create_topics([NewTopic(present, 1, 1)])
    metadata = TopicMetadata(KafkaConnection.plaintext(kafka_bootstrap), client_id=CLIENT_ID)
    await metadata.start()
    try:
        # A topic just created is known to every broker a moment later.
        async def visible() -> bool:
            return present in await metadata.existing([present], timeout_s=10)

        await eventually_true(visible)
        assert await metadata.end_offset(present, timeout_s=10) == 0
        for _ in range(3):
            await kafka_producer.send_and_wait(present, b"x")
        assert await metadata.end_offset(present, timeout_s=10) == 3
        assert await metadata.end_offset(present, partition=1, timeout_s=10) is None
        assert await metadata.end_offset(absent, timeout_s=10) is None
        assert absent not in await kafka_admin.list_topics()
    finally:
        await metadata.close()
        await kafka_admin.delete_topics([present])


class MetadataV10Only(MetadataWithIdsRequest):
    """The oldest version with topic ids, as a Kafka 2.8-3.0 broker would be asked."""

    def prepare(self, versions: dict[int, tuple[int, int]]) -> MetadataWithIdsStruct:
        return self.build(MetadataRequest_v10)


async def test_a_topic_created_again_under_its_name_has_a_new_id(
    kafka_bootstrap: str, kafka_admin: AIOKafkaAdminClient, unique_name: Callable[..., str]
) -> None:
    topic = unique_name("meta-ids")
    await kafka_admin.create_topics([NewTopic(topic, 1, 1)])
    metadata = TopicMetadata(KafkaConnection.plaintext(kafka_bootstrap), client_id=CLIENT_ID)
    await metadata.start()
    try:
        async def topic_id() -> uuid.UUID | None:
            return (await metadata.topic_ids([topic], timeout_s=10)).get(topic)

        async def present() -> bool:
            return await topic_id() is not None

        await eventually_true(present)
        first = await topic_id()
        assert first is not None and first != NO_TOPIC_ID
        found = await metadata.end(topic, timeout_s=10)
        assert found is not None and (found.topic_id, found.end) == (first, 0)
        # Metadata v10 (what a broker without v12 is asked) names the same id.
        client = metadata._started()
        node = client.get_random_node()
        answer = (await client.send(node, MetadataV10Only([topic]))).to_object()
        assert answer["topics"][0]["topic_id"] == first
        await kafka_admin.delete_topics([topic])

        async def gone() -> bool:
            return await topic_id() is None

        await eventually_true(gone)
        await kafka_admin.create_topics([NewTopic(topic, 1, 1)])

        async def recreated() -> bool:
            return await topic_id() not in (None, first)

        await eventually_true(recreated)
    finally:
        await metadata.close()
        await kafka_admin.delete_topics([topic])
