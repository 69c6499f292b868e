"""The shared consumer: one per edge, assigned exactly the sessions with readers."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable

import httpx
from aiokafka.admin import AIOKafkaAdminClient

from tests.api.conftest import (
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

SESSIONS = 5
STREAMS_PER_SESSION = 10


async def test_fifty_streams_share_one_consumer_assigned_to_their_sessions(
    edge: Edge, unique_name: Callable[..., str], create_session_topic: CreateSession,
    produce: Produce,
) -> None:
    hub = edge.runtime.hub
    session_ids = [unique_name("s") for _ in range(SESSIONS)]
    for session_id in session_ids:
        await create_session_topic(edge.settings, session_id)
    events = {sid: answer_events(sid, "r-1", ["a", "b", "c"]) for sid in session_ids}
    async with contextlib.AsyncExitStack() as stack:
        streams = {
            sid: [
                # A user per session: ten streams each stay under the per-user cap.
                await stack.enter_async_context(
                    SseStream(edge.events_url(sid), token=edge.token(sid, f"u-{sid}"))
                )
                for _ in range(STREAMS_PER_SESSION)
            ]
            for sid in session_ids
        }
        topics = {edge.settings.session_topic(sid) for sid in session_ids}
        await eventually(lambda: hub.assigned_topics() == topics)
        assert hub.consumers_created == 1
        connections = metric_value(edge, "tokenwire_edge_sse_connections")
        assert connections == SESSIONS * STREAMS_PER_SESSION
        for sid in session_ids:
            await produce(edge.settings, sid, events[sid])
        for sid, session_streams in streams.items():
            seen = await asyncio.gather(*(s.take(len(events[sid])) for s in session_streams))
            expected = [(i, e.model_dump_json()) for i, e in enumerate(events[sid])]
            assert all([(e.id, e.data) for e in one] == expected for one in seen)
    await eventually(lambda: hub.assigned_topics() == set() and hub.session_topics() == set())
    await eventually(lambda: metric_value(edge, "tokenwire_edge_sse_connections") == 0)
    assert hub.consumers_created == 1


async def test_a_client_that_stops_reading_is_closed_and_resumes_without_loss(
    make_edge: EdgeFactory, unique_name: Callable[..., str],
    create_session_topic: CreateSession, produce: Produce,
) -> None:
    # A send timeout far away: the close must come from the hub, not from a blocked send.
    async with make_edge(sse_client_buffer=4, sse_send_timeout_s=60) as edge:
        session_id = unique_name("s")
        await create_session_topic(edge.settings, session_id)
        url, token = edge.events_url(session_id), edge.token(session_id)
        # Big events and a capped receive window: once the socket buffers are full (a few MB),
        # the edge's sends block and the client's backlog grows.
        events = answer_events(session_id, "r-1", ["x" * 64_000] * 200)
        capped_window = httpx.AsyncHTTPTransport(
            socket_options=[(socket.SOL_SOCKET, socket.SO_RCVBUF, 256 * 1024)]
        )
        async with SseStream(url, token=token, transport=capped_window) as slow:
            await produce(edge.settings, session_id, events[:2])
            received = await slow.take(2)
            await produce(edge.settings, session_id, events[2:])
            await eventually(
                lambda: metric_value(edge, "tokenwire_edge_slow_client_closes_total") == 1
            )
            received += await slow.rest()
        assert slow.closed and len(received) < len(events)
        resume = {"Last-Event-ID": str(received[-1].id)}
        async with SseStream(url, token=token, headers=resume) as again:
            received += await again.take(len(events) - len(received))
    assert [e.id for e in received] == list(range(len(events)))


async def test_a_reader_older_than_the_cache_rewinds_and_nobody_sees_a_duplicate(
    make_edge: EdgeFactory, unique_name: Callable[..., str],
    create_session_topic: CreateSession, produce: Produce,
) -> None:
    async with make_edge(session_cache_events=5) as edge:
        session_id = unique_name("s")
        await create_session_topic(edge.settings, session_id)
        url, token = edge.events_url(session_id), edge.token(session_id)
        events = answer_events(session_id, "r-1", [f"t{i}" for i in range(28)])
        async with SseStream(url, token=token) as live:
            await produce(edge.settings, session_id, events[:20])
            seen_live = await live.take(20)
            async with SseStream(url, token=token) as late:
                seen_late = await late.take(10)
                await produce(edge.settings, session_id, events[20:])
                seen_live += await live.take(10)
                seen_late += await late.take(20)
    expected = list(range(len(events)))
    assert [e.id for e in seen_live] == expected
    assert [e.id for e in seen_late] == expected


async def test_deleting_a_followed_session_topic_ends_its_streams(
    make_edge: EdgeFactory, unique_name: Callable[..., str],
    create_session_topic: CreateSession, produce: Produce, kafka_admin: AIOKafkaAdminClient,
) -> None:
    async with make_edge() as edge:
        session_id = unique_name("s")
        topic = await create_session_topic(edge.settings, session_id)
        await produce(edge.settings, session_id, answer_events(session_id, "r-1", ["a"]))
        async with SseStream(edge.events_url(session_id), token=edge.token(session_id)) as s:
            first: list[Sse] = await s.take(3)
            await kafka_admin.delete_topics([topic])
            assert await s.rest() == []
        assert s.closed and len(first) == 3
        await eventually(lambda: edge.runtime.hub.assigned_topics() == set())


async def test_server_shutdown_ends_open_streams_promptly(
    make_edge: EdgeFactory, unique_name: Callable[..., str],
    create_session_topic: CreateSession,
) -> None:
    session_id = unique_name("s")
    edge_cm = make_edge()
    edge = await edge_cm.__aenter__()
    await create_session_topic(edge.settings, session_id)
    async with SseStream(edge.events_url(session_id), token=edge.token(session_id)) as stream:
        await eventually(lambda: edge.runtime.hub.assigned_topics() != set())
        stopping = asyncio.create_task(edge_cm.__aexit__(None, None, None))
        # Well inside uvicorn's 3 s graceful timeout: the server ended the stream itself.
        assert await stream.rest(timeout_s=1.5) == []
        await asyncio.wait_for(stopping, 10)
    assert stream.closed
