"""Session events as AI SDK UI message chunks, and UI messages as chat messages (pure parts)."""

from __future__ import annotations

from typing import Any

import pytest

from api.adapters.ui_message_stream import UIMessageStream
from api.adapters.ui_messages import chat_messages
from api.errors import ApiError
from schemas.session_events import ErrorEvent, RefusalEvent, SessionEvent
from tests.api.test_attempts import IDS, done, reasoning, retry, start, token, tool


def chunks(events: list[SessionEvent]) -> list[dict[str, Any]]:
    stream = UIMessageStream("r1")
    out = stream.opening()
    for event in events:
        out.extend(stream.feed(event))
    assert stream.ended
    return out


def test_reasoning_then_text_are_two_closed_parts_then_finish() -> None:
    assert chunks([start(), reasoning("hm"), token("Hi"), token("!"), done()]) == [
        {"type": "start", "messageId": "msg-r1"},
        {"type": "start-step"},
        {"type": "reasoning-start", "id": "reasoning-1"},
        {"type": "reasoning-delta", "id": "reasoning-1", "delta": "hm"},
        {"type": "reasoning-end", "id": "reasoning-1"},
        {"type": "text-start", "id": "text-2"},
        {"type": "text-delta", "id": "text-2", "delta": "Hi"},
        {"type": "text-delta", "id": "text-2", "delta": "!"},
        {"type": "text-end", "id": "text-2"},
        {"type": "finish-step"},
        {"type": "finish", "finishReason": "stop"},
    ]


def test_a_refusal_is_text() -> None:
    refusal = RefusalEvent(**IDS, attempt=1, seq=1, text="No.", received_at=1.0)
    out = chunks([start(), refusal, done()])
    assert {"type": "text-delta", "id": "text-1", "delta": "No."} in out


def test_tool_calls_stream_then_are_available_or_an_input_error() -> None:
    ended = done().model_copy(update={"finish_reason": "tool_calls"})
    out = chunks([
        start(), tool(0, '{"a":', id="c1", name="f"), tool(0, "1}"),
        tool(1, "{nope", id="c2", name="g"), ended,
    ])  # fmt: skip
    assert out[2:] == [
        {"type": "tool-input-start", "toolCallId": "c1", "toolName": "f"},
        {"type": "tool-input-delta", "toolCallId": "c1", "inputTextDelta": '{"a":'},
        {"type": "tool-input-delta", "toolCallId": "c1", "inputTextDelta": "1}"},
        {"type": "tool-input-start", "toolCallId": "c2", "toolName": "g"},
        {"type": "tool-input-delta", "toolCallId": "c2", "inputTextDelta": "{nope"},
        {"type": "tool-input-available", "toolCallId": "c1", "toolName": "f", "input": {"a": 1}},
        {"type": "tool-input-error", "toolCallId": "c2", "toolName": "g", "input": "{nope",
         "errorText": "the tool call's arguments are not valid JSON"},
        {"type": "finish-step"},
        {"type": "finish", "finishReason": "tool-calls"},
    ]  # fmt: skip


def test_cancelled_ends_with_abort_and_unknown_reasons_are_other() -> None:
    cancelled = done().model_copy(update={"finish_reason": "cancelled"})
    assert chunks([start(), token("Hi"), cancelled])[-3:] == [
        {"type": "text-end", "id": "text-1"}, {"type": "finish-step"}, {"type": "abort"},
    ]  # fmt: skip
    odd = done().model_copy(update={"finish_reason": "something_new"})
    assert chunks([start(), odd])[-1] == {"type": "finish", "finishReason": "other"}


def test_an_error_closes_the_open_part_first() -> None:
    error = ErrorEvent(**IDS, attempt=1, seq=2, code="upstream_failed", message="gone",
                       retryable=False)  # fmt: skip
    assert chunks([start(), token("Hi"), error])[-2:] == [
        {"type": "text-end", "id": "text-1"},
        {"type": "error", "errorText": "upstream_failed: gone"},
    ]


def test_a_retry_continues_the_same_part_and_a_diverging_one_ends_in_an_error() -> None:
    same = chunks([start(), token("Hel"), retry(2), token("Hello", 2), done(2)])
    assert [c["delta"] for c in same if c["type"] == "text-delta"] == ["Hel", "lo"]
    assert [c["type"] for c in same].count("text-start") == 1
    other = chunks([start(), token("Hel"), retry(2), token("Bye", 2)])
    assert other[-2] == {"type": "text-end", "id": "text-1"}
    assert other[-1]["type"] == "error"
    assert other[-1]["errorText"].startswith("answer_restarted: ")


def test_ui_messages_become_chat_messages() -> None:
    ui = [
        {"id": "s", "role": "system", "parts": [{"type": "text", "text": "Be brief."}]},
        {"id": "u", "role": "user", "parts": [
            {"type": "text", "text": "Look:"},
            {"type": "file", "mediaType": "image/png", "url": "data:image/png;base64,AA=="},
        ]},
        {"id": "a", "role": "assistant", "parts": [
            {"type": "step-start"}, {"type": "reasoning", "text": "hm"},
            {"type": "text", "text": "Checking."},
            {"type": "tool-get_weather", "toolCallId": "c1", "state": "output-available",
             "input": {"city": "Paris"}, "output": {"t": 21}},
            {"type": "tool-get_time", "toolCallId": "c2", "state": "input-streaming"},
            {"type": "step-start"}, {"type": "text", "text": "21 degrees."},
        ]},
        {"id": "u2", "role": "user", "parts": [{"type": "text", "text": "Thanks"}]},
    ]  # fmt: skip
    call = {"id": "c1", "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}
    assert chat_messages(ui) == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [
            {"type": "text", "text": "Look:"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}},
        ]},
        {"role": "assistant", "content": "Checking.", "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "c1", "content": '{"t":21}'},
        {"role": "assistant", "content": "21 degrees."},
        {"role": "user", "content": "Thanks"},
    ]  # fmt: skip


@pytest.mark.parametrize("messages", [
    None, [], [{"role": "user"}], [{"role": "user", "parts": [{"type": "text"}]}],
    [{"role": "user", "parts": ["text"]}],
    [{"role": "assistant", "parts": [{"type": "tool-x", "state": "output-available"}]}],
    [{"role": "user", "parts": [{"type": "file", "mediaType": "image/png",
                                 "url": "javascript:alert(1)"}]}],
    [{"role": "user", "parts": [{"type": "file", "mediaType": "image/png",
                                 "url": "file:///etc/passwd"}]}],
])  # fmt: skip
def test_bad_ui_messages_are_422(messages: Any) -> None:
    with pytest.raises(ApiError) as caught:
        chat_messages(messages)
    assert caught.value.status == 422
