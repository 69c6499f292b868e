"""``/v1/ui/chat`` over HTTP against a real edge, worker and simulator: what any client of the
endpoints sees (the AI SDK itself reads them in tests/js/ui_chat.test.mjs)."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.fixtures.credentials import caller_jwt
from tests.fixtures.pipeline import WorkerProcess
from tokenwire.simulator import expected_text

TIMEOUT = httpx.Timeout(30.0)


def _auth(user: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {caller_jwt(user)}"}


def _body(chat_id: str, prompt: str, **extra: Any) -> dict[str, Any]:
    message = {"id": "u1", "role": "user", "parts": [{"type": "text", "text": prompt}]}
    return {"id": chat_id, "messages": [message], "trigger": "submit-message", **extra}


async def _chunks(response: httpx.Response) -> AsyncIterator[dict[str, Any] | str]:
    async for line in response.aiter_lines():
        if line.startswith("data: "):
            data = line[6:]
            yield data if data == "[DONE]" else json.loads(data)


async def test_a_caller_without_a_credential_is_refused(edge_url: str) -> None:
    async with httpx.AsyncClient(base_url=edge_url, timeout=TIMEOUT) as client:
        posted = await client.post("/v1/ui/chat", json=_body("c", "hi"))
        resumed = await client.get("/v1/ui/chat/c/stream")
        cancelled = await client.post("/v1/ui/chat/c/cancel")
    assert [posted.status_code, resumed.status_code, cancelled.status_code] == [401, 401, 401]
    assert posted.json()["error"]["code"]


async def test_bad_bodies_are_json_4xx(edge_url: str) -> None:
    headers = _auth(f"ui-bad-{uuid.uuid4().hex[:8]}")
    bodies: list[Any] = [
        {"messages": [{"role": "user", "parts": [{"type": "text", "text": "x"}]}]},  # no id
        {"id": "c", "messages": []},
        {"id": "c", "messages": [{"role": "robot", "parts": []}]},
        {"id": "c", "messages": [{"role": "user", "parts": [{"type": "text", "text": 3}]}]},
        {**_body("c", "x"), "trigger": "resume-everything"},
        {**_body("c", "x"), "surprise": True},
        {"id": "c", "messages": [{"role": "user", "parts": [
            {"type": "file", "mediaType": "application/pdf", "url": "data:,x"}]}]},
        {**_body("c", "x"), "temperature": 9},
        [1, 2],
    ]  # fmt: skip
    async with httpx.AsyncClient(base_url=edge_url, timeout=TIMEOUT, headers=headers) as client:
        answers = [await client.post("/v1/ui/chat", json=body) for body in bodies]
        broken = await client.post(
            "/v1/ui/chat", content=b"{nope", headers={"content-type": "application/json"}
        )
    for answer in [*answers, broken]:
        assert 400 <= answer.status_code < 500, answer.text
        assert answer.json()["error"]["code"] in ("bad_request", "invalid_request")


# Raw bytes: JSON's \\ud800 escape is a lone surrogate once parsed (no client library sends one).
HOSTILE_BODIES = [
    b'{"id":"c","trigger":["submit-message"],"messages":[%s]}',  # unhashable trigger
    b'{"id":"c","trigger":{"a":1},"messages":[%s]}',
    b'{"id":"c","messages":[{"role":["user"],"parts":[]}]}',  # unhashable role
    b'{"id":"c","messages":[%s,{"role":"assistant","parts":[{"type":"tool-f",'
    b'"toolCallId":"t","state":{"s":1},"input":{},"output":1}]}]}',  # unhashable tool state
    b'{"id":"\\ud800","messages":[%s]}',  # a chat id that is not Unicode text
    b'{"id":"c","messages":[%s],"\\ud800":1}',  # an unknown field named so, echoed in the 422
]  # fmt: skip


async def test_hostile_bodies_are_json_4xx_and_no_unhandled_error(
    edge_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    headers = {**_auth(f"ui-hostile-{uuid.uuid4().hex[:8]}"), "content-type": "application/json"}
    message = json.dumps(_body("c", "x")["messages"][0]).encode()
    async with httpx.AsyncClient(base_url=edge_url, timeout=TIMEOUT, headers=headers) as client:
        for raw in HOSTILE_BODIES:
            body = raw.replace(b"%s", message)
            async with client.stream("POST", "/v1/ui/chat", content=body) as answer:
                assert 400 <= answer.status_code < 500, raw  # (a 200 is a stream: not read)
                error = json.loads(await answer.aread())["error"]
            assert error["code"] in ("bad_request", "invalid_request"), raw
        cancel = await client.post("/v1/ui/chat/c/cancel", content=b'{"request_id":"\\ud800"}')
        assert cancel.status_code == 422, cancel.text
    assert not [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


async def test_resume_of_an_idle_or_unknown_chat_is_204(
    worker: WorkerProcess, edge_url: str
) -> None:
    chat_id = f"idle-{uuid.uuid4().hex}"
    prompt = f"a short one {chat_id}"
    async with httpx.AsyncClient(base_url=edge_url, timeout=TIMEOUT, headers=_auth("ui-idle"))\
            as client:
        assert (await client.get(f"/v1/ui/chat/{chat_id}/stream")).status_code == 204
        async with client.stream("POST", "/v1/ui/chat", json=_body(chat_id, prompt)) as response:
            assert response.status_code == 200
            assert response.headers["x-vercel-ai-ui-message-stream"] == "v1"
            assert response.headers["content-type"].startswith("text/event-stream")
            chunks = [chunk async for chunk in _chunks(response)]
        assert (await client.get(f"/v1/ui/chat/{chat_id}/stream")).status_code == 204
        cancel = await client.post(f"/v1/ui/chat/{chat_id}/cancel")
    text = "".join(c["delta"] for c in chunks if isinstance(c, dict) and c["type"] == "text-delta")
    assert text == expected_text([{"role": "user", "content": prompt}])
    assert chunks[-1] == "[DONE]" and chunks[-2] == {"type": "finish", "finishReason": "stop"}
    assert cancel.status_code == 409


async def test_another_users_chat_of_the_same_id_is_another_session(
    worker: WorkerProcess, edge_url: str
) -> None:
    chat_id = f"shared-name-{uuid.uuid4().hex[:8]}"
    owner, other = _auth(f"ui-a-{chat_id}"), _auth(f"ui-b-{chat_id}")
    prompt = f"[[sim: tokens=400 tps=20]] a long one {chat_id}"
    async with httpx.AsyncClient(base_url=edge_url, timeout=TIMEOUT) as client:
        async with client.stream(
            "POST", "/v1/ui/chat", json=_body(chat_id, prompt), headers=owner
        ) as response:
            session_id = response.headers["x-tokenwire-session-id"]
            request_id = response.headers["x-tokenwire-request-id"]
            stream = _chunks(response)
            first = await anext(stream)
            assert first == {"type": "start", "messageId": f"msg-{request_id}"}
            async for chunk in stream:
                if isinstance(chunk, dict) and chunk["type"] == "text-delta":
                    break
            # The other user reaches nothing of it: not the answer, not its cancel.
            assert (await client.get(f"/v1/ui/chat/{chat_id}/stream", headers=other)
                    ).status_code == 204
            assert (await client.post(f"/v1/ui/chat/{chat_id}/cancel", headers=other)
                    ).status_code == 409
            async with client.stream(
                "GET", f"/v1/ui/chat/{chat_id}/stream", headers=owner
            ) as resumed:
                assert resumed.status_code == 200
                again = _chunks(resumed)
                assert await anext(again) == first
                await resumed.aclose()
            stopped = await client.post(f"/v1/ui/chat/{chat_id}/cancel", headers=owner)
            assert stopped.status_code == 202, stopped.text
            assert stopped.json()["request_id"] == request_id
            rest = [chunk async for chunk in stream]
    assert session_id.startswith("ui-")
    assert rest[-3:] == [{"type": "finish-step"}, {"type": "abort"}, "[DONE]"]
