"""SSE ids tell the generations of a session topic apart (issue 12, section 4).

The janitor deletes an idle session topic and the next POST creates it again, at offset 0. An id
of the old generation must then restart at the new beginning, never skip the new answer or be
refused; a plain integer id (clients from before epochs) keeps its meaning; a reconnect within
one generation stays exact; and a hub that follows the topic drops what it cached of the old one.

The regression tests read the ids as raw strings off the wire (``raw_events``), so they run the
same against the edge from before epochs, whose ids were plain offsets.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from httpx_sse import aconnect_sse

import api.session_hub
from tests.api.conftest import (
    WAIT_S,
    CreateSession,
    Edge,
    EdgeFactory,
    Produce,
    SseStream,
    answer_events,
    eventually,
)
from tests.fixtures.waiting import eventually_true

OLD_TOKENS = [f"old{i} " for i in range(8)]  # 10 events: start, 8 tokens, done
NEW_TOKENS = [f"new{i} " for i in range(14)]  # 16 events: longer, so a skip would show


async def raw_events(
    url: str, token: str, *, count: int | None = None, params: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, list[tuple[str, str]]]:
    """(status, [(id as sent, data)]): ``count`` events, or all until the server ends."""
    received: list[tuple[str, str]] = []
    async with (
        httpx.AsyncClient(timeout=httpx.Timeout(WAIT_S, connect=5.0)) as client,
        aconnect_sse(
            client, "GET", url, params={"token": token, **(params or {})}, headers=headers or {}
        ) as source,
    ):
        if source.response.status_code != 200:
            return source.response.status_code, received
        async for sse in source.aiter_sse():
            if sse.data:
                received.append((sse.id, sse.data))
                if count is not None and len(received) >= count:
                    break
    return 200, received


def offset_of(event_id: str) -> int:
    return int(event_id.rsplit("-", 1)[-1])


def epoch_of(event_id: str) -> str | None:
    return event_id.rsplit("-", 1)[0] if "-" in event_id else None


def next_position(event_id: str) -> str:
    """The position after ``event_id``, as the chat page sends it in ``?from=``."""
    epoch, offset = epoch_of(event_id), offset_of(event_id) + 1
    return str(offset) if epoch is None else f"{epoch}-{offset}"


async def recreate_topic(
    admin: AIOKafkaAdminClient, topic: str, create: Callable[[], Awaitable[object]]
) -> None:
    """Delete ``topic`` as the janitor does, then create it again once it is gone."""
    await admin.delete_topics([topic])

    async def gone() -> bool:
        return topic not in await admin.list_topics()

    await eventually_true(gone)
    await create()

    async def back() -> bool:
        return topic in await admin.list_topics()

    await eventually_true(back)


@contextlib.asynccontextmanager
async def answered(
    edge: Edge, session_id: str, create: CreateSession, produce: Produce
) -> AsyncIterator[list[tuple[str, str]]]:
    """A session holding one finished answer; yields its events as a client read them."""
    await create(edge.settings, session_id)
    await produce(edge.settings, session_id, answer_events(session_id, "r-old", OLD_TOKENS))
    status, events = await raw_events(
        edge.events_url(session_id), edge.token(session_id),
        params={"until": "done", "request_id": "r-old"},
    )
    assert status == 200 and len(events) == len(OLD_TOKENS) + 2
    yield events


async def test_an_id_of_a_deleted_generation_restarts_at_the_new_beginning(
    make_edge: EdgeFactory, unique_name: Callable[..., str], kafka_admin: AIOKafkaAdminClient,
    create_session_topic: CreateSession, produce: Produce,
) -> None:
    """Regression: the old edge resumed the stale ``Last-Event-ID: 9`` at offset 10 of the new
    topic and the client never saw the new answer's first ten events."""
    async with make_edge() as edge:
        session_id = unique_name("s")
        topic = edge.settings.session_topic(session_id)
        url, token = edge.events_url(session_id), edge.token(session_id)
        async with answered(edge, session_id, create_session_topic, produce) as old:
            await recreate_topic(
                kafka_admin, topic, lambda: create_session_topic(edge.settings, session_id)
            )
            new = answer_events(session_id, "r-new", NEW_TOKENS)
            await produce(edge.settings, session_id, new)
            stale_id = old[-1][0]
            until_new = {"until": "done", "request_id": "r-new"}
            # EventSource reconnecting with the old id, and the chat page's "from the next one".
            for params, headers in [
                (until_new, {"Last-Event-ID": stale_id}),
                ({**until_new, "from": next_position(stale_id)}, {}),
            ]:
                status, received = await raw_events(url, token, params=params, headers=headers)
                assert status == 200, (params, headers)
                assert [offset_of(i) for i, _ in received] == list(range(len(new)))
                assert [data for _, data in received] == [e.model_dump_json() for e in new]
                assert epoch_of(received[0][0]) != epoch_of(stale_id)
                # The new ids resume exactly within the new generation.
                _, rest = await raw_events(
                    url, token, params=until_new, headers={"Last-Event-ID": received[4][0]}
                )
                assert rest == received[5:]


async def test_an_id_of_a_topic_that_is_gone_waits_for_the_next_one_from_its_beginning(
    make_edge: EdgeFactory, unique_name: Callable[..., str], kafka_admin: AIOKafkaAdminClient,
    create_session_topic: CreateSession, produce: Produce,
) -> None:
    async with make_edge() as edge:
        session_id = unique_name("s")
        topic = edge.settings.session_topic(session_id)
        url, token = edge.events_url(session_id), edge.token(session_id)
        async with answered(edge, session_id, create_session_topic, produce) as old:
            await kafka_admin.delete_topics([topic])

            async def gone() -> bool:
                return topic not in await kafka_admin.list_topics()

            await eventually_true(gone)
            # Not 416: the stream is open and waits for the topic's next generation.
            headers = {"Last-Event-ID": old[-1][0]}
            async with SseStream(url, token=token, headers=headers) as stream:
                assert stream.status == 200
                await create_session_topic(edge.settings, session_id)
                new = answer_events(session_id, "r-new", NEW_TOKENS[:2])
                await produce(edge.settings, session_id, new)
                received = await stream.take(len(new))
            if not received:
                # The edge's metadata still named the old generation when the stream opened
                # (deletion reaches it a moment later): the stream is closed when the new one
                # appears, and the client comes back with the same id, as EventSource does.
                async with SseStream(url, token=token, headers=headers) as stream:
                    received = await stream.take(len(new))
        assert [e.id for e in received] == list(range(len(new)))
        assert {e.epoch for e in received} != {epoch_of(old[0][0])}


async def test_a_plain_integer_id_keeps_its_old_meaning(
    edge: Edge, unique_name: Callable[..., str], create_session_topic: CreateSession,
    produce: Produce,
) -> None:
    session_id = unique_name("s")
    await create_session_topic(edge.settings, session_id)
    events = answer_events(session_id, "r-1", OLD_TOKENS)
    await produce(edge.settings, session_id, events)
    url, token = edge.events_url(session_id), edge.token(session_id)
    async with SseStream(url, token=token) as stream:
        everything = await stream.take(len(events))
    async with SseStream(url, token=token, headers={"Last-Event-ID": "3"}) as stream:
        after_three = await stream.take(len(events) - 4)
    async with SseStream(url, token=token, params={"from": "5"}) as stream:
        from_five = await stream.take(len(events) - 5)
    assert after_three == everything[4:] and from_five == everything[5:]
    # The ids sent carry the epoch, all the same within the generation.
    assert len({e.epoch for e in everything}) == 1 and everything[0].epoch is not None
    until = {"until": "done", "request_id": "r-1"}
    async with SseStream(url, token=token, params=until,
                         headers={"Last-Event-ID": str(len(events) - 1)}) as stream:
        assert stream.status == 204
    async with SseStream(url, token=token, headers={"Last-Event-ID": str(len(events))}) as s:
        assert s.status == 416


async def test_a_reconnect_within_one_generation_is_exact(
    edge: Edge, unique_name: Callable[..., str], create_session_topic: CreateSession,
    produce: Produce,
) -> None:
    session_id = unique_name("s")
    await create_session_topic(edge.settings, session_id)
    events = answer_events(session_id, "r-1", OLD_TOKENS)
    url, token = edge.events_url(session_id), edge.token(session_id)
    async with SseStream(url, token=token) as stream:
        await produce(edge.settings, session_id, events[:4])
        head = await stream.take(4)
    await produce(edge.settings, session_id, events[4:])
    async with SseStream(url, token=token, headers={"Last-Event-ID": head[-1].last_event_id}) as s:
        tail = await s.take(len(events) - 4)
    assert [e.id for e in head + tail] == list(range(len(events)))
    assert {e.epoch for e in head + tail} == {head[0].epoch}
    # ?from= takes an id's form too: that offset of that generation.
    async with SseStream(url, token=token, params={"from": tail[2].last_event_id}) as s:
        assert await s.take(len(tail) - 2) == tail[2:]
    until = {"until": "done", "request_id": "r-1"}
    async with SseStream(url, token=token, params=until,
                         headers={"Last-Event-ID": tail[-1].last_event_id}) as s:
        assert s.status == 204
    past_end = f"{head[0].epoch}-{len(events)}"
    async with SseStream(url, token=token, headers={"Last-Event-ID": past_end}) as s:
        assert s.status == 416
    # A malformed id is still a 400.
    for bad in ["zz-3", f"{head[0].epoch}-", f"{head[0].epoch}-x", f"{head[0].epoch[:8]}-3"]:
        async with SseStream(url, token=token, headers={"Last-Event-ID": bad}) as s:
            assert s.status == 400, bad


async def test_the_hub_drops_what_it_cached_of_a_recreated_topic(
    make_edge: EdgeFactory, unique_name: Callable[..., str], kafka_admin: AIOKafkaAdminClient,
    create_session_topic: CreateSession, produce: Produce, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Regression: a hub that followed the topic across its re-creation kept the old
    generation's events cached and served them to new readers as if they were current.

    The hub's own metadata check is pushed out of the test's reach (an hour), so that the
    delete-then-create cannot fall between two checks and be seen as a plain deletion: what
    must notice is the consumer's position falling beyond the new, shorter log.
    """
    monkeypatch.setattr(api.session_hub, "ASSIGNED_RECHECK_S", 3600.0)
    async with make_edge() as edge:
        hub = edge.runtime.hub
        session_id = unique_name("s")
        topic = edge.settings.session_topic(session_id)
        url, token = edge.events_url(session_id), edge.token(session_id)
        await create_session_topic(edge.settings, session_id)
        old = answer_events(session_id, "r-old", OLD_TOKENS)
        async with SseStream(url, token=token) as follower:
            await produce(edge.settings, session_id, old)
            seen_old = await follower.take(len(old))
            await recreate_topic(
                kafka_admin, topic, lambda: create_session_topic(edge.settings, session_id)
            )
            # Shorter than the old generation, so far: the follower's position is past its end.
            new = answer_events(session_id, "r-new", NEW_TOKENS)
            await produce(edge.settings, session_id, new[:3])
            # The follower's stream ends; it would resume with its (now stale) last id.
            assert await follower.rest() == []
            assert follower.closed
        await produce(edge.settings, session_id, new[3:])
        status, received = await raw_events(url, token, count=len(new))
        assert status == 200
        assert [data for _, data in received] == [e.model_dump_json() for e in new]
        assert [offset_of(i) for i, _ in received] == list(range(len(new)))
        assert epoch_of(received[0][0]) != seen_old[0].epoch
        status, resumed = await raw_events(
            url, token, params={"until": "done", "request_id": "r-new"},
            headers={"Last-Event-ID": seen_old[-1].last_event_id},
        )
        assert resumed == received
        await eventually(lambda: topic not in hub.session_topics())
