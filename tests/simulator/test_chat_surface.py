"""The whole chat surface of the simulator (tools, refusal, reasoning, logprobs, structured
output, content parts, early-close record) through the real openai client."""

from __future__ import annotations

import json
import re
import time
import uuid
from typing import Any

import httpx
import openai
import pydantic
import pytest
from openai.types.chat import ChatCompletionChunk

from tests.fixtures.waiting import eventually_true
from tokenwire.simulator import (
    REFUSAL_TEXT,
    DirectiveError,
    expected_reasoning,
    expected_refusal,
    expected_text,
    expected_tokens,
    expected_tool_calls,
    parse_directives,
)
from tokenwire.simulator.script import IMAGE_TOKENS_HIGH, IMAGE_TOKENS_LOW

MODEL = "gpt-4o-mini"
WEATHER = 'tool=get_weather args={"city": "Paris", "unit": "c"}'
PARALLEL = f'{WEATHER} tool=get_time args={{"tz":"Europe/Paris"}}'
TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": name,
            "description": f"{name} for a place",
            "parameters": {"type": "object", "properties": {}},
        },
    }
    for name in ("get_weather", "get_time")
]


def conversation(text: str) -> list[dict[str, Any]]:
    """A fresh conversation: the uuid keeps call counters of different tests apart."""
    return [
        {"role": "system", "content": "You are a test."},
        {"role": "user", "content": f"{uuid.uuid4().hex} {text}"},
    ]


async def chunks_of(client: openai.AsyncOpenAI, **kwargs: Any) -> list[ChatCompletionChunk]:
    stream = await client.chat.completions.create(model=MODEL, stream=True, **kwargs)
    return [chunk async for chunk in stream]


def wire_calls(calls: Any) -> list[dict[str, Any]]:
    """Typed tool calls of the SDK as the plain dicts ``expected_tool_calls`` returns."""
    return [
        {
            "id": call.id,
            "type": call.type,
            "function": {"name": call.function.name, "arguments": call.function.arguments},
        }
        for call in calls or ()
    ]


# --- the script (pure) --------------------------------------------------------------------


def test_tool_directives_take_json_objects_in_order() -> None:
    d = parse_directives(f"[[sim: {PARALLEL}, tool=ping reasoning=2 refusal=0]]")

    assert [(t.name, json.loads(t.arguments)) for t in d.tools] == [
        ("get_weather", {"city": "Paris", "unit": "c"}),
        ("get_time", {"tz": "Europe/Paris"}),
        ("ping", {}),
    ]
    assert (d.reasoning, d.refusal) == (2, False)
    assert parse_directives('[[sim: tool=t args={"x": "a]]b"}]]').tools[0].arguments == (
        '{"x":"a]]b"}'
    )
    for bad in (
        "[[sim: args={}]]",
        "[[sim: tool=t args=[1]]]",
        "[[sim: tool=t args={nope}]]",
        "[[sim: tool=bad.name]]",
        "[[sim: refusal=maybe]]",
    ):
        with pytest.raises(DirectiveError):
            parse_directives(bad)


def test_expected_outputs_follow_the_conversation() -> None:
    messages = conversation(f"[[sim: {PARALLEL}]]")
    calls = expected_tool_calls(messages)

    assert [c["function"]["name"] for c in calls] == ["get_weather", "get_time"]
    assert all(re.fullmatch(r"call_[0-9A-Za-z]{24}", c["id"]) for c in calls)
    assert calls == expected_tool_calls(messages) and calls[0]["id"] != calls[1]["id"]
    assert expected_text(messages) == "" and expected_refusal(messages) is None
    answered = [
        *messages,
        {"role": "assistant", "content": None, "tool_calls": calls},
        *({"role": "tool", "tool_call_id": c["id"], "content": "18C"} for c in calls),
    ]
    assert expected_tool_calls(answered) == []
    assert expected_text(answered) not in ("", expected_text(conversation("x")))
    assert expected_refusal(conversation("[[sim: refusal=1]]")) == REFUSAL_TEXT
    reasoning = expected_reasoning(conversation("[[sim: reasoning=5]]"))
    assert len(reasoning.split()) == 5 and expected_reasoning(messages) == ""


# --- tool calls ----------------------------------------------------------------------------


async def test_a_streamed_tool_call_is_shaped_like_openai(client: openai.AsyncOpenAI) -> None:
    messages = conversation(f"[[sim: {WEATHER}]]")
    chunks = await chunks_of(
        client, messages=messages, tools=TOOLS, stream_options={"include_usage": True}
    )

    first = chunks[0].choices[0].delta
    assert first.role == "assistant" and first.content is None and first.tool_calls
    (opening,) = first.tool_calls
    expected = expected_tool_calls(messages)[0]
    assert (opening.index, opening.id, opening.type) == (0, expected["id"], "function")
    assert opening.function and opening.function.name == "get_weather"
    assert opening.function.arguments == ""
    fragments = [c.choices[0].delta.tool_calls for c in chunks[1:-2]]
    assert len(fragments) > 3 and all(f and len(f) == 1 for f in fragments)
    assert all(f[0].index == 0 and f[0].id is None and f[0].function for f in fragments)
    arguments = "".join(f[0].function.arguments or "" for f in fragments)
    assert json.loads(arguments) == {"city": "Paris", "unit": "c"}
    assert chunks[-2].choices[0].finish_reason == "tool_calls"
    usage = chunks[-1].usage
    assert usage is not None and usage.completion_tokens == len(fragments)


async def test_the_sdk_accumulator_assembles_parallel_tool_calls(
    client: openai.AsyncOpenAI,
) -> None:
    messages = conversation(f"[[sim: {PARALLEL}]]")

    async with client.chat.completions.stream(
        model=MODEL,
        messages=messages,
        tools=TOOLS,
    ) as stream:
        events = [event.type async for event in stream]
        final = await stream.get_final_completion()

    assert wire_calls(final.choices[0].message.tool_calls) == expected_tool_calls(messages)
    assert final.choices[0].finish_reason == "tool_calls"
    assert events.count("tool_calls.function.arguments.done") == 2


async def test_a_non_streamed_tool_call(client: openai.AsyncOpenAI) -> None:
    messages = conversation(f"[[sim: {PARALLEL}]]")

    result = await client.chat.completions.create(model=MODEL, messages=messages, tools=TOOLS)

    message = result.choices[0].message
    assert message.content is None and message.refusal is None
    assert wire_calls(message.tool_calls) == expected_tool_calls(messages)
    assert result.choices[0].finish_reason == "tool_calls"


async def test_a_tool_result_is_answered_with_text(client: openai.AsyncOpenAI) -> None:
    messages = conversation(f"[[sim: {WEATHER}]]")
    first = await client.chat.completions.create(model=MODEL, messages=messages, tools=TOOLS)
    calls = wire_calls(first.choices[0].message.tool_calls)
    follow_up = [
        *messages,
        {"role": "assistant", "content": None, "tool_calls": calls},
        {"role": "tool", "tool_call_id": calls[0]["id"], "content": '{"temp": 18}'},
    ]

    chunks = await chunks_of(client, messages=follow_up, tools=TOOLS)

    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert text == expected_text(follow_up) != ""
    assert all(c.choices[0].delta.tool_calls is None for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"


async def test_a_cut_lands_inside_the_tool_arguments(client: openai.AsyncOpenAI) -> None:
    messages = conversation(f"[[sim: {WEATHER} cut_after=3]]")
    received: list[ChatCompletionChunk] = []

    stream = await client.chat.completions.create(model=MODEL, messages=messages, stream=True)
    with pytest.raises(openai.APIConnectionError):
        async for chunk in stream:
            received.append(chunk)

    arguments = "".join(
        call.function.arguments or ""
        for chunk in received
        for call in chunk.choices[0].delta.tool_calls or ()
        if call.function
    )
    full = expected_tool_calls(messages)[0]["function"]["arguments"]
    assert len(received) == 4 and full.startswith(arguments) and arguments != full


# --- refusal, reasoning, logprobs --------------------------------------------------------


async def test_a_refusal_streams_in_delta_refusal(client: openai.AsyncOpenAI) -> None:
    messages = conversation("[[sim: refusal=1]]")
    chunks = await chunks_of(client, messages=messages)

    assert all(c.choices[0].delta.content is None for c in chunks)
    pieces = [c.choices[0].delta.refusal for c in chunks[1:-1]]
    assert len(pieces) > 1 and "".join(p or "" for p in pieces) == expected_refusal(messages)
    assert chunks[-1].choices[0].finish_reason == "stop"

    async with client.chat.completions.stream(model=MODEL, messages=messages) as stream:
        final = await stream.get_final_completion()
    assert final.choices[0].message.refusal == REFUSAL_TEXT
    whole = await client.chat.completions.create(model=MODEL, messages=messages)
    assert whole.choices[0].message.refusal == REFUSAL_TEXT
    assert whole.choices[0].message.content is None


async def test_reasoning_comes_first_and_is_counted(client: openai.AsyncOpenAI) -> None:
    messages = conversation("[[sim: reasoning=6 tokens=5]]")
    chunks = await chunks_of(client, messages=messages, stream_options={"include_usage": True})

    deltas = [c.choices[0].delta for c in chunks if c.choices]
    reasoning = [getattr(d, "reasoning_content", None) for d in deltas]
    assert "".join(r or "" for r in reasoning) == expected_reasoning(messages)
    last_reasoning = max(i for i, r in enumerate(reasoning) if r)
    first_content = min(i for i, d in enumerate(deltas) if d.content)
    assert last_reasoning < first_content
    assert "".join(d.content or "" for d in deltas) == expected_text(messages)
    usage = chunks[-1].usage
    assert usage is not None and usage.completion_tokens == 11
    assert usage.completion_tokens_details is not None
    assert usage.completion_tokens_details.reasoning_tokens == 6

    whole = await client.chat.completions.create(model=MODEL, messages=messages)
    message = whole.choices[0].message
    assert getattr(message, "reasoning_content", None) == expected_reasoning(messages)


async def test_logprobs_ride_with_each_content_chunk(client: openai.AsyncOpenAI) -> None:
    messages = conversation("[[sim: tokens=8]]")
    chunks = await chunks_of(client, messages=messages, logprobs=True, top_logprobs=3)

    content = [c for c in chunks if c.choices[0].delta.content]
    assert [c.choices[0].delta.content for c in content] == expected_tokens(messages)
    for chunk in content:
        logprobs = chunk.choices[0].logprobs
        assert logprobs is not None and logprobs.content and logprobs.refusal is None
        (entry,) = logprobs.content
        assert entry.token == chunk.choices[0].delta.content
        assert bytes(entry.bytes or []).decode() == entry.token and entry.logprob <= 0
        assert len(entry.top_logprobs) == 3 and entry.top_logprobs[0].token == entry.token
    assert chunks[-1].choices[0].logprobs is None

    whole = await client.chat.completions.create(
        model=MODEL, messages=messages, logprobs=True, top_logprobs=1
    )
    assert whole.choices[0].logprobs and whole.choices[0].logprobs.content
    assert [e.token for e in whole.choices[0].logprobs.content] == expected_tokens(messages)


# --- structured output and content parts -------------------------------------------------


class Forecast(pydantic.BaseModel):
    city: str
    celsius: float
    days: int
    rain: bool
    tags: list[str]


async def test_json_schema_content_satisfies_the_schema(client: openai.AsyncOpenAI) -> None:
    messages = conversation("forecast please")
    schema = Forecast.model_json_schema()
    response_format = {
        "type": "json_schema",
        "json_schema": {"name": "forecast", "schema": schema, "strict": True},
    }

    chunks = await chunks_of(client, messages=messages, response_format=response_format)
    text = "".join(c.choices[0].delta.content or "" for c in chunks)

    assert len([c for c in chunks if c.choices[0].delta.content]) > 5
    assert text == expected_text(messages, response_format=response_format)
    Forecast.model_validate_json(text)
    parsed = await client.chat.completions.parse(
        model=MODEL,
        messages=messages,
        response_format=Forecast,
    )
    assert parsed.choices[0].message.parsed == Forecast.model_validate_json(text)


async def test_json_object_content_is_a_json_object(client: openai.AsyncOpenAI) -> None:
    messages = conversation("as json")
    result = await client.chat.completions.create(
        model=MODEL, messages=messages, response_format={"type": "json_object"}
    )

    content = result.choices[0].message.content
    assert content is not None and isinstance(json.loads(content), dict)


async def test_image_parts_are_counted_in_prompt_tokens(client: openai.AsyncOpenAI) -> None:
    text = f"what is this {uuid.uuid4().hex}"

    async def prompt_tokens(*parts: dict[str, Any]) -> int:
        content = [{"type": "text", "text": text}, *parts]
        result = await client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": content}],
        )
        assert result.usage is not None
        return result.usage.prompt_tokens

    def image(detail: str) -> dict[str, Any]:
        return {"type": "image_url", "image_url": {"url": "https://x.test/a.png", "detail": detail}}

    plain = await prompt_tokens()
    assert await prompt_tokens(image("low")) == plain + IMAGE_TOKENS_LOW
    assert await prompt_tokens(image("high"), image("low")) == (
        plain + IMAGE_TOKENS_HIGH + IMAGE_TOKENS_LOW
    )
    audio = {"type": "input_audio", "input_audio": {"data": "UklGRg==" * 1000, "format": "wav"}}
    assert await prompt_tokens(audio) > plain


async def test_every_openai_request_field_is_accepted(client: openai.AsyncOpenAI) -> None:
    messages = conversation("all the knobs")

    result = await client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "developer", "content": "be brief"}, *messages],
        tools=TOOLS,
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        parallel_tool_calls=False,
        response_format={"type": "text"},
        stop=["\n\n", "END"],
        seed=7,
        temperature=0.2,
        top_p=0.9,
        frequency_penalty=0.5,
        presence_penalty=-0.5,
        logprobs=False,
        max_completion_tokens=100,
        reasoning_effort="low",
        user="u-1",
        safety_identifier="s-1",
        metadata={"team": "tokenwire"},
        store=False,
    )

    assert result.choices[0].message.content == expected_text(
        [{"role": "developer", "content": "be brief"}, *messages]
    )


@pytest.mark.parametrize(
    ("patch", "param"),
    [
        ({"messages": [{"role": "tool", "tool_call_id": "call_1", "content": "x"}]}, None),
        ({"tools": [{"type": "function", "function": {"name": "a b"}}]}, None),
        ({"tool_choice": "sometimes"}, "tool_choice"),
        ({"top_logprobs": 2}, "top_logprobs"),
        ({"temperature": 3}, "temperature"),
        ({"response_format": {"type": "xml"}}, "response_format.type"),
        ({"response_format": {"type": "json_schema"}}, "response_format.json_schema"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"reasoning_effort": "extreme"}, "reasoning_effort"),
        ({"metadata": {"k": 1}}, "metadata.k"),
    ],
)
async def test_bad_shapes_are_openai_400s(
    sim_url: str, patch: dict[str, Any], param: str | None
) -> None:
    body = {"model": MODEL, "messages": [{"role": "user", "content": "x"}], "tools": TOOLS}
    body |= patch
    async with httpx.AsyncClient(base_url=sim_url) as http:
        response = await http.post("/v1/chat/completions", json=body)

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["message"]
    if param is not None:
        assert error["param"] == param


async def test_bad_content_parts_name_the_part(sim_url: str) -> None:
    content = [{"type": "text", "text": "x"}, {"type": "image_url", "image_url": "not an object"}]
    body = {"model": MODEL, "messages": [{"role": "user", "content": content}]}
    async with httpx.AsyncClient(base_url=sim_url) as http:
        response = await http.post("/v1/chat/completions", json=body)

    assert response.status_code == 400
    assert response.json()["error"]["param"] == "messages[0].content[1].image_url"


# --- the early-close record ----------------------------------------------------------------


async def closed_entries(sim_url: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=sim_url) as http:
        response = await http.get("/v1/_sim/closed")
    response.raise_for_status()
    return response.json()["closed"]


async def test_a_client_that_leaves_early_is_recorded(
    client: openai.AsyncOpenAI, sim_url: str
) -> None:
    # The stall keeps the pacing asleep for a minute: the entry can only appear in time if
    # the disconnect itself is noticed.
    messages = conversation("[[sim: tokens=50 stall_after=3 stall_s=60]]")
    stream = await client.chat.completions.create(model=MODEL, messages=messages, stream=True)
    seen = 0
    async for chunk in stream:
        seen += bool(chunk.choices[0].delta.content)
        if seen == 3:
            break
    left_at = time.time()
    await stream.close()

    async def recorded() -> bool:
        return any(e["id"] == chunk.id for e in await closed_entries(sim_url))

    await eventually_true(recorded, timeout_s=20)
    entry = next(e for e in await closed_entries(sim_url) if e["id"] == chunk.id)
    assert entry["prompt"] == messages[-1]["content"][:256]
    assert entry["tokens_sent"] == 3
    assert entry["opened_at"] <= left_at <= entry["closed_at"]


async def test_whole_and_deliberately_cut_streams_are_not_recorded(
    client: openai.AsyncOpenAI, sim_url: str
) -> None:
    whole = await chunks_of(client, messages=conversation("[[sim: tokens=5]]"))
    cut: list[ChatCompletionChunk] = []
    stream = await client.chat.completions.create(
        model=MODEL, messages=conversation("[[sim: cut_after=2]]"), stream=True
    )
    with pytest.raises(openai.APIConnectionError):
        async for chunk in stream:
            cut.append(chunk)

    ids = {e["id"] for e in await closed_entries(sim_url)}
    assert whole[0].id not in ids and cut[0].id not in ids
