"""Which of some topics exist: one metadata request naming them, never the whole cluster.

Every session is a topic, so a cluster's topic count grows with its sessions. Asking for all of
them (``AIOKafkaConsumer.topics()``, ``AIOKafkaAdminClient.list_topics()``) costs the broker and
the client time proportional to that count on every call; naming the topics asked about keeps
each answer as small as the question. The request also says ``allow_auto_topic_creation=False``:
on a broker that auto-creates topics, a metadata request for a deleted session topic would
otherwise bring it back.

Requests are Metadata v10/v12 (``tokenwire.metadata_protocol``), so each answer also carries the
topic's id: a topic deleted and created again under its name gets a new one (``topic_ids``). The
edge turns it into the epoch of its SSE ids, which tells the generations of a session apart.

``end_offset`` asks one partition's leader for its end offset (ListOffsets, latest): the edge
checks a client's resume position against it before following a session from there; ``end``
answers the same together with the topic id the end belongs to.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from aiokafka.client import AIOKafkaClient
from aiokafka.errors import (
    KafkaConnectionError,
    NodeNotReadyError,
    RequestTimedOutError,
    UnknownTopicOrPartitionError,
    for_code,
)
from aiokafka.protocol.offset import OffsetRequest

from tokenwire.kafka_clients import new_client, send_to_any
from tokenwire.kafka_settings import KafkaConnection
from tokenwire.metadata_protocol import MetadataWithIdsRequest

NO_ERROR = 0
LATEST = -1  # ListOffsets "timestamp" meaning the end of the partition
READ_UNCOMMITTED = 0
# A partition without a leader (just created, leader moving) is asked again after this.
LEADER_RETRY_S = 0.1


@dataclass(frozen=True, slots=True)
class TopicEnd:
    """Where a partition ends, and which generation of its topic (the topic id) that is."""

    topic_id: uuid.UUID
    end: int


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

    async def _metadata(self, names: list[str]) -> list[dict[str, Any]]:
        """The answer's topics; raises ``IncompatibleBrokerVersion`` below Kafka 2.8."""
        client = self._started()
        # A broker that answers: with one broker of a cluster down, a random one may be it.
        response = (await send_to_any(client, MetadataWithIdsRequest(names))).to_object()
        topics: list[dict[str, Any]] = response["topics"]
        return topics

    async def topic_ids(self, topics: Iterable[str], *, timeout_s: float) -> dict[str, uuid.UUID]:
        """The id of each of ``topics`` that exists now; raises if the broker does not answer."""
        self._started()
        names = sorted(set(topics))
        if not names:
            return {}
        found = await asyncio.wait_for(self._metadata(names), timeout_s)
        return {t["name"]: t["topic_id"] for t in found if t["error_code"] == NO_ERROR}

    async def existing(self, topics: Iterable[str], *, timeout_s: float) -> set[str]:
        """The subset of ``topics`` that exists now; raises if the broker does not answer."""
        return set(await self.topic_ids(topics, timeout_s=timeout_s))

    async def end_offset(self, topic: str, *, partition: int = 0, timeout_s: float) -> int | None:
        """The offset the next record of ``topic``/``partition`` will get; None if no such topic.

        Raises ``TimeoutError`` if the broker does not answer within ``timeout_s``.
        """
        found = await self.end(topic, partition=partition, timeout_s=timeout_s)
        return None if found is None else found.end

    async def end(self, topic: str, *, partition: int = 0, timeout_s: float) -> TopicEnd | None:
        """``end_offset`` with the id of the topic it was read from; None if no such topic.

        The id comes from the metadata that named the leader asked: a topic re-created between
        the two requests can pair the old id with the new end, which only makes the edge treat
        a current position as stale (a restart from the beginning), never skip.
        """
        self._started()
        async with asyncio.timeout(timeout_s):
            while True:
                found = await self._leader(topic, partition)
                if found is None:
                    return None
                topic_id, leader = found
                if leader >= 0:
                    offset = await self._list_end_offset(leader, topic, partition)
                    if offset is not None:
                        return TopicEnd(topic_id, offset)
                await asyncio.sleep(LEADER_RETRY_S)

    async def _leader(self, topic: str, partition: int) -> tuple[uuid.UUID, int] | None:
        """(topic id, the partition's leader node); None if the topic does not exist, leader -1
        while the partition has none."""
        (found,) = await self._metadata([topic])
        if found["error_code"] == UnknownTopicOrPartitionError.errno:
            return None
        topic_id: uuid.UUID = found["topic_id"]
        if found["error_code"] != NO_ERROR:
            return topic_id, -1
        for entry in found["partitions"]:
            if entry["partition_index"] == partition and entry["error_code"] == NO_ERROR:
                return topic_id, int(entry["leader_id"])
        if all(entry["partition_index"] != partition for entry in found["partitions"]):
            return None  # the topic has fewer partitions: nothing will ever be there
        return topic_id, -1

    async def _list_end_offset(self, leader: int, topic: str, partition: int) -> int | None:
        """The end offset as the leader tells it; None when it is not (or no longer) the leader,
        or does not answer (it died: the cluster names another once it notices)."""
        request = OffsetRequest(-1, READ_UNCOMMITTED, [(topic, [(partition, LATEST)])])
        try:
            response = (await self._started().send(leader, request)).to_object()
        except (NodeNotReadyError, KafkaConnectionError, RequestTimedOutError):
            return None
        (answer,) = response["topics"][0]["partitions"]
        error = answer["error_code"]
        if error == NO_ERROR:
            return int(answer["offset"])
        if for_code(error).retriable:
            return None
        raise for_code(error)(f"ListOffsets {topic}/{partition}")
