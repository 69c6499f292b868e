"""OpenAI's chat surface through Kafka: tool calls, refusals, reasoning, logprobs, parts.

Every request is posted over HTTP, forwarded by the worker through the real ``openai`` client
to the simulator, and read back over SSE; the simulator's ``expected_*`` functions say what the
provider answered.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx

from tests.fixtures.pipeline import WorkerProcess
from tests.fixtures.sse_client import Received, read_session
from tests.pipeline.conftest import lifecycle_of
from tokenwire.answers import fold
from tokenwire.settings import Settings
from tokenwire.simulator.script import (
    expected_reasoning,
    expected_refusal,
    expected_text,
    expected_tool_calls,
)

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]},
}}  # fmt: skip
TIME = {"type": "function", "function": {
    "name": "get_time", "parameters": {"type": "object", "properties": {}}}}


def _user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": f"{text} {uuid.uuid4().hex}"}]


async def _ask(post_chat, edge_url: str, body: dict[str, Any], **read: Any) -> tuple[
    dict[str, Any], list[Received]
]:  # fmt: skip
    response = await post_chat({"user_id": "tools", **body})
    assert response.status_code == 202, response.text
    chat = response.json()
    events = await read_session(edge_url, chat["session_id"], chat["stream_token"],
                                request_id=chat["request_id"], **read)
    return chat, events


def _done(events: list[Received]) -> dict[str, Any]:
    assert events[-1].type == "done", [e.type for e in events]
    return events[-1].data


async def test_a_tool_calling_conversation_runs_end_to_end(
    worker: WorkerProcess, edge_url: str, post_chat, pipeline_settings: Settings
) -> None:
    asked = _user('Weather in Paris? [[sim: tool=get_weather args={"city":"Paris"}]]')
    chat, events = await _ask(post_chat, edge_url, {"messages": asked, "tools": [WEATHER],
                                                    "tool_choice": "auto"})
    calls = expected_tool_calls(asked)
    assert [c["function"]["name"] for c in calls] == ["get_weather"]

    done = _done(events)
    assert done["finish_reason"] == "tool_calls"
    assert done["tool_calls"] == calls
    assert "tool_call" in {e.type for e in events} and "token" not in {e.type for e in events}
    folded = fold(e.data for e in events)[chat["request_id"]]
    assert [c.model_dump() for c in folded.tool_calls] == calls
    completed = await lifecycle_of(pipeline_settings, chat["request_id"], "completed")
    assert completed["message"]["tool_calls"] == calls and completed["answer"] == ""

    # The tool's result goes back in the same session; the answer is text again.
    follow_up = [*asked, {"role": "assistant", "content": None, "tool_calls": calls},
                 {"role": "tool", "tool_call_id": calls[0]["id"], "content": '{"temp_c": 18}'}]
    response = await post_chat({"user_id": "tools", "session_id": chat["session_id"],
                                "messages": follow_up, "tools": [WEATHER]},
                               token=chat["write_token"])
    assert response.status_code == 202, response.text
    again = response.json()
    events = await read_session(edge_url, chat["session_id"], again["stream_token"],
                                request_id=again["request_id"])
    assert _done(events)["finish_reason"] == "stop"
    assert fold(e.data for e in events)[again["request_id"]].text == expected_text(follow_up)


async def test_parallel_tool_calls_stream_by_index(
    worker: WorkerProcess, edge_url: str, post_chat
) -> None:
    asked = _user('Both? [[sim: tool=get_weather args={"city":"Oslo"} tool=get_time args={}]]')
    _, events = await _ask(post_chat, edge_url, {"messages": asked, "tools": [WEATHER, TIME],
                                                    "parallel_tool_calls": True})
    calls = expected_tool_calls(asked)
    assert len(calls) == 2
    assert _done(events)["tool_calls"] == calls
    indices = [e.data["index"] for e in events if e.type == "tool_call"]
    assert indices == sorted(indices) and set(indices) == {0, 1}
    firsts = [e.data for e in events if e.type == "tool_call" and e.data["id"] is not None]
    assert [(f["index"], f["id"], f["name"]) for f in firsts] == [
        (i, c["id"], c["function"]["name"]) for i, c in enumerate(calls)
    ]


async def test_a_refusal_streams_as_refusal_events(
    worker: WorkerProcess, edge_url: str, post_chat, pipeline_settings: Settings
) -> None:
    asked = _user("Something bad [[sim: refusal=1]]")
    chat, events = await _ask(post_chat, edge_url, {"messages": asked})
    refusal = expected_refusal(asked)
    assert refusal
    assert "".join(e.data["text"] for e in events if e.type == "refusal") == refusal
    assert fold(e.data for e in events)[chat["request_id"]].refusal == refusal
    completed = await lifecycle_of(pipeline_settings, chat["request_id"], "completed")
    assert completed["message"]["refusal"] == refusal


async def test_reasoning_text_comes_before_the_answer(
    worker: WorkerProcess, edge_url: str, post_chat
) -> None:
    asked = _user("Think first [[sim: reasoning=6 tokens=8]]")
    chat, events = await _ask(post_chat, edge_url, {"messages": asked,
                                                    "reasoning_effort": "low"})
    kinds = [e.type for e in events if e.type in ("reasoning", "token")]
    assert kinds[0] == "reasoning" and kinds[-1] == "token"
    assert kinds == sorted(kinds, key=lambda k: k != "reasoning"), "no reasoning after text"
    answer = fold(e.data for e in events)[chat["request_id"]]
    assert answer.reasoning == expected_reasoning(asked)
    assert answer.text == expected_text(asked)


async def test_logprobs_are_passed_through_with_the_tokens(
    worker: WorkerProcess, edge_url: str, post_chat
) -> None:
    asked = _user("With logprobs [[sim: tokens=10]]")
    _, events = await _ask(post_chat, edge_url, {"messages": asked, "logprobs": True,
                                                    "top_logprobs": 2})
    tokens = [e.data for e in events if e.type == "token"]
    entries = [entry for t in tokens for entry in (t["logprobs"] or [])]
    assert [entry["token"] for entry in entries] == [
        t for t in _tokens_of(expected_text(asked), entries)
    ]
    assert all(len(entry["top_logprobs"]) == 2 for entry in entries)


def _tokens_of(text: str, entries: list[dict[str, Any]]) -> list[str]:
    """The text cut where the entries cut it (asserts that they cover it exactly)."""
    assert "".join(entry["token"] for entry in entries) == text
    return [entry["token"] for entry in entries]


async def test_an_image_part_is_accepted_and_counted(
    worker: WorkerProcess, edge_url: str, post_chat
) -> None:
    text = f"What is in it? {uuid.uuid4().hex}"
    image = {"type": "image_url", "image_url": {"url": "https://example.com/cat.png",
                                                "detail": "low"}}
    plain = [{"role": "user", "content": [{"type": "text", "text": text}]}]
    with_image = [{"role": "user", "content": [{"type": "text", "text": text}, image]}]
    _, plain_events = await _ask(post_chat, edge_url, {"messages": plain})
    _, image_events = await _ask(post_chat, edge_url, {"messages": with_image})
    plain_usage, image_usage = _done(plain_events)["usage"], _done(image_events)["usage"]
    assert image_usage["prompt_tokens"] > plain_usage["prompt_tokens"]
    assert not image_usage["estimated"]


async def test_a_json_schema_response_is_json(
    worker: WorkerProcess, edge_url: str, post_chat
) -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string"},
                                               "temp_c": {"type": "number"}},
              "required": ["city", "temp_c"]}
    response_format = {"type": "json_schema",
                       "json_schema": {"name": "weather", "schema": schema, "strict": True}}
    asked = _user("As JSON")
    chat, events = await _ask(post_chat, edge_url, {"messages": asked,
                                                    "response_format": response_format})
    text = fold(e.data for e in events)[chat["request_id"]].text
    assert text == expected_text(asked, response_format=response_format)
    assert set(json.loads(text)) >= {"city", "temp_c"}


async def test_a_reconnect_mid_tool_call_resumes_exactly(
    worker: WorkerProcess, edge_url: str, post_chat
) -> None:
    # ~80 fragments at 10 a second: the client leaves well inside the call.
    note = " ".join(["storm"] * 60)
    args = json.dumps({"city": "Reykjavik", "note": note}, separators=(",", ":"))
    asked = _user(f"[[sim: tool=get_weather args={args} tps=10]]")
    response = await post_chat({"user_id": "tools", "messages": asked, "tools": [WEATHER]})
    chat = response.json()
    sid, token, rid = chat["session_id"], chat["stream_token"], chat["request_id"]

    first = await read_session(edge_url, sid, token, request_id=rid, stop_after=4)
    assert first[-1].type == "tool_call", "the cut falls inside the tool call"
    rest = await read_session(edge_url, sid, token, request_id=rid,
                              last_event_id=first[-1].last_event_id)
    whole = await read_session(edge_url, sid, token, request_id=rid)

    assert [e.id for e in first + rest] == [e.id for e in whole]
    folded = fold(e.data for e in first + rest)[rid]
    assert [c.model_dump() for c in folded.tool_calls] == expected_tool_calls(asked)


async def test_every_option_reaches_the_provider_unchanged(
    worker: WorkerProcess, edge_url: str, post_chat, simulator_url: str
) -> None:
    marker = uuid.uuid4().hex
    options = {
        "tools": [WEATHER],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "parallel_tool_calls": False, "stop": ["\n\n", "END"], "seed": 42, "top_p": 0.5,
        "frequency_penalty": 0.25, "presence_penalty": -0.5, "temperature": 0.7,
        "logprobs": True, "top_logprobs": 3, "max_completion_tokens": 30,
        "reasoning_effort": "medium", "user": "end-user-7", "safety_identifier": "sid-7",
        "metadata": {"team": "support"},
        "response_format": {"type": "json_schema", "json_schema": {
            "name": "w", "schema": {"type": "object", "properties": {"a": {"type": "string"}}},
            "strict": True}},
    }  # fmt: skip
    _, events = await _ask(post_chat, edge_url, {"messages": _user(f"opts {marker}"), **options})
    assert _done(events)["finish_reason"] in ("stop", "length")

    async with httpx.AsyncClient(timeout=10) as client:
        received = (await client.get(f"{simulator_url}/v1/_sim/requests")).json()["requests"]
    [sent] = [r["options"] for r in received if marker in r["prompt"]]
    # The quota fills in max_tokens; everything the caller set arrives as the caller set it.
    assert {k: sent[k] for k in options} == options
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}
