"""POST /v1/chat: authenticated callers, publish to Kafka, session ownership, bad input."""

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
    Produce,
    SseStream,
    answer_events,
)
from tests.fixtures.credentials import caller_jwt
from tests.fixtures.kafka_reading import read_topic


def chat_body(user_id: str = "u-test", **extra: Any) -> dict[str, Any]:
    return {"user_id": user_id, "messages": [{"role": "user", "content": "hi"}], **extra}


async def post(
    edge: Edge, body: Any, *, token: str | None = None, raw: bytes | None = None,
    content_type: str = "application/json", credential: str | None = None, anonymous: bool = False,
) -> httpx.Response:
    """POST as the body's user (a real signed JWT) unless ``credential`` or ``anonymous`` say
    otherwise; ``token`` is the session's write token."""
    headers = {"Content-Type": content_type}
    user = body.get("user_id", "u-test") if isinstance(body, dict) else "u-test"
    if not anonymous:
        headers["Authorization"] = f"Bearer {credential or caller_jwt(user)}"
    if token is not None:
        headers["X-Stream-Token"] = token
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
    session_id, write_token = accepted["session_id"], accepted["write_token"]
    body = chat_body(session_id=session_id)

    follow_up = await post(edge, body, token=write_token)
    assert follow_up.status_code == 202
    assert follow_up.json()["session_id"] == session_id

    cases = [
        (None, 401, "unauthorized"),
        ("forged.token", 401, "unauthorized"),
        (edge.token("s-someone-else", scope="write"), 403, "forbidden"),
        # The read token travels in URLs; it must not authorise posting.
        (accepted["stream_token"], 403, "forbidden"),
    ]
    for bad_token, status, code in cases:
        response = await post(edge, body, token=bad_token)
        assert response.status_code == status, bad_token
        assert response.json()["error"]["code"] == code
    # Another caller holding the owner's write token is still not the owner.
    impostor = await post(edge, {**body, "user_id": "u-other"}, token=write_token)
    assert impostor.status_code == 403
    # And a write token alone, without the caller's own credential, is nobody.
    anonymous = await post(edge, body, token=write_token, anonymous=True)
    assert anonymous.status_code == 401


async def test_the_caller_is_the_user_id(edge: Edge) -> None:
    no_user = await post(
        edge, {"messages": [{"role": "user", "content": "hi"}]}, credential=caller_jwt("u-jwt")
    )
    assert no_user.status_code == 202
    records = await read_topic(edge.settings.kafka_bootstrap, edge.settings.requests_topic)
    mine = [r for r in records if r.key == no_user.json()["session_id"].encode()]
    assert ChatRequest.model_validate_json(mine[0].value).user_id == "u-jwt"

    framed = await post(edge, chat_body("victim"), credential=caller_jwt("attacker"))
    assert framed.status_code == 403
    assert framed.json()["error"]["code"] == "forbidden"


async def test_nobody_is_anonymous(edge: Edge) -> None:
    anonymous = await post(edge, chat_body(), anonymous=True)
    assert anonymous.status_code == 401
    assert anonymous.headers["WWW-Authenticate"].startswith("Bearer")
    assert anonymous.json()["error"]["code"] == "unauthorized"


async def test_a_new_session_with_a_chosen_id_needs_a_write_token_obtained_out_of_band(
    edge: Edge, unique_name: Callable[..., str]
) -> None:
    session_id = unique_name("s")
    body = chat_body(session_id=session_id)
    assert (await post(edge, body)).status_code == 401
    response = await post(edge, body, token=edge.token(session_id, scope="write"))
    assert response.status_code == 202
    assert response.json()["session_id"] == session_id


async def test_bad_input_is_refused_with_json_errors(edge: Edge) -> None:
    malformed = await post(edge, None, raw=b'{"user_id": ')
    assert malformed.status_code == 400
    assert malformed.json()["error"]["code"] == "bad_request"

    wrong_type = await post(edge, chat_body(), content_type="text/plain")
    assert wrong_type.status_code == 400

    invalid = await post(edge, {"messages": [], "temperature": 9, "max_tokens": "many"})
    assert invalid.status_code == 422
    error = invalid.json()["error"]
    assert error["code"] == "invalid_request"
    assert {tuple(d["loc"]) for d in error["details"]} >= {
        ("messages",), ("temperature",), ("max_tokens",),
    }

    bad_session = await post(edge, chat_body(session_id="no_underscores.allowed"))
    assert bad_session.status_code == 422
    assert bad_session.json()["error"]["details"][0]["loc"] == ["session_id"]

    not_an_object = await post(edge, [chat_body()])
    assert not_an_object.status_code == 422

    too_big = await post(edge, None, raw=b'{"x": "' + b"a" * 1_000_000 + b'"}')
    assert too_big.status_code == 413

    # Before: json.loads raised RecursionError and the edge answered 500 with a traceback.
    deep = await post(edge, None, raw=b'{"messages": ' + b"[" * 100_000 + b"]" * 100_000 + b"}")
    assert deep.status_code == 400
    assert deep.json()["error"]["code"] == "bad_request"

    # Found in review: these validate but cannot be serialised; they answered 500, after the
    # session topic had been created, without counting against any quota.
    nested: dict[str, Any] = {}
    for _ in range(500):
        nested = {"k": nested}
    for metadata in ({"deep": nested}, {"lone": "\udc00"}):
        raw = json.dumps(chat_body(metadata=metadata)).encode()
        unserialisable = await post(edge, None, raw=raw)
        assert unserialisable.status_code in (400, 422), unserialisable.text
        assert "error" in unserialisable.json()

    # A newline in a user id would forge log lines; no such identity exists.
    forged = await post(edge, chat_body("alice\nINFO forged"), credential=caller_jwt("alice\nx"))
    assert forged.status_code == 401
    assert (await post(edge, chat_body())).status_code == 202
