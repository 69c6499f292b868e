"""Health, readiness, metrics, CORS and the chat page."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from tests.api.conftest import (
    CreateSession,
    Edge,
    EdgeFactory,
    Produce,
    SseStream,
    answer_events,
)
from tests.fixtures.credentials import caller_headers


async def get(url: str, **kwargs: object) -> httpx.Response:
    async with httpx.AsyncClient(timeout=10) as client:
        return await client.get(url, **kwargs)  # type: ignore[arg-type]


async def test_healthz_and_readyz(edge: Edge) -> None:
    health = await get(f"{edge.url}/healthz")
    assert (health.status_code, health.json()) == (200, {"status": "ok"})
    ready = await get(f"{edge.url}/readyz")
    assert ready.status_code == 200
    assert ready.json() == {
        "status": "ready",
        "checks": {"session_hub": "ok", "kafka": "ok", "requests_topic": "ok"},
    }


async def test_readyz_is_503_while_the_requests_topic_is_missing(make_edge: EdgeFactory) -> None:
    async with make_edge(core_topics=False) as edge:
        ready = await get(f"{edge.url}/readyz")
        health = await get(f"{edge.url}/healthz")
    assert ready.status_code == 503
    assert ready.json()["checks"]["requests_topic"] == "missing"
    assert health.status_code == 200


def sample(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not exposed")


async def test_metrics_move_with_traffic(
    make_edge: EdgeFactory, unique_name: Callable[..., str],
    create_session_topic: CreateSession, produce: Produce,
) -> None:
    async with make_edge() as edge:
        before = (await get(f"{edge.url}/metrics")).text
        async with httpx.AsyncClient(timeout=10) as client:
            body = {"user_id": "u", "messages": [{"role": "user", "content": "hi"}]}
            headers = caller_headers("u")
            posted = await client.post(f"{edge.url}/v1/chat", json=body, headers=headers)
            assert posted.status_code == 202
        session_id = unique_name("s")
        await create_session_topic(edge.settings, session_id)
        await produce(edge.settings, session_id, answer_events(session_id, "r", ["a"]))
        async with SseStream(edge.events_url(session_id), token=edge.token(session_id)) as s:
            await s.take(3)
            during = (await get(f"{edge.url}/metrics")).text
        after = await get(f"{edge.url}/metrics")
    accepted = 'tokenwire_edge_requests_total{outcome="accepted"}'
    assert sample(before, accepted) == 0 and sample(after.text, accepted) == 1
    assert sample(during, "tokenwire_edge_sse_connections") == 1
    assert sample(after.text, "tokenwire_edge_sse_events_total") == 3
    assert sample(after.text, "tokenwire_edge_slow_client_closes_total") == 0
    refused = 'tokenwire_edge_quota_refusals_total{reason="requests_per_minute"}'
    assert sample(after.text, refused) == 0
    assert after.headers["content-type"].startswith("text/plain")
    assert session_id not in after.text


async def test_the_chat_page_is_served_with_stable_hooks(edge: Edge) -> None:
    page = await get(f"{edge.url}/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    # The page streams through tokenwire.js (clients/js), which posts /v1/chat itself.
    for hook in ['id="prompt"', 'id="send"', '"answer"', "data-state", "/static/tokenwire.js"]:
        assert hook in page.text


async def test_unknown_routes_answer_json(edge: Edge) -> None:
    missing = await get(f"{edge.url}/nope")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"
    async with httpx.AsyncClient(timeout=10) as client:
        wrong_method = await client.delete(f"{edge.url}/v1/chat")
    assert wrong_method.status_code == 405


async def test_cors_allows_the_configured_origins_only(make_edge: EdgeFactory) -> None:
    async with make_edge(cors_origins=["https://chat.example"]) as edge:
        preflight = {
            "Origin": "https://chat.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type",
        }
        async with httpx.AsyncClient(timeout=10) as client:
            allowed = await client.options(f"{edge.url}/v1/chat", headers=preflight)
            refused = await client.options(
                f"{edge.url}/v1/chat", headers={**preflight, "Origin": "https://evil.example"}
            )
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "https://chat.example"
    assert refused.status_code == 400
