"""Version 2 of the request contract: OpenAI's chat request surface, typed and bounded."""

import json
from typing import Any

import pytest
from pydantic import ValidationError

from schemas import ChatRequest
from schemas.common import SCHEMA_VERSION
from schemas.control import CancelRequest, parse_control_record
from schemas.lifecycle import Completed, parse_lifecycle_event
from schemas.messages import INLINE_DATA_MAX_CHARS
from schemas.session_events import DoneEvent, ToolCallEvent, parse_session_event

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather of a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        "strict": True,
    },
}


def _request(messages: list[dict[str, Any]], **fields: Any) -> ChatRequest:
    return ChatRequest.model_validate(
        {"session_id": "s", "user_id": "u", "messages": messages, **fields}
    )


def test_a_version_1_record_still_decodes() -> None:
    v1 = {
        "schema_version": 1, "request_id": "r", "session_id": "s", "user_id": "u",
        "messages": [{"role": "user", "content": "hi"}], "model": None, "temperature": 0.5,
        "max_tokens": 10, "metadata": {"any": {"json": [1]}},
        "created_at": "2026-01-01T00:00:00Z",
    }  # fmt: skip
    request = ChatRequest.model_validate_json(json.dumps(v1))
    assert request.schema_version == 1 and request.messages[0].text == "hi"
    assert SCHEMA_VERSION == 2 and _request([{"role": "user", "content": "x"}]).schema_version == 2


def test_a_tool_conversation_with_content_parts_is_forwarded_unchanged() -> None:
    messages = [
        {"role": "developer", "content": "Be brief."},
        {"role": "user", "content": [
            {"type": "text", "text": "Weather here?"},
            {"type": "image_url",
             "image_url": {"url": "https://example.com/a.png", "detail": "low"}},
            {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
            {"type": "file", "file": {"file_data": "JVBERi0=", "filename": "a.pdf"}},
        ]},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function",
             "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
        ]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
    ]  # fmt: skip
    options = {
        "tools": [WEATHER_TOOL], "tool_choice": "auto", "parallel_tool_calls": False,
        "response_format": {"type": "json_schema",
                            "json_schema": {"name": "w", "schema": {"type": "object"},
                                            "strict": True}},
        "stop": ["\n\n"], "seed": 7, "top_p": 0.9, "frequency_penalty": 0.1,
        "presence_penalty": -0.1, "logprobs": True, "top_logprobs": 2,
        "max_completion_tokens": 50, "reasoning_effort": "low", "user": "end-user-1",
        "safety_identifier": "hash-1", "metadata": {"team": "a"}, "temperature": 0.2,
    }  # fmt: skip
    request = _request(messages, **options)
    body = request.provider_body("gpt-4o-mini")
    stored = ChatRequest.model_validate_json(request.model_dump_json())
    assert stored == request
    expected_messages = json.loads(json.dumps(messages))
    expected_messages[2].pop("content")  # None is left out, as the openai client does
    assert body["messages"] == expected_messages
    assert {k: v for k, v in body.items() if k in options} == options
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert request.prompt_text == "Weather here?"


@pytest.mark.parametrize(
    "message, problem",
    [
        ({"role": "tool", "content": "x"}, "tool_call_id"),
        ({"role": "user", "content": "x", "tool_call_id": "c"}, "tool_call_id"),
        ({"role": "user", "content": "x", "tool_calls": []}, "tool_calls"),
        ({"role": "user"}, "content is required"),
        ({"role": "system", "content": [{"type": "image_url",
                                         "image_url": {"url": "https://x"}}]}, "image_url"),
        ({"role": "user", "content": [{"type": "file", "file": {"filename": "a"}}]}, "file_id"),
        ({"role": "function", "content": "x"}, "role"),
        ({"role": "assistant", "tool_calls": [
            {"id": "c", "function": {"name": "bad name!", "arguments": "{}"}}]}, "pattern"),
    ],
)
def test_messages_that_break_the_role_rules_are_refused(
    message: dict[str, Any], problem: str
) -> None:
    with pytest.raises(ValidationError, match=problem):
        _request([message])


def test_inline_data_is_bounded() -> None:
    big = "data:image/png;base64," + "A" * INLINE_DATA_MAX_CHARS
    with pytest.raises(ValidationError, match="at most"):
        _request([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": big}}]}])


@pytest.mark.parametrize(
    "field, value",
    [("top_logprobs", 21), ("top_p", 1.5), ("tool_choice", "sometimes"),
     ("reasoning_effort", "max"), ("stop", ""), ("response_format", {"type": "xml"})],
)
def test_out_of_range_options_are_refused(field: str, value: Any) -> None:
    with pytest.raises(ValidationError):
        _request([{"role": "user", "content": "x"}], **{field: value})


def test_the_new_events_and_records_round_trip() -> None:
    ids = {"request_id": "r", "session_id": "s", "attempt": 1}
    fragment = ToolCallEvent(**ids, seq=1, index=0, id="call_1", name="get_weather",
                             arguments='{"ci', received_at=1.0)
    assert parse_session_event(fragment.model_dump_json()) == fragment
    done = parse_session_event(json.dumps({
        **ids, "type": "done", "seq": 2, "finish_reason": "tool_calls",
        "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3},
        "timings": {"accepted_at": 0, "finished_at": 1, "duration_s": 1},
        "tool_calls": [{"id": "call_1", "type": "function",
                        "function": {"name": "get_weather", "arguments": "{}"}}],
    }))  # fmt: skip
    assert isinstance(done, DoneEvent) and done.tool_calls[0].function.name == "get_weather"
    assert done.usage.estimated is False
    cancel = CancelRequest(request_id="r", session_id="s", user_id="u")
    assert parse_control_record(cancel.model_dump_json()) == cancel


def test_a_version_1_completed_record_has_no_message() -> None:
    record = parse_lifecycle_event(json.dumps({
        "schema_version": 1, "type": "completed", "request_id": "r", "session_id": "s",
        "user_id": "u", "model": "m", "attempt": 1, "at": 1.0, "finish_reason": "stop",
        "usage": {}, "timings": {"accepted_at": 0, "finished_at": 1, "duration_s": 1},
        "answer": "hi",
    }))  # fmt: skip
    assert isinstance(record, Completed) and record.message is None and not record.cancelled
