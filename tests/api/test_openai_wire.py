"""OpenAI's wire format from session events, without services: what a stream sends around a retry,
a re-attach from a position and a backlog; what a body may ask for."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from api.adapters.openai_errors import OpenAIError, from_api_error, param_path
from api.adapters.openai_wire import ChunkRelay, Collected, Head, completion, split_body
from api.adapters.request_events import Delivered
from api.errors import ApiError
from schemas.session_events import (
    DoneEvent,
    ReasoningEvent,
    RefusalEvent,
    RetryEvent,
    SessionEvent,
    StartEvent,
    Timings,
    TokenEvent,
    ToolCallEvent,
    Usage,
)

IDS = {"request_id": "r1", "session_id": "oa-x"}


def _start() -> StartEvent:
    return StartEvent(**IDS, attempt=1, seq=0, model="sim-model", accepted_at=1_700_000_000.5)


def _token(attempt: int, seq: int, text: str) -> TokenEvent:
    return TokenEvent(**IDS, attempt=attempt, seq=seq, text=text, received_at=time.time())


def _retry(attempt: int) -> RetryEvent:
    return RetryEvent(**IDS, attempt=attempt, seq=0, reason="cut")


def _done(attempt: int, seq: int, reason: str = "stop") -> DoneEvent:
    now = time.time()
    return DoneEvent(
        **IDS, attempt=attempt, seq=seq, finish_reason=reason,
        usage=Usage(prompt_tokens=3, completion_tokens=4, total_tokens=7),
        timings=Timings(accepted_at=now, finished_at=now, duration_s=0.0),
    )  # fmt: skip


def _delivered(events: list[SessionEvent]) -> list[Delivered]:
    return [Delivered(f"e-{i}", i, event) for i, event in enumerate(events)]


def _frames(data: bytes) -> list[tuple[str | None, Any]]:
    """(id, parsed data) of each SSE event in ``data``."""
    frames = []
    for block in data.decode().split("\n\n"):
        if not block:
            continue
        fields = dict(line.split(": ", 1) for line in block.split("\n"))
        payload = fields["data"]
        frames.append((fields.get("id"), payload if payload == "[DONE]" else json.loads(payload)))
    return frames


def _text(frames: list[tuple[str | None, Any]]) -> str:
    return "".join(
        f[1]["choices"][0]["delta"].get("content") or ""
        for f in frames if isinstance(f[1], dict) and f[1].get("choices")
    )  # fmt: skip


def _relay(held_below: int = 0, include_usage: bool = False) -> ChunkRelay:
    return ChunkRelay("r1", model=None, include_usage=include_usage, held_below=held_below)


def test_a_retry_that_repeats_the_sent_text_sends_only_the_remainder() -> None:
    events = _delivered([
        _start(), _token(1, 1, "Hello"), _token(1, 2, " wor"), _retry(2),
        _token(2, 1, "Hello wo"), _token(2, 2, "rld"), _done(2, 3),
    ])  # fmt: skip
    relay, out = _relay(include_usage=True), b""
    for item in events:  # live: one by one
        out += relay.take([item], backlog=False)
    frames = _frames(out)
    assert _text(frames) == "Hello world"
    first = frames[0][1]
    assert first["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert first["id"] == "chatcmpl-r1" and first["model"] == "sim-model"
    assert first["created"] == 1_700_000_000
    assert frames[-1] == (None, "[DONE]")
    usage = frames[-2]
    assert usage[0] == "e-6" and usage[1]["choices"] == []
    assert usage[1]["usage"]["total_tokens"] == 7
    assert relay.ended


def test_a_retry_that_says_something_else_ends_the_stream_with_answer_restarted() -> None:
    events = _delivered([_start(), _token(1, 1, "Hello"), _retry(2), _token(2, 1, "Goodbye")])
    relay, out = _relay(), b""
    for item in events:
        out += relay.take([item], backlog=False)
    frames = _frames(out)
    assert _text(frames) == "Hello"
    error = frames[-1][1]["error"]
    assert error["code"] == "answer_restarted" and error["type"] == "server_error"
    assert "/v1/chat/completions/chatcmpl-r1/stream" in error["message"]
    assert relay.ended


def test_a_backlog_read_together_drops_the_superseded_attempt() -> None:
    """A re-attach from the start of an answer that diverged before: the final attempt, clean."""
    events = _delivered([
        _start(), _token(1, 1, "Hello"), _retry(2), _token(2, 1, "Goodbye"), _done(2, 2),
    ])  # fmt: skip
    frames = _frames(_relay().take(events, backlog=True))
    assert _text(frames) == "Goodbye"
    assert frames[-2][1]["choices"][0]["finish_reason"] == "stop"
    assert frames[0][1]["model"] == "sim-model"  # the start, though dropped, names the model


def test_a_reattach_after_a_position_sends_exactly_the_rest() -> None:
    events = _delivered([
        _start(), _token(1, 1, "a"), _token(1, 2, "b"), _retry(2),
        _token(2, 1, "abc"), _token(2, 2, "d"), _done(2, 3),
    ])  # fmt: skip
    # The client has events 0..2 ("ab"): the rest is "cd", whatever attempt it comes from.
    frames = _frames(_relay(held_below=3).take(events, backlog=True))
    assert _text(frames) == "cd"
    assert [f[0] for f in frames if f[0]] == ["e-4", "e-5", "e-6"]


def test_a_reattach_past_the_end_sends_only_done() -> None:
    events = _delivered([_start(), _token(1, 1, "a"), _done(1, 2)])
    frames = _frames(_relay(held_below=3).take(events, backlog=True))
    assert _text(frames) == "" and frames[-1] == (None, "[DONE]")


def test_tool_call_fragments_stream_as_openai_deltas() -> None:
    now = time.time()
    events = _delivered([
        _start(),
        ToolCallEvent(**IDS, attempt=1, seq=1, index=0, id="call_1", name="f",
                      arguments='{"a"', received_at=now),
        ToolCallEvent(**IDS, attempt=1, seq=2, index=0, arguments=":1}", received_at=now),
        _done(1, 3, "tool_calls"),
    ])  # fmt: skip
    frames = _frames(_relay().take(events, backlog=True))
    deltas = [f[1]["choices"][0]["delta"] for f in frames if isinstance(f[1], dict)]
    assert deltas[0] == {"role": "assistant", "content": None}
    assert deltas[1] == {"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                                         "function": {"name": "f", "arguments": '{"a"'}}]}
    assert deltas[2] == {"tool_calls": [{"index": 0, "function": {"arguments": ":1}"}}]}
    assert frames[-2][1]["choices"][0]["finish_reason"] == "tool_calls"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"n": 2}, "n"),
        ({"n": True}, "n"),
        ({"foo": 1}, "foo"),
        ({"session_id": "s"}, "session_id"),
        ({"modalities": ["text", "audio"]}, "modalities"),
        ({"stream_options": {"include_usage": True}}, "stream_options"),
        ({"stream": True, "stream_options": {"bar": 1}}, "stream_options.bar"),
        ({"stream": "yes"}, "stream"),
    ],
)
def test_what_tokenwire_does_not_carry_is_a_400_naming_the_param(
    body: dict[str, Any], param: str
) -> None:
    with pytest.raises(OpenAIError) as raised:
        split_body({"messages": [], "model": "m", **body})
    assert raised.value.status == 400 and raised.value.param == param
    assert raised.value.body()["error"]["type"] == "invalid_request_error"


def test_the_openai_fields_tokenwire_carries_pass_through() -> None:
    fields, options = split_body({
        "model": "m", "messages": [], "temperature": 0.5, "n": 1, "store": True,
        "stream": True, "stream_options": {"include_usage": True}, "modalities": ["text"],
    })  # fmt: skip
    assert fields == {"model": "m", "messages": [], "temperature": 0.5}
    assert options.stream and options.include_usage


def test_tokenwire_errors_become_openai_statuses() -> None:
    invalid = ApiError(422, "invalid_request", "request body is invalid",
                       details=[{"loc": ["messages", 0, "role"], "msg": "bad", "type": "x"}])
    assert from_api_error(invalid).status == 400
    assert from_api_error(invalid).param == "messages[0].role"
    limited = from_api_error(ApiError(429, "rate_limited", "over", headers={"Retry-After": "3"},
                                      details={"reason": "tokens_per_minute"}))
    assert (limited.status, limited.type, limited.code) == (429, "tokens", "rate_limit_exceeded")
    assert limited.headers == {"Retry-After": "3", "retry-after-ms": "3000"}
    assert from_api_error(ApiError(401, "unauthorized", "no")).code == "invalid_api_key"
    assert from_api_error(ApiError(503, "unavailable", "later")).type == "server_error"
    assert param_path(["messages", 1, "content", "str"]) == "messages[1].content.str"


def test_a_long_non_streamed_answer_is_collected_in_linear_time() -> None:
    """``stream: false`` assembles the answer on the event loop: reasoning, refusal and logprobs
    must not be copied whole per token (the deadline only catches such an O(n^2) stall)."""
    count, began = 40_000, time.monotonic()
    thought, refused = "thinking hard " * 15, "no, " * 50  # a provider's coalesced deltas
    logprob = {"token": "ab", "logprob": -0.5, "bytes": [97, 98], "top_logprobs": []}
    collected = Collected()
    for seq in range(count):
        for event in (
            TokenEvent(**IDS, attempt=1, seq=seq, text="ab", received_at=1.0, logprobs=[logprob]),
            ReasoningEvent(**IDS, attempt=1, seq=seq, text=thought, received_at=1.0),
            RefusalEvent(**IDS, attempt=1, seq=seq, text=refused, received_at=1.0),
        ):
            collected.add(event)
        if seq % 1000 == 0:
            assert time.monotonic() - began < 20.0, f"stalled after {seq} tokens"
    message = completion(Head("chatcmpl-r1", 1, "m"), collected, _done(1, count))["choices"][0]
    assert message["message"]["reasoning_content"] == thought * count
    assert message["message"]["refusal"] == refused * count
    assert len(message["logprobs"]["content"]) == count
