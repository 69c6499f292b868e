"""Which of some topics exist: one metadata request naming them, never the whole cluster.

Every session is a topic, so a cluster's topic count grows with its sessions. Asking for all of
them (``AIOKafkaConsumer.topics()``, ``AIOKafkaAdminClient.list_topics()``) costs the broker and
the client time proportional to that count on every call; naming the topics asked about keeps
each answer as small as the question. The request also says ``allow_auto_topic_creation=False``:
on a broker that auto-creates topics, a metadata request for a deleted session topic would
otherwise bring it back.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from aiokafka.client import AIOKafkaClient
from aiokafka.protocol.metadata import MetadataRequest

NO_ERROR = 0


class TopicMetadata:
    def __init__(self, bootstrap: str, *, client_id: str) -> None:
        self._bootstrap = bootstrap
        self._client_id = client_id
        self._client: AIOKafkaClient | None = None

    async def start(self) -> None:
        # Made here, not in __init__: aiokafka binds its client to the running loop.
        self._client = AIOKafkaClient(bootstrap_servers=self._bootstrap, client_id=self._client_id)
        await self._client.bootstrap()

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def existing(self, topics: Iterable[str], *, timeout_s: float) -> set[str]:
        """The subset of ``topics`` that exists now; raises if the broker does not answer."""
        if self._client is None:
            raise RuntimeError("topic metadata client is not started")
        names = sorted(set(topics))
        if not names:
            return set()
        request = MetadataRequest(names, allow_auto_topic_creation=False)
        node = self._client.get_random_node()
        if node is None:
            raise ConnectionError("no Kafka broker known to ask for topic metadata")
        response = await asyncio.wait_for(self._client.send(node, request), timeout_s)
        return {
            topic["topic"]
            for topic in response.to_object()["topics"]
            if topic["error_code"] == NO_ERROR
        }
