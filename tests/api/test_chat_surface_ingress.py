"""POST /v1/chat takes OpenAI's chat request surface, stores it typed, and bounds its size."""

from __future__ import annotations

from typing import Any

from schemas.messages import INLINE_DATA_MAX_CHARS
from schemas.requests import ChatRequest
from tests.api.conftest import Edge
from tests.api.test_ingress import post
from tests.fixtures.kafka_reading import read_topic

TOOL_CONVERSATION: list[dict[str, Any]] = [
    {"role": "developer", "content": "Answer briefly."},
    {"role": "user", "content": [
        {"type": "text", "text": "Weather where this photo is?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
    ]},
    {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_a", "type": "function",
         "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}]},
    {"role": "tool", "tool_call_id": "call_a", "content": "18 C, sunny"},
]  # fmt: skip


async def test_a_tool_conversation_with_options_is_published_typed(edge: Edge) -> None:
    options = {
        "tools": [{"type": "function", "function": {"name": "get_weather",
                                                    "parameters": {"type": "object"}}}],
        "tool_choice": "required", "response_format": {"type": "json_object"},
        "stop": "END", "seed": 3, "logprobs": True, "top_logprobs": 1,
        "reasoning_effort": "minimal", "safety_identifier": "h-1",
    }  # fmt: skip
    response = await post(edge, {"user_id": "u-test", "messages": TOOL_CONVERSATION, **options})
    assert response.status_code == 202, response.text
    session_id = response.json()["session_id"]

    records = await read_topic(edge.settings.kafka_bootstrap, edge.settings.requests_topic)
    [record] = [r for r in records if r.key == session_id.encode()]
    published = ChatRequest.model_validate_json(record.value)
    body = published.provider_body("m")
    assert body["messages"][2]["tool_calls"][0]["function"]["name"] == "get_weather"
    assert body["messages"][1]["content"][1]["type"] == "image_url"
    assert {k: body[k] for k in options} == options


async def test_inline_data_over_its_bound_is_a_422_and_a_body_over_the_record_limit_413(
    edge: Edge,
) -> None:
    too_big = "data:image/png;base64," + "A" * INLINE_DATA_MAX_CHARS
    image = {"role": "user", "content": [{"type": "image_url", "image_url": {"url": too_big}}]}
    response = await post(edge, {"user_id": "u-test", "messages": [image]})
    assert response.status_code in (413, 422), response.text
    assert response.headers["content-type"].startswith("application/json")

    # Under the inline bound, but the body as a whole is over the broker's record limit.
    half = "data:image/png;base64," + "A" * (INLINE_DATA_MAX_CHARS // 2)
    two = {"role": "user", "content": [{"type": "image_url", "image_url": {"url": half}}] * 3}
    response = await post(edge, {"user_id": "u-test", "messages": [two]})
    assert response.status_code == 413, response.text
    assert response.json()["error"]["code"]


async def test_a_tool_message_without_its_call_id_is_a_422_naming_the_field(edge: Edge) -> None:
    body = {"user_id": "u-test", "messages": [{"role": "tool", "content": "x"}]}
    response = await post(edge, body)
    assert response.status_code == 422
    assert "tool_call_id" in response.text


async def test_a_field_that_is_not_forwarded_is_refused_not_dropped(edge: Edge) -> None:
    body = {"user_id": "u-test", "messages": [{"role": "user", "content": "x"}], "n": 3,
            "stream": False}
    response = await post(edge, body)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert "n, stream" in error["message"]
    assert [d["loc"] for d in error["details"]] == [["n"], ["stream"]]
