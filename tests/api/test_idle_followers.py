"""An idle edge costs (almost) nothing, and a new subscription still gets its first event at once.

The edge's Kafka followers (session hub, usage ledger, alert throttle) long-poll: an idle edge sent
~150 empty fetches a second per follower with 5 ms fetch waits, ~8 % of a core for an idle
``make run``. A long poll must not delay what a browser asks for: with the followers' wait made
30 s here, a new session's first event, or a resume below the feed's cache, arrives in a few
seconds only because the hub wakes its fetch (``tokenwire.kafka_clients.wake_fetch``); without
that they would wait out the 30 s poll and the 10 s deadlines fail.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import pytest

import tokenwire.kafka_clients
from tests.api.conftest import (
    CreateSession,
    Edge,
    EdgeFactory,
    Produce,
    SseStream,
    answer_events,
    eventually,
)
from tests.fixtures.fetch_counting import count_fetches

# What a window of idle may cost: at most a few fetches a second of each follower (a 1 s long
# poll sends about one). The old 5 ms waits sent hundreds in the same window.
IDLE_WINDOW_S = 3.0
MAX_FETCHES_PER_FOLLOWER = 12
# Far longer than the deadline below: an event that waits for the long poll to end fails it.
LONG_POLL_MS = 30_000
FIRST_EVENT_DEADLINE_S = 10.0
EDGE_FOLLOWERS = ("tokenwire-edge-hub", "tokenwire-edge-ledger", "tokenwire-edge-alerts")


def hub_long_poll_in_flight(edge: Edge) -> bool:
    consumer = edge.runtime.hub._consumer
    return consumer is not None and bool(consumer._fetcher._in_flight)


async def test_an_idle_edge_sends_a_few_fetches_a_second_at_most(
    make_edge: EdgeFactory, unique_name: Callable[..., str], create_session_topic: CreateSession,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with make_edge() as edge:
        session_id = unique_name("s")
        await create_session_topic(edge.settings, session_id)
        async with SseStream(edge.events_url(session_id), token=edge.token(session_id)):
            topic = edge.settings.session_topic(session_id)
            await eventually(lambda: edge.runtime.hub.assigned_topics() == {topic})
            fetches = count_fetches(monkeypatch)
            await asyncio.sleep(IDLE_WINDOW_S)  # the window observed, not a wait for a state
            sent = {client: fetches[client] for client in EDGE_FOLLOWERS}
    assert all(count <= MAX_FETCHES_PER_FOLLOWER for count in sent.values()), sent


async def test_a_new_session_gets_its_first_event_while_the_hub_is_in_a_long_poll(
    make_edge: EdgeFactory, unique_name: Callable[..., str], create_session_topic: CreateSession,
    produce: Produce, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(tokenwire.kafka_clients, "FOLLOWER_FETCH_MAX_WAIT_MS", LONG_POLL_MS)
    async with make_edge() as edge, contextlib.AsyncExitStack() as streams:
        quiet, new = unique_name("quiet"), unique_name("new")
        for session_id in (quiet, new):
            await create_session_topic(edge.settings, session_id)
        await produce(edge.settings, quiet, answer_events(quiet, "r-1", ["a"])[:1])
        follower = await streams.enter_async_context(
            SseStream(edge.events_url(quiet), token=edge.token(quiet))
        )
        await follower.take(1)
        await eventually(lambda: hub_long_poll_in_flight(edge))  # nothing more to read: polling
        [first, *_] = answer_events(new, "r-1", ["b"])
        await produce(edge.settings, new, [first])

        reader = await streams.enter_async_context(
            SseStream(edge.events_url(new), token=edge.token(new))
        )
        [event] = await reader.take(1, timeout_s=FIRST_EVENT_DEADLINE_S)

        assert (event.id, event.data) == (0, first.model_dump_json())


async def test_a_resume_below_the_cache_is_read_at_once_while_the_hub_is_in_a_long_poll(
    make_edge: EdgeFactory, unique_name: Callable[..., str], create_session_topic: CreateSession,
    produce: Produce, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(tokenwire.kafka_clients, "FOLLOWER_FETCH_MAX_WAIT_MS", LONG_POLL_MS)
    async with make_edge(session_cache_events=2) as edge, contextlib.AsyncExitStack() as streams:
        session_id = unique_name("s")
        await create_session_topic(edge.settings, session_id)
        events = answer_events(session_id, "r-1", ["a", "b", "c"])
        await produce(edge.settings, session_id, events)
        url, token = edge.events_url(session_id), edge.token(session_id)
        live = await streams.enter_async_context(SseStream(url, token=token))
        seen = await live.take(len(events))
        await eventually(lambda: hub_long_poll_in_flight(edge))
        # The feed caches the last two events only: this resume makes the hub seek back.
        resumed = await streams.enter_async_context(
            SseStream(url, token=token, headers={"Last-Event-ID": seen[0].last_event_id})
        )
        rest = await resumed.take(len(events) - 1, timeout_s=FIRST_EVENT_DEADLINE_S)

        assert [(e.id, e.data) for e in rest] == [(e.id, e.data) for e in seen[1:]]
