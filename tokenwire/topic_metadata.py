"""Which of some topics exist: one metadata request naming them, never the whole cluster.

Every session is a topic, so a cluster's topic count grows with its sessions. Asking for all of
them (``AIOKafkaConsumer.topics()``, ``AIOKafkaAdminClient.list_topics()``) costs the broker and
the client time proportional to that count on every call; naming the topics asked about keeps
each answer as small as the question. The request also says ``allow_auto_topic_creation=False``:
on a broker that auto-creates topics, a metadata request for a deleted session topic would
otherwise bring it back.

``end_offset`` asks one partition's leader for its end offset (ListOffsets, latest): the edge
checks a client's resume position against it before following a session from there.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from aiokafka.client import AIOKafkaClient
from aiokafka.errors import UnknownTopicOrPartitionError, for_code
from aiokafka.protocol.metadata import MetadataRequest
from aiokafka.protocol.offset import OffsetRequest

from tokenwire.kafka_clients import new_client
from tokenwire.kafka_settings import KafkaConnection

NO_ERROR = 0
LATEST = -1  # ListOffsets "timestamp" meaning the end of the partition
READ_UNCOMMITTED = 0
# A partition without a leader (just created, leader moving) is asked again after this.
LEADER_RETRY_S = 0.1


class TopicMetadata:
    def __init__(self, kafka: KafkaConnection, *, client_id: str) -> None:
        self._kafka = kafka
        self._client_id = client_id
        self._client: AIOKafkaClient | None = None

    async def start(self) -> None:
        # Made here, not in __init__: aiokafka binds its client to the running loop.
        self._client = new_client(self._kafka, client_id=self._client_id)
        await self._client.bootstrap()

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    def _started(self) -> AIOKafkaClient:
        if self._client is None:
            raise RuntimeError("topic metadata client is not started")
        return self._client

    async def _metadata(self, names: list[str]) -> dict[str, object]:
        client = self._started()
        node = client.get_random_node()
        if node is None:
            raise ConnectionError("no Kafka broker known to ask for topic metadata")
        request = MetadataRequest(names, allow_auto_topic_creation=False)
        response: dict[str, object] = (await client.send(node, request)).to_object()
        return response

    async def existing(self, topics: Iterable[str], *, timeout_s: float) -> set[str]:
        """The subset of ``topics`` that exists now; raises if the broker does not answer."""
        self._started()
        names = sorted(set(topics))
        if not names:
            return set()
        response = await asyncio.wait_for(self._metadata(names), timeout_s)
        return {
            topic["topic"]
            for topic in response["topics"]  # type: ignore[attr-defined]
            if topic["error_code"] == NO_ERROR
        }

    async def end_offset(self, topic: str, *, partition: int = 0, timeout_s: float) -> int | None:
        """The offset the next record of ``topic``/``partition`` will get; None if no such topic.

        Raises ``TimeoutError`` if the broker does not answer within ``timeout_s``.
        """
        self._started()
        async with asyncio.timeout(timeout_s):
            while True:
                leader = await self._leader(topic, partition)
                if leader is None:
                    return None
                if leader >= 0:
                    offset = await self._list_end_offset(leader, topic, partition)
                    if offset is not None:
                        return offset
                await asyncio.sleep(LEADER_RETRY_S)

    async def _leader(self, topic: str, partition: int) -> int | None:
        """The partition's leader node; None if the topic does not exist, -1 if leaderless now."""
        response = await self._metadata([topic])
        (found,) = response["topics"]  # type: ignore[misc]
        if found["error_code"] == UnknownTopicOrPartitionError.errno:
            return None
        if found["error_code"] != NO_ERROR:
            return -1
        for entry in found["partitions"]:
            if entry["partition"] == partition and entry["error_code"] == NO_ERROR:
                return int(entry["leader"])
        if all(entry["partition"] != partition for entry in found["partitions"]):
            return None  # the topic has fewer partitions: nothing will ever be there
        return -1

    async def _list_end_offset(self, leader: int, topic: str, partition: int) -> int | None:
        """The end offset as the leader tells it; None when it is not (or no longer) the leader."""
        request = OffsetRequest(-1, READ_UNCOMMITTED, [(topic, [(partition, LATEST)])])
        response = (await self._started().send(leader, request)).to_object()
        (answer,) = response["topics"][0]["partitions"]
        error = answer["error_code"]
        if error == NO_ERROR:
            return int(answer["offset"])
        if for_code(error).retriable:
            return None
        raise for_code(error)(f"ListOffsets {topic}/{partition}")
