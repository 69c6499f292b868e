"""Kafka clients configured on purpose, in one place.

aiokafka's defaults favour throughput and assume a forgiving reader: the producer acks after the
leader only (``acks=1``) without idempotence, and the consumer waits up to 500 ms per fetch.
tokenwire carries an interactive stream whose record is the log, so:

- producer: ``acks="all"`` + ``enable_idempotence=True`` (no loss, no duplicate on retry) and
  ``linger_ms=0``: a token leaves at once. Under load records still share requests, since a
  partition's next batch fills while its previous request is in flight; measured on loopback,
  linger 1 ms cost 1.1 ms at p50 from send to consumer (3.3 vs 2.2 ms) and gained nothing;
- consumer: ``fetch_max_wait_ms=5`` for readers that read a log up to an end and stop: every
  request they make of the broker (offsets, positions) queues behind a fetch in flight;
- follower (``new_follower``): a consumer that follows the tail of its partitions for the life
  of the process waits ``FOLLOWER_FETCH_MAX_WAIT_MS`` (1 s) per fetch. The broker answers a fetch
  as soon as a record is there, so a long wait adds no latency to records; it only makes an idle
  follower cheap: with 5 ms waits each idle follower cost the broker and itself ~150 empty fetches
  a second (an idle ``make run`` stack used ~12 % of a core in the edge and ~10 % in the broker).
  Its fetches have a connection of their own, and an ``assign()`` is followed by ``wake_fetch``:
  else requests and new partitions waited behind the poll (see below).

Every factory takes a ``KafkaConnection`` (bootstrap + ``Settings.kafka``), so no client can be
made without the cluster's security settings.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.client import AIOKafkaClient, ConnectionGroup
from aiokafka.conn import AIOKafkaConnection, CloseReason
from aiokafka.errors import KafkaConnectionError, NodeNotReadyError, NotControllerError
from aiokafka.protocol.fetch import FetchRequest

from tokenwire.kafka_settings import KafkaConnection

log = logging.getLogger(__name__)

PRODUCER_LINGER_MS = 0
CONSUMER_FETCH_MAX_WAIT_MS = 5
FOLLOWER_FETCH_MAX_WAIT_MS = 1_000


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


def new_follower(
    kafka: KafkaConnection, *, client_id: str, **overrides: object
) -> AIOKafkaConsumer:
    """A group-less consumer that follows the tail of its partitions with long polls.

    Its fetches go on a connection of their own (``fetch_on_own_connection``). After ``assign``
    of a running follower call ``wake_fetch``; a seek or resume must come with an ``assign``.
    """
    options: dict[str, object] = {
        "fetch_max_wait_ms": FOLLOWER_FETCH_MAX_WAIT_MS,
        # How often aiokafka's fetch routine wakes with nothing to do (200 ms by default); it
        # wakes at once on a response, an assignment change, a seek, a resume or a consumed batch.
        "consumer_timeout_ms": FOLLOWER_FETCH_MAX_WAIT_MS,
        **overrides,
    }
    consumer = new_consumer(kafka, client_id=client_id, **options)
    fetch_on_own_connection(consumer)
    return consumer


# --- long polls and aiokafka's connections --------------------------------------------------
#
# Kafka serves the requests of one connection one at a time, in order, and a fetch waits at the
# broker up to fetch_max_wait_ms for a record. aiokafka's consumer has one connection per broker
# for everything but the group coordinator, and at most one fetch per broker in flight. With long
# polls that meant: a metadata or offsets request waited behind the poll, and after an assign()
# (aiokafka drops the fetch in flight and sends one for the new partitions at once) the new fetch
# waited behind the dropped poll, so a new session's first event waited up to a whole poll. The
# three functions below fix that with private aiokafka attributes (the client's send and
# connections, the fetcher's requests in flight), kept here and pinned by
# tests/test_kafka_clients_long_poll.py.

# A connection group of aiokafka's client beside DEFAULT (0) and COORDINATION (1): fetches only.
FETCH_CONNECTIONS = 2


def fetch_on_own_connection(consumer: AIOKafkaConsumer) -> None:
    """Send ``consumer``'s fetches on a connection per broker of their own, so that its other
    requests (metadata, offsets) never queue behind a long poll. Call before ``start()``."""
    client = consumer._client
    send = client.send

    async def send_fetches_apart(
        node_id: int, request: Any, *, group: int = ConnectionGroup.DEFAULT
    ) -> Any:
        if group == ConnectionGroup.DEFAULT and isinstance(request, FetchRequest):
            group = FETCH_CONNECTIONS
        return await send(node_id, request, group=group)

    client.send = send_fetches_apart  # type: ignore[method-assign]


def wake_fetch(consumer: AIOKafkaConsumer) -> list[AIOKafkaConnection]:
    """Have a follower (``new_follower``) fetch its new assignment at once, not after the long
    poll that ``assign()`` dropped.

    The fetch connections that carry the fetcher's requests in flight are taken out of the
    client: its next fetch opens a new one, which the broker serves at once. Each taken
    connection is closed as soon as the fetches in flight at this call are done (at once: the
    ``assign()`` cancels them). Returns the taken connections.
    """
    fetcher, client = consumer._fetcher, consumer._client
    pending = [task for task in fetcher._pending_tasks if not task.done()]
    taken = [
        conn
        for node in set(fetcher._in_flight)
        if (conn := client._conns.pop((node, FETCH_CONNECTIONS), None)) is not None
    ]
    if not taken:
        return []
    log.debug("waking fetch client_id=%s connections=%d", client._client_id, len(taken))

    def close_taken(_: object = None) -> None:
        if all(task.done() for task in pending):
            for conn in taken:
                conn.close(reason=CloseReason.IDLE_DROP)

    for task in pending:
        task.add_done_callback(close_taken)
    close_taken()
    return taken


# Metadata rounds asked for partitions about to be assigned (one may answer for older topics).
LEARN_ROUNDS = 2


async def learn_leaders(
    consumer: AIOKafkaConsumer, partitions: list[TopicPartition], *, timeout_s: float
) -> None:
    """Have ``consumer`` know the leaders of ``partitions`` before they are assigned to it.

    aiokafka asks a newly assigned topic's metadata only after ``assign()``; its fetcher meanwhile
    sends a fetch for the partitions it knows, and takes the new one up only after that long
    poll. Known first, the new partition is in the first fetch. Gives up after ``timeout_s``
    (a broker down): the partition is then fetched after one long poll.
    """
    client = consumer._client

    def unknown() -> set[str]:
        leaders = {tp: client.cluster.leader_for_partition(tp) for tp in partitions}
        return {tp.topic for tp, leader in leaders.items() if leader in (None, -1)}

    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout_s):
            for _ in range(LEARN_ROUNDS):
                topics = unknown()
                if not topics:
                    return
                for topic in topics:
                    client.add_topic(topic)
                await client.force_metadata_update()


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
