"""POST /v1/chat: publish to Kafka, session ownership, bad input, rate limiting."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import httpx

from api.stream_tokens import verify_token
from schemas.requests import ChatRequest
from tests.api.conftest import (
    Edge,
    EdgeFactory,
    Produce,
    SseStream,
    answer_events,
    metric_value,
)
from tests.fixtures.kafka_reading import read_topic


def chat_body(user_id: str = "u-test", **extra: Any) -> dict[str, Any]:
    return {"user_id": user_id, "messages": [{"role": "user", "content": "hi"}], **extra}


async def post(
    edge: Edge, body: Any, *, token: str | None = None, raw: bytes | None = None,
    content_type: str = "application/json",
) -> httpx.Response:
    headers = {"Content-Type": content_type}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    content = raw if raw is not None else json.dumps(body).encode()
    async with httpx.AsyncClient(timeout=30) as client:
        return await client.post(f"{edge.url}/v1/chat", content=content, headers=headers)


async def test_a_new_chat_is_published_and_its_answer_streams_back(
    edge: Edge, produce: Produce
) -> None:
    response = await post(edge, chat_body(temperature=0.5, metadata={"k": "v"}))
    assert response.status_code == 202
    accepted = response.json()
    session_id, request_id = accepted["session_id"], accepted["request_id"]
    assert re.fullmatch(r"[0-9a-f]{32}", session_id) and re.fullmatch(r"[0-9a-f]{32}", request_id)
    assert accepted["events_url"] == f"/v1/sessions/{session_id}/events"
    claims = verify_token(edge.settings, accepted["stream_token"], session_id=session_id)
    assert claims.user_id == "u-test"

    records = await read_topic(edge.settings.kafka_bootstrap, edge.settings.requests_topic)
    mine = [r for r in records if r.key == session_id.encode()]
    assert len(mine) == 1
    published = ChatRequest.model_validate_json(mine[0].value)
    assert (published.request_id, published.session_id, published.user_id) == (
        request_id, session_id, "u-test",
    )
    assert published.model == edge.settings.default_model
    assert published.temperature == 0.5 and published.metadata == {"k": "v"}

    # The session topic exists already: the answer can be streamed at once.
    events = answer_events(session_id, request_id, ["Hel", "lo"])
    params = {"until": "done", "request_id": request_id}
    async with SseStream(
        edge.url + accepted["events_url"], token=accepted["stream_token"], params=params
    ) as stream:
        await produce(edge.settings, session_id, events)
        received = await stream.rest()
    assert [e.event for e in received] == ["start", "token", "token", "done"]
    assert [e.id for e in received] == [0, 1, 2, 3]


async def test_only_the_session_owner_can_continue_a_session(edge: Edge) -> None:
    accepted = (await post(edge, chat_body())).json()
    session_id, token = accepted["session_id"], accepted["stream_token"]
    body = chat_body(session_id=session_id)

    follow_up = await post(edge, body, token=token)
    assert follow_up.status_code == 202
    assert follow_up.json()["session_id"] == session_id

    cases = [
        (None, 401, "unauthorized"),
        ("forged.token", 401, "unauthorized"),
        (edge.token("s-someone-else"), 403, "forbidden"),
    ]
    for bad_token, status, code in cases:
        response = await post(edge, body, token=bad_token)
        assert response.status_code == status
        assert response.json()["error"]["code"] == code
    impostor = await post(edge, chat_body("u-other", session_id=session_id), token=token)
    assert impostor.status_code == 403
    assert "user_id" in impostor.json()["error"]["message"]


async def test_a_new_session_with_a_chosen_id_needs_a_token_obtained_out_of_band(
    edge: Edge, unique_name: Callable[..., str]
) -> None:
    session_id = unique_name("s")
    body = chat_body(session_id=session_id)
    assert (await post(edge, body)).status_code == 401
    response = await post(edge, body, token=edge.token(session_id))
    assert response.status_code == 202
    assert response.json()["session_id"] == session_id


async def test_bad_input_is_refused_with_json_errors(edge: Edge) -> None:
    malformed = await post(edge, None, raw=b'{"user_id": ')
    assert malformed.status_code == 400
    assert malformed.json()["error"]["code"] == "bad_request"

    wrong_type = await post(edge, chat_body(), content_type="text/plain")
    assert wrong_type.status_code == 400

    invalid = await post(edge, {"user_id": "", "messages": [], "temperature": 9})
    assert invalid.status_code == 422
    error = invalid.json()["error"]
    assert error["code"] == "invalid_request"
    assert {tuple(d["loc"]) for d in error["details"]} >= {
        ("user_id",), ("messages",), ("temperature",),
    }

    bad_session = await post(edge, chat_body(session_id="no_underscores.allowed"))
    assert bad_session.status_code == 422
    assert bad_session.json()["error"]["details"][0]["loc"] == ["session_id"]

    not_an_object = await post(edge, [chat_body()])
    assert not_an_object.status_code == 422

    too_big = await post(edge, None, raw=b'{"x": "' + b"a" * 1_000_000 + b'"}')
    assert too_big.status_code == 413
    assert (await post(edge, chat_body())).status_code == 202


async def test_rate_limit_answers_429_with_retry_after_and_the_edge_keeps_serving(
    make_edge: EdgeFactory,
) -> None:
    async with make_edge(rate_limit_per_s=0.1, rate_limit_burst=2) as edge:
        statuses = [(await post(edge, chat_body("u-busy"))).status_code for _ in range(2)]
        limited = await post(edge, chat_body("u-busy"))
        other_user = await post(edge, chat_body("u-calm"))
        async with httpx.AsyncClient(timeout=10) as client:
            health = await client.get(f"{edge.url}/healthz")
        outcome = {"outcome": "rate_limited"}
        rate_limited_total = metric_value(edge, "tokenwire_edge_rate_limited_total")
        outcome_total = metric_value(edge, "tokenwire_edge_requests_total", outcome)
    assert statuses == [202, 202]
    assert limited.status_code == 429
    assert int(limited.headers["Retry-After"]) >= 1
    assert limited.json()["error"]["code"] == "rate_limited"
    assert other_user.status_code == 202 and health.status_code == 200
    assert rate_limited_total == 1 and outcome_total == 1
