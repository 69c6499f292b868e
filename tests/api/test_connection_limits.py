"""Open SSE streams are capped per user (429) and per edge process (503), with Retry-After."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable

import httpx
import pytest

from api.connection_limits import REFUSED_PROCESS, REFUSED_USER, ConnectionLimits
from tests.api.conftest import Edge, EdgeFactory, SseStream, eventually, metric_value


async def refusal(edge: Edge, session_id: str, user_id: str) -> tuple[int, str, str]:
    """(status, error code, Retry-After) of a stream request that is expected to be refused."""
    async with SseStream(edge.events_url(session_id), token=edge.token(session_id, user_id)) as s:
        assert s.source is not None
        response = s.source.response
        if s.status == 200:
            return 200, "", ""
        await response.aread()
        return s.status, response.json()["error"]["code"], response.headers.get("retry-after", "")


def refused(edge: Edge, reason: str) -> float:
    return metric_value(edge, "tokenwire_edge_sse_refused_total", {"reason": reason})


async def test_streams_beyond_the_user_and_process_caps_are_refused_until_one_ends(
    make_edge: EdgeFactory, unique_name: Callable[..., str]
) -> None:
    async with make_edge(sse_max_connections_per_user=2, sse_max_connections=3) as edge:
        limits = edge.runtime.connections
        sessions = [unique_name("s") for _ in range(3)]
        async with contextlib.AsyncExitStack() as stack:
            first = await stack.enter_async_context(
                SseStream(edge.events_url(sessions[0]), token=edge.token(sessions[0], "u1"))
            )
            second = await stack.enter_async_context(
                SseStream(edge.events_url(sessions[1]), token=edge.token(sessions[1], "u1"))
            )
            assert (first.status, second.status) == (200, 200)
            assert await refusal(edge, sessions[2], "u1") == (429, "too_many_streams", "5")
            other = await stack.enter_async_context(
                SseStream(edge.events_url(sessions[2]), token=edge.token(sessions[2], "u2"))
            )
            assert other.status == 200 and limits.total == 3
            assert await refusal(edge, sessions[2], "u3") == (503, "edge_full", "5")
            assert refused(edge, REFUSED_USER) == 1 and refused(edge, REFUSED_PROCESS) == 1
            await first.__aexit__(None, None, None)
            await eventually(lambda: limits.held_by("u1") == 1)
            async with SseStream(
                edge.events_url(sessions[0]), token=edge.token(sessions[0], "u1")
            ) as again:
                assert again.status == 200
        await eventually(lambda: limits.total == 0)


async def test_answers_that_never_stream_give_their_slot_back(
    make_edge: EdgeFactory, unique_name: Callable[..., str]
) -> None:
    async with make_edge(sse_max_connections_per_user=1) as edge:
        session_id = unique_name("s")
        url, token = edge.events_url(session_id), edge.token(session_id, "u1")
        for _ in range(3):
            async with httpx.AsyncClient(timeout=10) as client:
                head = await client.head(url, params={"token": token})
            assert head.status_code == 200
            async with SseStream(url, token=token, params={"from": "7"}) as past_end:
                assert past_end.status == 416
        await eventually(lambda: edge.runtime.connections.total == 0)
        async with SseStream(url, token=token) as stream:
            assert stream.status == 200


async def test_a_refused_user_id_cannot_forge_log_lines(
    make_edge: EdgeFactory, unique_name: Callable[..., str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="api.session_stream")
    evil = "u-evil\nERROR forged=line\r\x1b[2K"
    async with make_edge(sse_max_connections_per_user=1) as edge:
        session_id = unique_name("s")
        url = edge.events_url(session_id)
        async with SseStream(url, token=edge.token(session_id, evil)) as held:
            assert held.status == 200
            assert (await refusal(edge, session_id, evil))[0] == 429
    lines = [r.getMessage() for r in caplog.records if r.name == "api.session_stream"]
    refusals = [line for line in lines if "refused" in line]
    assert len(refusals) == 1 and "forged=line" in refusals[0]
    assert not any(ch in line for line in lines for ch in "\n\r\x1b")


def test_an_identity_may_have_its_own_cap() -> None:
    limits = ConnectionLimits(max_total=10, max_per_identity=1)
    held = limits.acquire("svc", limit=3)
    assert not isinstance(held, str)
    assert not isinstance(limits.acquire("svc", limit=3), str)
    assert not isinstance(limits.acquire("svc", limit=3), str)
    assert limits.acquire("svc", limit=3) == REFUSED_USER
    held.release()
    held.release()  # idempotent
    assert limits.held_by("svc") == 2 and limits.total == 2
