"""The shared consumer is supervised: however it breaks, it is replaced and streams go on.

Each test breaks the real consumer of a real edge (a fetch aiokafka cannot encode, a stop, a
killed fetch task) while clients stream, then produces more events: every client must get them,
exactly once and in order, from the replacement consumer.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

import api.session_hub
from tests.api.conftest import (
    WAIT_S,
    CreateSession,
    Edge,
    EdgeFactory,
    Produce,
    Sse,
    SseStream,
    answer_events,
    eventually,
    metric_value,
)
from tests.fixtures.asgi_server import free_port
from tokenwire.kafka_clients import new_follower
from tokenwire.kafka_settings import KafkaConnection


@contextlib.asynccontextmanager
async def followed_sessions(
    edge: Edge, unique_name: Callable[..., str], create: CreateSession, produce: Produce
) -> AsyncIterator[list[tuple[str, SseStream, list[Sse]]]]:
    """Two sessions, each with one answer (r-1) delivered to an open stream that waits for r-2."""
    streams = []
    async with contextlib.AsyncExitStack() as stack:
        for n in range(2):
            session_id = unique_name(f"s{n}")
            await create(edge.settings, session_id)
            await produce(edge.settings, session_id, answer_events(session_id, "r-1", ["a", "b"]))
            stream = await stack.enter_async_context(
                SseStream(
                    edge.events_url(session_id), token=edge.token(session_id, f"u{n}"),
                    params={"until": "done", "request_id": "r-2"},
                )
            )
            streams.append((session_id, stream, await stream.take(4)))
        yield streams


async def the_rest_arrives_exactly_once(
    edge: Edge, produce: Produce, streams: list[tuple[str, SseStream, list[Sse]]]
) -> None:
    for session_id, _, _ in streams:
        await produce(edge.settings, session_id, answer_events(session_id, "r-2", ["c", "d"]))
    for _, stream, received in streams:
        received += await stream.rest()
        assert [event.id for event in received] == list(range(8))
        assert stream.closed


async def readyz(edge: Edge, status: int) -> dict[str, Any]:
    """``/readyz``'s body once it answers ``status``."""
    deadline = time.monotonic() + WAIT_S
    async with httpx.AsyncClient(timeout=10) as client:
        while True:
            response = await client.get(f"{edge.url}/readyz")
            if response.status_code == status:
                body: dict[str, Any] = response.json()
                return body
            if time.monotonic() > deadline:
                raise TimeoutError(f"/readyz never answered {status}: {response.text}")
            await asyncio.sleep(0.05)


def the_consumer(edge: Edge) -> AIOKafkaConsumer:
    consumer = edge.runtime.hub._consumer
    assert consumer is not None
    return consumer


async def test_a_fetch_that_kills_aiokafkas_fetcher_is_survived(
    make_edge: EdgeFactory, unique_name: Callable[..., str],
    create_session_topic: CreateSession, produce: Produce,
) -> None:
    async with make_edge() as edge, followed_sessions(
        edge, unique_name, create_session_topic, produce
    ) as streams:
        hub = edge.runtime.hub
        # What a Last-Event-ID of 2**63-1 made the edge do (issue #11): the next fetch request
        # cannot be encoded, and aiokafka's fetcher task dies of it.
        poisoned = TopicPartition(edge.settings.session_topic(streams[0][0]), 0)
        the_consumer(edge).seek(poisoned, 2**63)
        await the_rest_arrives_exactly_once(edge, produce, streams)
        assert hub.consumers_created == 2 and hub.ready
        assert metric_value(edge, "tokenwire_edge_hub_consumer_restarts_total") == 1


async def test_a_stopped_consumer_is_replaced(
    make_edge: EdgeFactory, unique_name: Callable[..., str],
    create_session_topic: CreateSession, produce: Produce,
) -> None:
    async with make_edge() as edge, followed_sessions(
        edge, unique_name, create_session_topic, produce
    ) as streams:
        await the_consumer(edge).stop()
        await the_rest_arrives_exactly_once(edge, produce, streams)
        assert edge.runtime.hub.consumers_created == 2


async def test_readyz_is_503_while_no_consumer_can_be_made_and_streams_resume_after(
    make_edge: EdgeFactory, unique_name: Callable[..., str],
    create_session_topic: CreateSession, produce: Produce, monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with make_edge() as edge, followed_sessions(
        edge, unique_name, create_session_topic, produce
    ) as streams:
        hub = edge.runtime.hub
        assert (await readyz(edge, 200))["checks"]["session_hub"] == "ok"
        # Fault injection: replacements point at a port nothing listens on, so they fail to start.
        nowhere = f"127.0.0.1:{free_port()}"
        monkeypatch.setattr(
            api.session_hub, "new_follower",
            lambda _bootstrap, **kwargs: new_follower(KafkaConnection.plaintext(nowhere), **kwargs),
        )
        fetch_task = the_consumer(edge)._fetcher._fetch_task
        fetch_task.cancel()
        body = await readyz(edge, 503)
        assert body["checks"]["session_hub"] == "down"
        await eventually(lambda: hub.consumers_created >= 3)  # replacements keep being tried
        monkeypatch.undo()
        assert (await readyz(edge, 200))["checks"]["session_hub"] == "ok"
        await the_rest_arrives_exactly_once(edge, produce, streams)
