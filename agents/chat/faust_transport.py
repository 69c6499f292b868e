"""Faust's Kafka transport, with partition pauses that reach the Kafka client.

faust-streaming's ``pause_partitions`` only stops handing a partition's records to streams;
aiokafka goes on fetching it. After table recovery Faust pauses the changelog partitions that
way, so aiokafka keeps filling a buffer with changelog records that nothing drains, and while a
partition holds undrained records aiokafka sends no fetch at all to that broker for up to its
``prefetch_backoff`` (100 ms). The worker writes the aggregates changelog all the time, so every
fetch of ``chat.requests`` waited behind it: at 100 streams a request reached the agent p50
~370 ms after it was published.

``Consumer`` here also pauses (and resumes) the partitions in aiokafka. aiokafka's partition
state belongs to the consumer thread's event loop, so the change is made there.

``Transport`` also sends Faust's CreateTopics to a broker that answers: Faust's own choice could
name a dead broker, and a worker restarted while one broker of a cluster was down died.

Registered as the ``tokenwire-kafka://`` broker scheme through Faust's ``faust.transports``
entry point (``pyproject.toml``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.client import AIOKafkaClient
from aiokafka.errors import NodeNotReadyError
from aiokafka.protocol.metadata import MetadataRequest
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP
from mode import Service

SCHEME = "tokenwire-kafka"


class Consumer(faust_aiokafka.Consumer):
    def pause_partitions(self, tps: Iterable[TP]) -> None:
        tps = list(tps)
        super().pause_partitions(tps)
        self._in_client_thread("pause", tps)

    def resume_partitions(self, tps: Iterable[TP]) -> None:
        tps = list(tps)
        super().resume_partitions(tps)
        self._in_client_thread("resume", tps)

    def _in_client_thread(self, action: Literal["pause", "resume"], tps: list[TP]) -> None:
        client = self._thread._consumer
        if client is None or not tps:
            return  # not started yet: the assignment will start unpaused, as Faust expects
        partitions = [TopicPartition(tp.topic, tp.partition) for tp in tps]
        self._thread.thread_loop.call_soon_threadsafe(_apply, client, action, partitions)


def _apply(
    client: AIOKafkaConsumer, action: Literal["pause", "resume"], partitions: list[TopicPartition]
) -> None:
    assigned = client.assignment()
    owned = [tp for tp in partitions if tp in assigned]
    if action == "pause":
        client.pause(*owned)
    else:
        client.resume(*owned)


class Transport(faust_aiokafka.Transport):
    Consumer = Consumer

    async def _get_controller_node(
        self, owner: Service, client: AIOKafkaClient, timeout: int = 30000  # noqa: ASYNC109
    ) -> int | None:
        """Where Faust sends CreateTopics (its changelogs): the controller if it answers, else
        any broker that does.

        Faust asks the first broker in its metadata and sends to the controller that one names,
        without checking either answers, so a worker (re)started while that broker is down died
        at start-up (NodeNotReadyError). KRaft brokers forward CreateTopics to the active
        controller, so any live broker will do.
        """
        for broker in client.cluster.brokers():
            if not await client.ready(broker.nodeId):
                continue
            response = await client.send(broker.nodeId, MetadataRequest([]))
            controller = response.controller_id
            if controller is not None and controller >= 0 and await client.ready(controller):
                return int(controller)
            return int(broker.nodeId)
        if owner.should_stop:
            return None
        raise NodeNotReadyError("no Kafka broker answers to create a topic")
