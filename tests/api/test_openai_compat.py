"""The official ``openai`` Python client pointed at the edge (``base_url={edge}/v1``, the caller's
JWT as ``api_key``): streaming and not, tool calls, a retry, re-attach, typed errors.

Real worker, real Kafka, the simulator as the provider; its ``expected_*`` say the exact answer.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import openai
import pytest
from openai import AsyncOpenAI, AsyncStream
from openai.types.chat import ChatCompletionChunk

from tests.fixtures.credentials import caller_jwt
from tests.fixtures.pipeline import WorkerProcess
from tokenwire.settings import Settings
from tokenwire.simulator.script import expected_text, expected_tool_calls

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]},
}}  # fmt: skip


def _ask(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": f"{text} {uuid.uuid4().hex}"}]


@pytest.fixture
def user() -> str:
    return f"oa-{uuid.uuid4().hex[:8]}"


@pytest.fixture
async def client(edge_url: str, user: str) -> AsyncIterator[AsyncOpenAI]:
    async with AsyncOpenAI(
        base_url=f"{edge_url}/v1", api_key=caller_jwt(user), max_retries=0, timeout=60
    ) as made:
        yield made


@pytest.fixture
def model(pipeline_settings: Settings) -> str:
    return pipeline_settings.default_model


async def _collect(stream: AsyncStream[ChatCompletionChunk]) -> list[ChatCompletionChunk]:
    return [chunk async for chunk in stream]


def _text(chunks: list[ChatCompletionChunk]) -> str:
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def _reattach(client: AsyncOpenAI, completion_id: str, **headers: str) -> Any:
    return client.get(
        f"/chat/completions/{completion_id}/stream", cast_to=ChatCompletionChunk, stream=True,
        stream_cls=AsyncStream[ChatCompletionChunk], options={"headers": headers},
    )  # fmt: skip


async def test_a_streamed_answer_is_exact_with_its_usage_chunk(
    worker: WorkerProcess, client: AsyncOpenAI, model: str
) -> None:
    messages = _ask("Hello [[sim: tokens=30]]")
    raw = await client.chat.completions.with_raw_response.create(
        model=model, messages=messages, stream=True, stream_options={"include_usage": True},
    )  # fmt: skip
    request_id = raw.headers["x-tokenwire-request-id"]
    assert raw.headers["x-tokenwire-session-id"].startswith("oa-")
    chunks = await _collect(raw.parse())
    assert chunks[0].choices[0].delta.role == "assistant"
    assert _text(chunks) == expected_text(messages)
    assert {c.id for c in chunks} == {f"chatcmpl-{request_id}"}
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 30
    assert all(c.usage is None for c in chunks[:-1])


async def test_a_non_streamed_answer_and_its_retrieval(
    worker: WorkerProcess, client: AsyncOpenAI, model: str
) -> None:
    messages = _ask("Hello [[sim: tokens=12]]")
    done = await client.chat.completions.create(model=model, messages=messages, temperature=0.2)
    assert done.object == "chat.completion" and done.id.startswith("chatcmpl-")
    assert done.choices[0].message.content == expected_text(messages)
    assert done.choices[0].finish_reason == "stop"
    assert done.usage is not None and done.usage.completion_tokens == 12
    again = await client.chat.completions.retrieve(done.id)
    assert again.choices[0].message.content == done.choices[0].message.content
    assert (again.id, again.created, again.model) == (done.id, done.created, done.model)


async def test_tool_calls_streamed_and_not_are_exact(
    worker: WorkerProcess, client: AsyncOpenAI, model: str
) -> None:
    messages = _ask('Weather? [[sim: tool=get_weather args={"city":"Paris"}]]')
    calls = expected_tool_calls(messages)
    done = await client.chat.completions.create(model=model, messages=messages, tools=[WEATHER])
    assert done.choices[0].finish_reason == "tool_calls"
    assert done.choices[0].message.content is None
    assert [c.model_dump() for c in done.choices[0].message.tool_calls or []] == calls

    # Streamed, assembled by the SDK's own helper (ChatCompletionStreamState).
    async with client.chat.completions.stream(
        model=model, messages=messages, tools=[WEATHER]
    ) as stream:
        final = await stream.get_final_completion()
    streamed = final.choices[0].message.tool_calls or []
    assert [{"id": c.id, "type": c.type, "function": {"name": c.function.name,
             "arguments": c.function.arguments}} for c in streamed] == calls  # fmt: skip
    assert final.choices[0].finish_reason == "tool_calls"

    # The tool's answer goes back; the reply is text.
    follow_up = [*messages, {"role": "assistant", "content": None, "tool_calls": calls},
                 {"role": "tool", "tool_call_id": calls[0]["id"], "content": '{"temp_c": 18}'}]
    reply = await client.chat.completions.create(model=model, messages=follow_up, tools=[WEATHER])
    assert reply.choices[0].message.content == expected_text(follow_up)


async def test_a_retry_after_a_cut_gives_the_exact_text(
    worker: WorkerProcess, client: AsyncOpenAI, model: str
) -> None:
    messages = _ask("Cut me [[sim: tokens=40 cut_after=12]]")
    stream = await client.chat.completions.create(model=model, messages=messages, stream=True)
    assert _text(await _collect(stream)) == expected_text(messages)


async def test_reattach_mid_answer_and_after_it_ended(
    worker: WorkerProcess, client: AsyncOpenAI, edge_url: str, user: str, model: str
) -> None:
    messages = _ask("Slow [[sim: tokens=60 tps=30]]")
    expected = expected_text(messages)
    # A client reads a few chunks (with their ids), then leaves.
    headers = {"Authorization": f"Bearer {caller_jwt(user)}"}
    body = {"model": model, "messages": messages, "stream": True}
    seen, last_id = "", None
    async with httpx.AsyncClient(timeout=30) as http, http.stream(
        "POST", f"{edge_url}/v1/chat/completions", json=body, headers=headers
    ) as response:
        assert response.status_code == 200
        completion_id = f"chatcmpl-{response.headers['x-tokenwire-request-id']}"
        event_id = None
        async for line in response.aiter_lines():
            if line.startswith("id: "):
                event_id = line[4:]
            elif line.startswith("data: {"):
                seen += json.loads(line[6:])["choices"][0]["delta"].get("content") or ""
                last_id, event_id = event_id or last_id, None
                if len(seen.split()) >= 5:
                    break
    assert seen and expected.startswith(seen) and last_id is not None

    # Mid-answer, after what it had: exactly the rest, and the answer went on without it.
    rest = await _collect(await _reattach(client, completion_id, **{"Last-Event-ID": last_id}))
    assert seen + _text(rest) == expected
    assert rest[-1].choices[0].finish_reason == "stop"
    # After the end: whole from the start, and from a position (that event on).
    whole = await _collect(await _reattach(client, completion_id))
    assert _text(whole) == expected
    epoch, offset = last_id.rsplit("-", 1)
    tail = await client.get(
        f"/chat/completions/{completion_id}/stream", cast_to=ChatCompletionChunk, stream=True,
        stream_cls=AsyncStream[ChatCompletionChunk],
        options={"params": {"from": f"{epoch}-{int(offset) + 1}", "include_usage": "true"}},
    )  # fmt: skip
    tail_chunks = await _collect(tail)
    assert seen + _text(tail_chunks) == expected
    assert tail_chunks[-1].usage is not None and tail_chunks[-1].choices == []

    # Only for its caller: anyone else is told it does not exist.
    async with AsyncOpenAI(base_url=client.base_url, api_key=caller_jwt("someone-else"),
                           max_retries=0) as other:  # fmt: skip
        with pytest.raises(openai.NotFoundError) as raised:
            await _reattach(other, completion_id)
        assert raised.value.code == "not_found"
        with pytest.raises(openai.NotFoundError):
            await other.chat.completions.retrieve(completion_id)


async def test_errors_are_the_sdks_typed_exceptions(
    worker: WorkerProcess, client: AsyncOpenAI, edge_url: str, model: str
) -> None:
    messages = _ask("Hi")
    async with AsyncOpenAI(base_url=f"{edge_url}/v1", api_key="not-a-key", max_retries=0) as bad:
        with pytest.raises(openai.AuthenticationError) as auth:
            await bad.chat.completions.create(model=model, messages=messages)
    assert auth.value.code == "invalid_api_key"
    assert set(auth.value.body) == {"message", "type", "param", "code"}  # type: ignore[arg-type]

    with pytest.raises(openai.BadRequestError) as n:
        await client.chat.completions.create(model=model, messages=messages, n=2)
    assert (n.value.param, n.value.type) == ("n", "invalid_request_error")
    with pytest.raises(openai.BadRequestError) as unknown:
        await client.chat.completions.create(model=model, messages=messages,
                                             extra_body={"frobnicate": True})
    assert unknown.value.param == "frobnicate"
    with pytest.raises(openai.BadRequestError) as invalid:
        await client.chat.completions.create(
            model=model, messages=[{"role": "robot", "content": "hi"}],  # type: ignore[list-item]
        )
    assert invalid.value.param is not None and invalid.value.param.startswith("messages[0]")

    # The provider refuses once the stream has started: an error in the stream, raised.
    refused = _ask("No [[sim: fail=400]]")
    stream = await client.chat.completions.create(model=model, messages=refused, stream=True)
    with pytest.raises(openai.APIError) as in_stream:
        await _collect(stream)
    assert in_stream.value.code == "http_400"
    with pytest.raises(openai.BadRequestError):
        await client.chat.completions.create(model=model, messages=_ask("No [[sim: fail=400]]"))


async def test_hostile_bodies_are_openai_400s_and_no_unhandled_error(
    edge_url: str, user: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Raw bytes: JSON's \\ud800 escape is a lone surrogate once parsed, and an error that
    echoes the field's name must still be sent (not a 500)."""
    message = b'[{"role":"user","content":"x"}]'
    bodies = [
        b'{"messages":%s,"\\ud800":1}',
        b'{"messages":%s,"stream":true,"stream_options":{"\\ud800":true}}',
    ]
    headers = {"Authorization": f"Bearer {caller_jwt(user)}", "content-type": "application/json"}
    async with httpx.AsyncClient(base_url=edge_url, timeout=30, headers=headers) as http:
        for raw in bodies:
            body = raw.replace(b"%s", message)
            async with http.stream("POST", "/v1/chat/completions", content=body) as answer:
                assert answer.status_code == 400, raw  # (a 200 waits for an answer: not read)
                error = json.loads(await answer.aread())["error"]
            assert error["type"] == "invalid_request_error" and set(error) == {
                "message", "type", "param", "code"}, raw  # fmt: skip
    assert not [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
