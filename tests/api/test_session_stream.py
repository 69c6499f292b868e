"""SSE streams of session events: order, offsets as ids, exact resume, until=done, auth."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable

import httpx

from api.stream_tokens import issue_token
from tests.api.conftest import (
    CreateSession,
    Edge,
    EdgeFactory,
    Produce,
    Sse,
    SseStream,
    answer_events,
    metric_value,
)

TOKENS = [f"tok{i} " for i in range(8)]


async def answered_session(
    edge: Edge, unique_name: Callable[..., str], create: CreateSession, produce: Produce,
    *, request_id: str = "r-1",
) -> tuple[str, list[int], list[str]]:
    """A session holding one finished answer: (session id, offsets, raw JSON values)."""
    session_id = unique_name("s")
    await create(edge.settings, session_id)
    events = answer_events(session_id, request_id, TOKENS)
    offsets = await produce(edge.settings, session_id, events)
    return session_id, offsets, [event.model_dump_json() for event in events]


def ids(events: list[Sse]) -> list[int]:
    return [event.id for event in events]


async def test_events_stream_in_order_with_offsets_as_ids_and_data_as_stored(
    edge: Edge, unique_name: Callable[..., str], create_session_topic: CreateSession,
    produce: Produce,
) -> None:
    session_id = unique_name("s")
    await create_session_topic(edge.settings, session_id)
    events = answer_events(session_id, "r-1", TOKENS)
    async with SseStream(edge.events_url(session_id), token=edge.token(session_id)) as stream:
        offsets = await produce(edge.settings, session_id, events[:3])
        first = await stream.take(3)
        offsets += await produce(edge.settings, session_id, events[3:])
        rest = await stream.take(len(events) - 3)
    received = first + rest
    assert ids(received) == offsets == list(range(len(events)))
    assert [e.event for e in received] == ["start"] + ["token"] * len(TOKENS) + ["done"]
    assert [e.data for e in received] == [event.model_dump_json() for event in events]
    assert stream.retry == edge.settings.sse_retry_ms
    assert stream.source is not None
    assert stream.source.response.headers["content-type"].startswith("text/event-stream")


async def test_resume_with_last_event_id_yields_exactly_the_rest(
    edge: Edge, unique_name: Callable[..., str], create_session_topic: CreateSession,
    produce: Produce,
) -> None:
    session_id, offsets, _ = await answered_session(
        edge, unique_name, create_session_topic, produce
    )
    url, token = edge.events_url(session_id), edge.token(session_id)
    async with SseStream(url, token=token) as stream:
        head = await stream.take(4)
    headers = {"Last-Event-ID": str(head[-1].id)}
    async with SseStream(url, token=token, headers=headers) as stream:
        tail = await stream.take(len(offsets) - 4)
    assert ids(head + tail) == offsets


async def test_from_starts_at_the_given_offset(
    edge: Edge, unique_name: Callable[..., str], create_session_topic: CreateSession,
    produce: Produce,
) -> None:
    session_id, offsets, _ = await answered_session(
        edge, unique_name, create_session_topic, produce
    )
    url = edge.events_url(session_id)
    async with SseStream(url, token=edge.token(session_id), params={"from": "5"}) as stream:
        received = await stream.take(len(offsets) - 5)
    assert ids(received) == offsets[5:]


async def test_two_clients_and_a_late_client_see_the_same_sequence(
    edge: Edge, unique_name: Callable[..., str], create_session_topic: CreateSession,
    produce: Produce,
) -> None:
    session_id = unique_name("s")
    await create_session_topic(edge.settings, session_id)
    url, token = edge.events_url(session_id), edge.token(session_id)
    events = answer_events(session_id, "r-1", TOKENS)
    async with SseStream(url, token=token) as one, SseStream(url, token=token) as two:
        await produce(edge.settings, session_id, events)
        seen_one, seen_two = await asyncio.gather(
            one.take(len(events)), two.take(len(events))
        )
    async with SseStream(url, token=token) as late:
        seen_late = await late.take(len(events))
    assert seen_one == seen_two == seen_late
    assert ids(seen_late) == list(range(len(events)))


async def test_until_done_ends_after_the_terminal_event_and_a_reconnect_gets_204(
    edge: Edge, make_edge: EdgeFactory, unique_name: Callable[..., str],
    create_session_topic: CreateSession, produce: Produce,
) -> None:
    session_id = unique_name("s")
    await create_session_topic(edge.settings, session_id)
    first = answer_events(session_id, "r-1", TOKENS[:2])
    second = answer_events(session_id, "r-2", TOKENS[:3], terminal="error")
    await produce(edge.settings, session_id, first + second)
    url, token = edge.events_url(session_id), edge.token(session_id)
    params = {"until": "done", "request_id": "r-1"}
    async with SseStream(url, token=token, params=params) as stream:
        received = await stream.rest()
    assert stream.closed
    assert ids(received) == list(range(len(first)))
    assert received[-1].event == "done"
    last_id = {"Last-Event-ID": str(received[-1].id)}
    async with SseStream(url, token=token, params=params, headers=last_id) as stream:
        assert stream.status == 204
    after_done = {**params, "from": str(received[-1].id + 1)}
    async with SseStream(url, token=token, params=after_done) as stream:
        assert stream.status == 204
    # An edge that never saw the session finds the terminal event by reading the topic.
    async with make_edge() as fresh, SseStream(
        fresh.events_url(session_id), token=token, params=params, headers=last_id
    ) as stream:
        assert stream.status == 204
    # A request that never ended, from the last event there is: stream, don't hang.
    unknown = {"until": "done", "request_id": "r-never"}
    at_end = {"Last-Event-ID": str(len(first) + len(second) - 1)}
    async with SseStream(url, token=token, params=unknown, headers=at_end) as s:
        assert s.status == 200
    # Not finished from this client's position: stream on to r-2's terminal error event.
    params = {"until": "done", "request_id": "r-2"}
    async with SseStream(url, token=token, params=params, headers=last_id) as stream:
        received = await stream.rest()
    assert ids(received) == list(range(len(first), len(first) + len(second)))
    assert received[-1].event == "error" and json.loads(received[-1].data)["code"] == "upstream"


async def test_a_stream_waits_for_a_session_topic_that_does_not_exist_yet(
    edge: Edge, unique_name: Callable[..., str], create_session_topic: CreateSession,
    produce: Produce,
) -> None:
    session_id = unique_name("s")
    events = answer_events(session_id, "r-1", TOKENS[:2])
    async with SseStream(edge.events_url(session_id), token=edge.token(session_id)) as stream:
        assert stream.status == 200
        await create_session_topic(edge.settings, session_id)
        await produce(edge.settings, session_id, events)
        received = await stream.take(len(events))
    assert ids(received) == list(range(len(events)))


async def test_auth_failures_are_json_401_or_403(edge: Edge) -> None:
    url = edge.events_url("s-auth")
    cases = [
        ({}, {}, 401),
        ({"token": "not-a-token"}, {}, 401),
        ({}, {"Authorization": "Bearer not-a-token"}, 401),
        ({}, {"Authorization": "Basic dTpw"}, 401),
        ({"token": edge.token("s-other")}, {}, 403),
        ({}, {"Authorization": f"Bearer {edge.token('s-other')}"}, 403),
    ]
    async with httpx.AsyncClient(timeout=10) as client:
        for params, headers, status in cases:
            response = await client.get(url, params=params, headers=headers)
            assert response.status_code == status, (params, headers)
            assert response.json()["error"]["code"] in {"unauthorized", "forbidden"}


async def test_bad_stream_parameters_are_json_400(edge: Edge) -> None:
    token = edge.token("s-ok")
    async with httpx.AsyncClient(timeout=10) as client:
        for path_id in ["bad_id", "a.b", "x" * 65]:
            response = await client.get(edge.events_url(path_id), params={"token": token})
            assert response.status_code == 400
            assert response.json()["error"]["code"] == "invalid_session_id"
        for params, headers in [
            ({"from": "-1"}, {}),
            ({"from": "abc"}, {}),
            ({}, {"Last-Event-ID": "x"}),
            ({"until": "done"}, {}),
            ({"until": "later", "request_id": "r"}, {}),
        ]:
            response = await client.get(
                edge.events_url("s-ok"), params={"token": token, **params}, headers=headers
            )
            assert response.status_code == 400, (params, headers)
            assert response.json()["error"]["code"] == "bad_request"


async def test_head_answers_headers_without_opening_a_stream(
    edge: Edge, unique_name: Callable[..., str]
) -> None:
    session_id = unique_name("s")
    async with httpx.AsyncClient(timeout=5) as client:
        response = await client.head(
            edge.events_url(session_id), params={"token": edge.token(session_id)}
        )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert edge.settings.session_topic(session_id) not in edge.runtime.hub.session_topics()


async def test_the_stream_opens_with_retry_and_pings_while_waiting(
    make_edge: EdgeFactory, unique_name: Callable[..., str]
) -> None:
    async with make_edge(sse_ping_s=0.2, sse_retry_ms=1234) as edge:
        session_id = unique_name("s")  # no topic: the stream waits for it, pinging
        lines: list[str] = []
        async with httpx.AsyncClient(timeout=5) as client, client.stream(
            "GET", edge.events_url(session_id), params={"token": edge.token(session_id)}
        ) as response:

            async def until_ping() -> None:
                async for line in response.aiter_lines():
                    lines.append(line)
                    if line.startswith(":"):
                        return

            await asyncio.wait_for(until_ping(), 5)
    assert lines[0] == "retry: 1234"
    assert lines[-1].startswith(": ping")


async def open_status(
    url: str, token: str, *, params: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, object] | None]:
    """The status of a stream request, and its JSON body when it is not a stream."""
    async with SseStream(url, token=token, params=params, headers=headers) as stream:
        assert stream.source is not None
        if stream.status == 200:
            return 200, None
        await stream.source.response.aread()
        return stream.status, stream.source.response.json()


async def test_a_resume_position_past_the_end_is_416_and_the_edge_streams_on(
    make_edge: EdgeFactory, unique_name: Callable[..., str],
    create_session_topic: CreateSession, produce: Produce,
) -> None:
    async with make_edge() as edge:
        session_id, offsets, _ = await answered_session(
            edge, unique_name, create_session_topic, produce
        )
        end = len(offsets)
        bystander_id = unique_name("s")
        await create_session_topic(edge.settings, bystander_id)
        url, token = edge.events_url(session_id), edge.token(session_id)
        until_r2 = {"until": "done", "request_id": "r-2"}
        async with SseStream(
            edge.events_url(bystander_id), token=edge.token(bystander_id, "u-other"),
            params=until_r2,
        ) as bystander:
            # Issue #11: this one request used to kill the consumer every stream shares.
            for params, headers in [
                ({}, {"Last-Event-ID": str(2**63 - 1)}),
                ({}, {"Last-Event-ID": str(end)}),
                ({"from": str(end + 1)}, {}),
            ]:
                status, body = await open_status(url, token, params=params, headers=headers)
                assert status == 416 and body is not None, (params, headers)
                assert body["error"]["code"] == "position_out_of_range"
                assert body["error"]["details"] == {"next_offset": end}
            missing = unique_name("s")
            status, body = await open_status(
                edge.events_url(missing), edge.token(missing), params={"from": "1"}
            )
            assert status == 416 and body is not None
            assert body["error"] == {
                "code": "position_out_of_range",
                "message": "resume position 1 is past the end of the session (0)",
                "details": {"next_offset": 0},
            }
            # The last id the edge sent, and "from the end": the live tail, always accepted.
            last_sent = {"Last-Event-ID": str(end - 1)}
            assert (await open_status(url, token, headers=last_sent))[0] == 200
            assert (await open_status(url, token, params={"from": str(end)}))[0] == 200
            events = answer_events(bystander_id, "r-2", TOKENS[:2])
            await produce(edge.settings, bystander_id, events)
            received = await bystander.rest()
        assert ids(received) == list(range(len(events)))
        refused = {"reason": "position_out_of_range"}
        assert metric_value(edge, "tokenwire_edge_sse_refused_total", refused) == 4


async def test_a_stream_ends_when_its_token_expires(
    edge: Edge, unique_name: Callable[..., str], create_session_topic: CreateSession,
    produce: Produce,
) -> None:
    """Found in review: an open stream outlived its token, so a leaked ``?token=`` kept reading
    every later event of the session."""
    session_id = unique_name("s")
    await create_session_topic(edge.settings, session_id)
    short = issue_token(edge.settings, session_id=session_id, user_id="u-test",
                        not_after=time.time() + 1)
    async with SseStream(edge.events_url(session_id), token=short) as stream:
        assert stream.status == 200
        await produce(edge.settings, session_id, answer_events(session_id, "r-1", TOKENS[:1]))
        received = await stream.rest()
    # It ends by itself (rest() returns) with what was produced while the token was good.
    assert [e.event for e in received] == ["start", "token", "done"]
