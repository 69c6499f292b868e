"""The retry policy of the protocol adapters: what a client that cannot retract output gets."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from typing import Any

from api.adapters.attempts import AttemptFilter, Diverged, drop_superseded, new_suffix
from schemas.messages import FunctionCall, ToolCall
from schemas.session_events import (
    DoneEvent,
    ErrorEvent,
    ReasoningEvent,
    RetryEvent,
    SessionEvent,
    StartEvent,
    Timings,
    TokenEvent,
    ToolCallEvent,
    Usage,
)

IDS: dict[str, Any] = {"request_id": "r1", "session_id": "s1"}


def start() -> StartEvent:
    return StartEvent(**IDS, attempt=1, seq=0, model="m", accepted_at=1.0)


def retry(attempt: int) -> RetryEvent:
    return RetryEvent(**IDS, attempt=attempt, seq=0, reason="cut")


def token(text: str, attempt: int = 1) -> TokenEvent:
    return TokenEvent(**IDS, attempt=attempt, seq=1, text=text, received_at=1.0)


def reasoning(text: str, attempt: int = 1) -> ReasoningEvent:
    return ReasoningEvent(**IDS, attempt=attempt, seq=1, text=text, received_at=1.0)


def tool(index: int, arguments: str, attempt: int = 1, **names: str) -> ToolCallEvent:
    return ToolCallEvent(
        **IDS, attempt=attempt, seq=1, index=index, arguments=arguments, received_at=1.0, **names
    )


def done(attempt: int = 1, calls: list[ToolCall] | None = None) -> DoneEvent:
    return DoneEvent(
        **IDS, attempt=attempt, seq=9, finish_reason="stop", usage=Usage(),
        timings=Timings(accepted_at=1.0, finished_at=2.0, duration_s=1.0),
        tool_calls=calls or [],
    )


def run(events: list[SessionEvent]) -> list[SessionEvent] | Diverged:
    f = AttemptFilter()
    out: list[SessionEvent] = []
    for event in events:
        got = f.accept(event)
        if isinstance(got, Diverged):
            return got
        out.extend(got)
    return out


def texts(out: list[SessionEvent] | Diverged) -> str:
    assert not isinstance(out, Diverged), out
    return "".join(e.text for e in out if isinstance(e, TokenEvent))


def test_a_single_attempt_passes_through_without_start() -> None:
    out = run([start(), token("Hel"), token("lo"), done()])
    assert not isinstance(out, Diverged)
    assert [e.type for e in out] == ["token", "token", "done"]
    assert texts(out) == "Hello"


def test_a_retry_that_repeats_sends_only_what_is_new() -> None:
    events = [start(), token("Hello "), token("wor"), retry(2), token("Hel", 2), token("lo w", 2),
              token("orld", 2), token("!", 2), done(2)]  # fmt: skip
    out = run(events)
    assert not isinstance(out, Diverged)
    assert [e.text for e in out if isinstance(e, TokenEvent)] == ["Hello ", "wor", "ld", "!"]
    assert out[-1].type == "done"


def test_a_retry_that_says_something_else_diverges() -> None:
    out = run([start(), token("Hello"), retry(2), token("Howdy", 2)])
    assert isinstance(out, Diverged)
    assert "token" in out.reason


def test_a_retry_that_ends_short_of_what_was_sent_diverges() -> None:
    out = run([start(), token("Hello world"), retry(2), token("Hello", 2), done(2)])
    assert isinstance(out, Diverged)


def test_channels_are_compared_separately() -> None:
    events = [start(), reasoning("think"), token("Hi"), retry(2), reasoning("thin", 2),
              reasoning("king", 2), token("Hi there", 2), done(2)]  # fmt: skip
    out = run(events)
    assert not isinstance(out, Diverged)
    assert [(e.type, e.text) for e in out if not isinstance(e, DoneEvent)] == [
        ("reasoning", "think"), ("token", "Hi"), ("reasoning", "ing"), ("token", " there"),
    ]  # fmt: skip


def test_a_retried_tool_call_keeps_the_id_the_client_saw() -> None:
    calls = [ToolCall(id="call_new", function=FunctionCall(name="f", arguments='{"a":1}'))]
    events = [
        start(), tool(0, '{"a"', id="call_old", name="f"), retry(2),
        tool(0, '{"', 2, id="call_new", name="f"), tool(0, 'a":1}', 2), done(2, calls),
    ]  # fmt: skip
    f = AttemptFilter()
    out: list[SessionEvent] = []
    for event in events:
        got = f.accept(event)
        assert not isinstance(got, Diverged)
        out.extend(got)
    fragments = [e for e in out if isinstance(e, ToolCallEvent)]
    assert [(e.id, e.name, e.arguments) for e in fragments] == [
        ("call_old", "f", '{"a"'), (None, None, ":1}"),
    ]  # fmt: skip
    final = out[-1]
    assert isinstance(final, DoneEvent)
    assert [c.id for c in final.tool_calls] == ["call_old"]
    assert [(t.id, t.name, t.arguments) for t in f.sent_tools()] == [("call_old", "f", '{"a":1}')]


def test_a_retried_tool_call_of_another_function_diverges() -> None:
    out = run([start(), tool(0, "{}", id="c1", name="f"), retry(2), tool(0, "{}", 2, id="c2",
               name="g")])  # fmt: skip
    assert isinstance(out, Diverged)


def test_a_tool_call_missing_from_the_final_attempt_diverges() -> None:
    out = run([start(), tool(0, "{}", id="c1", name="f"), retry(2), token("text", 2), done(2)])
    assert isinstance(out, Diverged)


def test_an_error_passes_through_even_short_of_what_was_sent() -> None:
    error = ErrorEvent(**IDS, attempt=2, seq=3, code="upstream", message="x", retryable=False)
    out = run([start(), token("Hello"), retry(2), error])
    assert not isinstance(out, Diverged)
    assert [e.type for e in out] == ["token", "error"]


def test_the_model_comes_from_start() -> None:
    f = AttemptFilter()
    assert f.accept(start()) == []
    assert f.model == "m"


def test_superseded_attempts_in_a_backlog_are_dropped() -> None:
    events = [start(), token("Hel"), retry(2), token("Hello", 2), retry(3), token("Hello!", 3),
              done(3)]  # fmt: skip
    kept = drop_superseded(events)
    assert [e.attempt for e in kept] == [3, 3, 3]
    assert texts(run(kept)) == "Hello!"
    assert drop_superseded([]) == []


def test_new_suffix() -> None:
    assert new_suffix("", "", "ab") == "ab"
    assert new_suffix("abc", "", "ab") == ""
    assert new_suffix("abc", "a", "bcd") == "d"
    assert new_suffix("abc", "abc", "d") == "d"
    assert new_suffix("abc", "a", "x") is None


# A long answer's cost must stay linear: the filter is on the event loop for every token. The
# deadline only catches a stall (copying all the text sent so far per token, O(n^2)): linear
# work takes a fraction of it; the check inside the loop makes a quadratic filter fail early.
LONG_EVENTS = 60_000
STALL_S = 20.0


def _without_stall(f: AttemptFilter, events: Iterator[SessionEvent]) -> list[SessionEvent]:
    began, out = time.monotonic(), []
    for number, event in enumerate(events):
        got = f.accept(event)
        assert not isinstance(got, Diverged), got
        out.extend(got)
        if number % 1000 == 0:
            assert time.monotonic() - began < STALL_S, f"stalled after {number} events"
    return out


def test_a_long_answer_and_its_retry_cost_linear_time() -> None:
    piece = "lorem ipsum dolor sit amet, consectetur adipiscing "  # 51 characters
    f = AttemptFilter()
    first = _without_stall(f, (token(piece) for _ in range(LONG_EVENTS)))
    again = _without_stall(f, itertools.chain(
        [retry(2)], (token(piece, 2) for _ in range(LONG_EVENTS + 1)), [done(2)],
    ))  # fmt: skip
    assert texts(first) == piece * LONG_EVENTS
    assert texts(again) == piece and again[-1].type == "done"


def test_long_tool_call_arguments_cost_linear_time() -> None:
    fragment = '"' + "abcdefghij" * 10 + '",'
    f = AttemptFilter()
    fragments = itertools.chain(
        [tool(0, "[", id="c1", name="f")], (tool(0, fragment) for _ in range(LONG_EVENTS))
    )
    out = _without_stall(f, fragments)
    assert len(out) == LONG_EVENTS + 1
    assert f.sent_tools()[0].arguments == "[" + fragment * LONG_EVENTS
