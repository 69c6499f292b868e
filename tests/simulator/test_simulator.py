"""The simulator against the real openai client and raw HTTP, on a real uvicorn server."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from typing import Any

import httpx
import openai
import pytest

from tokenwire.simulator import (
    DEFAULT_TOKENS,
    DirectiveError,
    expected_text,
    expected_tokens,
    parse_directives,
)
from tokenwire.simulator.script import CallCounter

MODEL = "gpt-4o-mini"
FAST = "tps=100000"  # per-request pacing override; the app itself runs with ttft_ms=0


def conversation(text: str) -> list[dict[str, Any]]:
    """A fresh conversation: the uuid keeps call counters of different tests apart."""
    return [
        {"role": "system", "content": "You are a test."},
        {"role": "user", "content": f"{text} {uuid.uuid4().hex}"},
    ]


async def stream_text(client: openai.AsyncOpenAI, messages: list[dict[str, Any]]) -> str:
    stream = await client.chat.completions.create(model=MODEL, messages=messages, stream=True)
    return "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])


# --- the script (pure) --------------------------------------------------------------------


def test_expected_text_is_deterministic_and_ignores_directives() -> None:
    plain = [{"role": "user", "content": "hello"}]
    directed = [{"role": "user", "content": "hello [[sim: fail=429x2 retry_after=0.2]]"}]
    tokens = expected_tokens(plain)

    assert len(tokens) == DEFAULT_TOKENS
    assert not tokens[0].startswith(" ") and all(t.startswith(" ") for t in tokens[1:])
    assert expected_text(plain) == expected_text(directed) == "".join(tokens)
    assert expected_text(plain, max_tokens=5) == "".join(tokens[:5])
    assert expected_text([{"role": "user", "content": "other"}]) != expected_text(plain)


def test_directives_parse_and_reject_typos() -> None:
    d = parse_directives("x [[sim: fail=429x2 retry_after=0.2]] [[sim: cut_after=3x2, tokens=9]]")

    assert (d.fail_status, d.fail_times, d.retry_after_s) == (429, 2, 0.2)
    assert (d.cut_after, d.cut_times, d.tokens) == (3, 2, 9)
    assert parse_directives("[[sim: fail=400]]").fail_times is None
    for bad in ("[[sim: fial=429]]", "[[sim: fail=200]]", "[[sim: tps=0]]", "[[sim: tokens]]"):
        with pytest.raises(DirectiveError):
            parse_directives(bad)


def test_call_counter_counts_per_key_and_stays_bounded() -> None:
    counter = CallCounter(max_keys=3)

    assert [counter.next("a"), counter.next("a"), counter.next("b")] == [0, 1, 0]
    for key in ("c", "d", "e"):
        counter.next(key)
    assert len(counter) == 3 and counter.next("a") == 0


# --- happy paths through the official client ------------------------------------------------


async def test_stream_with_usage_matches_expected_text(client: openai.AsyncOpenAI) -> None:
    messages = conversation("stream please")
    stream = await client.chat.completions.create(
        model=MODEL, messages=messages, stream=True, stream_options={"include_usage": True}
    )
    chunks = [chunk async for chunk in stream]

    choice_chunks, usage_chunk = chunks[:-1], chunks[-1]
    assert choice_chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in choice_chunks)
    assert text == expected_text(messages)
    assert choice_chunks[-1].choices[0].finish_reason == "stop"
    assert all(c.usage is None for c in choice_chunks)
    assert usage_chunk.choices == [] and usage_chunk.usage is not None
    usage = usage_chunk.usage
    assert usage.completion_tokens == DEFAULT_TOKENS
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens > DEFAULT_TOKENS
    assert len({c.id for c in chunks}) == 1 and chunks[0].id.startswith("chatcmpl-")


async def test_non_stream_matches_expected_text(client: openai.AsyncOpenAI) -> None:
    messages = conversation("whole answer [[sim: tokens=7]]")

    result = await client.chat.completions.create(model=MODEL, messages=messages)

    assert result.object == "chat.completion" and result.model == MODEL
    assert result.choices[0].message.content == expected_text(messages)
    assert len(expected_tokens(messages)) == 7
    assert result.choices[0].finish_reason == "stop"
    assert result.usage is not None and result.usage.completion_tokens == 7


@pytest.mark.parametrize("cap", ["max_tokens", "max_completion_tokens"])
async def test_a_token_cap_ends_with_length(client: openai.AsyncOpenAI, cap: str) -> None:
    messages = conversation("capped")
    stream = await client.chat.completions.create(
        model=MODEL, messages=messages, stream=True, **{cap: 5}
    )
    chunks = [c async for c in stream]

    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert text == expected_text(messages, max_tokens=5)
    assert expected_text(messages).startswith(text) and len(text) < len(expected_text(messages))
    assert chunks[-1].choices[0].finish_reason == "length"


async def test_models_list(client: openai.AsyncOpenAI) -> None:
    models = [m.id async for m in client.models.list()]

    assert MODEL in models
    assert (await client.models.retrieve(MODEL)).id == MODEL


# --- faults --------------------------------------------------------------------------------


async def test_rate_limit_once_then_success(client: openai.AsyncOpenAI) -> None:
    messages = conversation("[[sim: fail=429x1 retry_after=0.2]]")

    with pytest.raises(openai.RateLimitError) as caught:
        await client.chat.completions.create(model=MODEL, messages=messages)

    headers = caught.value.response.headers
    assert headers["retry-after"] == "0.2" and headers["retry-after-ms"] == "200"
    assert caught.value.code == "rate_limit_exceeded" and caught.value.type == "requests"
    assert await stream_text(client, messages) == expected_text(messages)


@pytest.mark.parametrize(
    ("fault", "error"),
    [("fail=500x1", openai.InternalServerError), ("fail=400", openai.BadRequestError)],
)
async def test_server_and_request_errors(
    client: openai.AsyncOpenAI, fault: str, error: type[openai.APIStatusError]
) -> None:
    messages = conversation(f"[[sim: {fault}]]")

    with pytest.raises(error) as caught:
        await client.chat.completions.create(model=MODEL, messages=messages, stream=True)

    body = caught.value.body
    assert isinstance(body, dict) and set(body) == {"message", "type", "param", "code"}


async def test_fail_without_count_fails_every_call(client: openai.AsyncOpenAI) -> None:
    messages = conversation("[[sim: fail=400]]")
    for _ in range(3):
        with pytest.raises(openai.BadRequestError):
            await client.chat.completions.create(model=MODEL, messages=messages)


async def test_a_cut_raises_after_k_tokens_then_the_retry_is_whole(
    client: openai.AsyncOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    messages = conversation("[[sim: cut_after=4]]")
    received: list[str] = []

    stream = await client.chat.completions.create(model=MODEL, messages=messages, stream=True)
    with caplog.at_level(logging.INFO), pytest.raises(openai.APIConnectionError):
        async for chunk in stream:
            received.append(chunk.choices[0].delta.content or "")

    assert "".join(received) == "".join(expected_tokens(messages)[:4])
    assert len([r for r in received if r]) == 4
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert await stream_text(client, messages) == expected_text(messages)


async def test_a_non_streamed_cut_raises_connection_error(client: openai.AsyncOpenAI) -> None:
    messages = conversation("[[sim: cut_after=2]]")

    with pytest.raises(openai.APIConnectionError):
        await client.chat.completions.create(model=MODEL, messages=messages)
    assert (await client.chat.completions.create(model=MODEL, messages=messages)).choices[
        0
    ].message.content == expected_text(messages)


async def test_faults_are_consumed_in_order(client: openai.AsyncOpenAI) -> None:
    messages = conversation("[[sim: fail=503x1 cut_after=2]]")

    with pytest.raises(openai.InternalServerError):
        await stream_text(client, messages)
    with pytest.raises(openai.APIConnectionError):
        await stream_text(client, messages)
    assert await stream_text(client, messages) == expected_text(messages)


async def test_stall_and_ttft_overrides_pace_the_stream(client: openai.AsyncOpenAI) -> None:
    messages = conversation(f"[[sim: ttft_ms=150 stall_after=3 stall_s=0.3 tokens=6 {FAST}]]")
    started = time.monotonic()
    stream = await client.chat.completions.create(model=MODEL, messages=messages, stream=True)
    arrivals: list[float] = []
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            arrivals.append(time.monotonic() - started)

    assert len(arrivals) == 6
    assert arrivals[0] >= 0.14
    assert arrivals[3] - arrivals[2] >= 0.28
    assert arrivals[2] - arrivals[0] < 0.1


# --- raw wire format -----------------------------------------------------------------------


async def test_raw_frames_are_exactly_openai_sse(sim_url: str) -> None:
    messages = conversation("raw")
    body = {
        "model": MODEL,
        "messages": messages,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    async with httpx.AsyncClient(base_url=sim_url) as http:
        response = await http.post("/v1/chat/completions", json=body)

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.text.endswith("\n\n")
    frames = response.text[:-2].split("\n\n")
    assert frames[-1] == "data: [DONE]"
    chunks = [json.loads(f.removeprefix("data: ")) for f in frames[:-1]]
    assert all(f.startswith("data: {") for f in frames[:-1])
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"] == {
        "role": "assistant",
        "content": "",
        "refusal": None,
    }
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] > 0
    assert chunks[-2]["choices"][0] == {
        "index": 0,
        "delta": {},
        "logprobs": None,
        "finish_reason": "stop",
    }
    head = {"id", "object", "created", "model", "system_fingerprint", "choices", "usage"}
    assert all(set(c) == head for c in chunks)
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks[:-1]) == (
        expected_text(messages)
    )


@pytest.mark.parametrize(
    ("payload", "param"),
    [
        (b"{not json", None),
        (json.dumps({"model": MODEL}).encode(), "messages"),
        (json.dumps({"model": MODEL, "messages": []}).encode(), "messages"),
        (
            json.dumps({"model": MODEL, "messages": [{"role": "bot", "content": "x"}]}).encode(),
            "messages[0].role",
        ),
        (
            json.dumps(
                {"model": MODEL, "messages": [{"role": "user", "content": "x"}], "max_tokens": 0}
            ).encode(),
            "max_tokens",
        ),
        (
            json.dumps(
                {"model": MODEL, "messages": [{"role": "user", "content": "[[sim: x=1]]"}]}
            ).encode(),
            "messages",
        ),
    ],
)
async def test_bad_bodies_are_openai_400s(sim_url: str, payload: bytes, param: str | None) -> None:
    async with httpx.AsyncClient(base_url=sim_url) as http:
        response = await http.post(
            "/v1/chat/completions", content=payload, headers={"content-type": "application/json"}
        )

    assert response.status_code == 400
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error" and error["param"] == param


async def test_unknown_routes_and_health(sim_url: str) -> None:
    async with httpx.AsyncClient(base_url=sim_url) as http:
        missing = await http.post("/v1/nope")
        health = await http.get("/healthz")

    assert missing.status_code == 404 and "error" in missing.json()
    assert health.json() == {"status": "ok"}


async def raw_stream(sim_url: str, messages: list[dict[str, Any]]) -> bytes:
    """One streamed completion over a bare socket (httpx would be the bottleneck here)."""
    host, port = sim_url.removeprefix("http://").split(":")
    body = json.dumps({"model": MODEL, "messages": messages, "stream": True}).encode()
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n"
        f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
    )
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(head.encode() + body)
    data = await reader.read()
    writer.close()
    return data


async def test_hundreds_of_concurrent_streams_are_cheap(sim_url: str) -> None:
    conversations = [conversation(f"load {i} [[sim: tokens=30 tps=60]]") for i in range(500)]

    started = time.monotonic()
    replies = await asyncio.gather(*(raw_stream(sim_url, m) for m in conversations))
    elapsed = time.monotonic() - started

    assert all(r.endswith(b"data: [DONE]\n\n\r\n0\r\n\r\n") for r in replies)
    assert all(r.count(b"chat.completion.chunk") == 32 for r in replies)
    assert elapsed < 2.5  # 30 tokens at 60/s: 0.5 s of pacing per stream, all at once
