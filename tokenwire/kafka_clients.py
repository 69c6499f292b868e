"""Kafka clients configured on purpose, in one place.

aiokafka's defaults favour throughput and assume a forgiving reader: the producer acks after the
leader only (``acks=1``) without idempotence, and the consumer waits up to 500 ms per fetch.
tokenwire carries an interactive stream whose record is the log, so:

- producer: ``acks="all"`` + ``enable_idempotence=True`` (no loss, no duplicate on retry) and
  ``linger_ms=0``: a token leaves at once. Under load records still share requests, since a
  partition's next batch fills while its previous request is in flight; measured on loopback,
  linger 1 ms cost 1.1 ms at p50 from send to consumer (3.3 vs 2.2 ms) and gained nothing;
- consumer: ``fetch_max_wait_ms=5``: a broker answers a fetch as soon as a byte is there or 5 ms
  passed, so an idle-then-busy session costs milliseconds, not half a second.

Every factory takes a ``KafkaConnection`` (bootstrap + ``Settings.kafka``), so no client can be
made without the cluster's security settings.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.client import AIOKafkaClient
from aiokafka.errors import KafkaConnectionError, NodeNotReadyError, NotControllerError

from tokenwire.kafka_settings import KafkaConnection

log = logging.getLogger(__name__)

PRODUCER_LINGER_MS = 0
CONSUMER_FETCH_MAX_WAIT_MS = 5


def new_producer(kafka: KafkaConnection, *, client_id: str) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        **kafka.client_options(),
        client_id=client_id,
        acks="all",
        enable_idempotence=True,
        linger_ms=PRODUCER_LINGER_MS,
        request_timeout_ms=30_000,
    )


def new_consumer(
    kafka: KafkaConnection, *, client_id: str, group_id: str | None = None, **overrides: object
) -> AIOKafkaConsumer:
    """A consumer; without ``group_id`` it is assigned partitions by hand and commits nothing."""
    options: dict[str, object] = {
        **kafka.client_options(),
        "client_id": client_id,
        "group_id": group_id,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "fetch_max_wait_ms": CONSUMER_FETCH_MAX_WAIT_MS,
        "isolation_level": "read_uncommitted",
    }
    options.update(overrides)
    return AIOKafkaConsumer(**options)  # type: ignore[arg-type]


def new_admin(kafka: KafkaConnection, *, client_id: str) -> AIOKafkaAdminClient:
    return FailoverAdminClient(**kafka.client_options(), client_id=client_id)


class FailoverAdminClient(AIOKafkaAdminClient):
    """An admin client that steps around a dead broker.

    aiokafka's admin client sends metadata requests (list, describe) to a random known broker
    without checking it answers, and CreateTopics/DeleteTopics to the broker the metadata names
    as controller, waiting up to the request timeout (30 s) for it. With one broker of a cluster
    down, a new session's topic then failed at once (NodeNotReadyError) or after 30 s. Here each
    request goes to a broker that answers; KRaft brokers forward controller requests to the
    active controller. (It overrides two private aiokafka methods, kept to these few lines.)
    """

    async def _send_request(self, request: Any, node_id: int | None = None) -> Any:
        if node_id is None:
            return await send_to_any(self._client, request)
        return await self._client.send(node_id, request)

    async def _send_to_controller(self, request: Any) -> Any:
        for attempt in range(2):
            controller = self._client.cluster.controller
            if controller is not None and await self._client.ready(controller.nodeId):
                try:
                    return await self._client.send(controller.nodeId, request)
                except NotControllerError:
                    pass
            if attempt == 0:
                await self._client.force_metadata_update()
        return await send_to_any(self._client, request)


# Sends tried on another broker when the one picked dies under them (its connection still
# looked open when it was picked).
SEND_ATTEMPTS = 3


async def send_to_any(client: AIOKafkaClient, request: Any) -> Any:
    """``request`` to a broker that answers; tried again on another one if that one dies."""
    for attempt in range(SEND_ATTEMPTS):
        try:
            return await client.send(await live_node(client), request)
        except (KafkaConnectionError, NodeNotReadyError):
            if attempt == SEND_ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")


async def live_node(client: AIOKafkaClient) -> int:
    """A broker that answers, picked at random (aiokafka's ``get_random_node`` may name a dead
    one, and sending to it raises NodeNotReadyError)."""
    nodes = [broker.nodeId for broker in client.cluster.brokers()]
    random.shuffle(nodes)
    for node in nodes:
        if await client.ready(node):
            return int(node)
    await client.force_metadata_update()
    raise NodeNotReadyError(f"no Kafka broker answers (of {sorted(nodes)})")


def new_client(kafka: KafkaConnection, *, client_id: str) -> AIOKafkaClient:
    """A bare client, for requests the higher-level clients do not offer."""
    return AIOKafkaClient(**kafka.client_options(), client_id=client_id)


CONSUMER_STOP_TIMEOUT_S = 10.0


async def stop_consumer(
    consumer: AIOKafkaConsumer, *, timeout_s: float = CONSUMER_STOP_TIMEOUT_S
) -> None:
    """Stop ``consumer`` and close its connections on every path, within ``timeout_s``.

    aiokafka's ``Fetcher.close()`` awaits the fetch tasks it has just cancelled, so a consumer
    stopped while a fetch waits out its retry backoff (its broker died) raises that task's
    ``CancelledError`` from ``stop()``. Let through, it ended whatever task stopped the consumer:
    the edge's session hub loop died that way when a broker was killed, and every stream of the
    edge went silent. Only a cancellation of the calling task itself is re-raised here.
    """
    try:
        async with asyncio.timeout(timeout_s):
            await consumer.stop()
        return
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise
        log.info("consumer stop raised a cancellation that was not ours; closing its client")
    except Exception as exc:  # a dead fetcher's error, or the timeout
        log.info("consumer stop failed error=%r; closing its client", exc)
    with contextlib.suppress(Exception):
        async with asyncio.timeout(timeout_s):
            await consumer._client.close()
