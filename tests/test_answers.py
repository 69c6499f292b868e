"""Folding session events into answers: the rule every client applies (``tokenwire.answers``)."""

from __future__ import annotations

from typing import Any

from schemas.lifecycle import FinalMessage
from schemas.messages import ToolCall
from schemas.session_events import CANCELLED, SessionEvent
from tests.replay.scripted_log import Stream
from tokenwire.answers import Answer, fold


def folded(*events: SessionEvent) -> Answer:
    """As a client folds them: the JSON the edge sends, one event at a time."""
    [answer] = fold(e.model_dump(mode="json") for e in events).values()
    return answer


def call(id: str, name: str, arguments: str) -> ToolCall:
    return ToolCall.model_validate({"id": id, "function": {"name": name, "arguments": arguments}})


def wire(calls: list[ToolCall]) -> list[dict[str, Any]]:
    return [c.model_dump() for c in calls]


def test_a_tool_call_is_assembled_from_its_fragments_named_by_the_first() -> None:
    s = Stream("r-1", "s-1")
    answer = folded(
        s.start(),
        s.tool_call(0, '{"ci', id="call_a", name="get_weather"),
        s.tool_call(0, 'ty": "Par'),
        s.tool_call(0, 'is"}'),
        s.done(finish_reason="tool_calls"),
    )

    assert wire(answer.tool_calls) == wire([call("call_a", "get_weather", '{"city": "Paris"}')])
    assert (answer.status, answer.finish_reason, answer.text) == ("done", "tool_calls", "")


def test_parallel_tool_calls_are_kept_apart_by_index_whatever_the_fragment_order() -> None:
    s = Stream("r-2", "s-1")
    answer = folded(
        s.start(),
        s.tool_call(1, '{"city": ', id="call_b", name="get_time"),
        s.tool_call(0, '{"city": ', id="call_a", name="get_weather"),
        s.tool_call(1, '"Oslo"}'),
        s.tool_call(0, '"Paris"}'),
        s.done(finish_reason="tool_calls"),
    )

    assert wire(answer.tool_calls) == wire([
        call("call_a", "get_weather", '{"city": "Paris"}'),
        call("call_b", "get_time", '{"city": "Oslo"}'),
    ])


def test_a_retry_drops_every_partial_output_of_the_attempt_before() -> None:
    s = Stream("r-3", "s-1")
    answer = folded(
        s.start(),
        s.reasoning("thinking..."),
        s.token("Let me"),
        s.tool_call(0, '{"ci', id="call_cut", name="get_weather"),
        s.refusal("I can"),
        s.retry(),
        s.tool_call(0, '{"city": "Rome"}', id="call_new", name="get_weather"),
        s.done(finish_reason="tool_calls"),
    )

    assert wire(answer.tool_calls) == wire([call("call_new", "get_weather", '{"city": "Rome"}')])
    assert [d.id for d in answer.tool_call_drafts] == ["call_new"], "no cut fragment survives"
    assert (answer.text, answer.refusal, answer.reasoning) == ("", None, None)
    assert answer.discarded == ["Let me"] and answer.retries == 1


def test_a_refusal_and_reasoning_fold_into_the_final_message() -> None:
    s = Stream("r-4", "s-1")
    answer = folded(
        s.start(),
        s.reasoning("The user asks for "),
        s.reasoning("something harmful."),
        s.refusal("I can't help "),
        s.refusal("with that."),
        s.done(),
    )

    assert answer.final_message() == FinalMessage(
        content="", tool_calls=[], refusal="I can't help with that.",
        reasoning="The user asks for something harmful.",
    )


def test_done_reports_the_workers_tool_calls_beside_the_folded_ones() -> None:
    s = Stream("r-5", "s-1")
    reported = [call("call_a", "get_weather", '{"city": "Paris"}')]
    answer = folded(
        s.start(),
        s.tool_call(0, '{"city": "Pa', id="call_a", name="get_weather"),
        s.done(finish_reason="tool_calls", tool_calls=reported),
    )

    assert wire(answer.reported_tool_calls or []) == wire(reported)
    assert wire(answer.tool_calls) == wire([call("call_a", "get_weather", '{"city": "Pa')])


def test_a_cancelled_answer_is_done_marked_cancelled_and_keeps_its_partial_output() -> None:
    s = Stream("r-6", "s-1")
    answer = folded(s.start(), s.token("Once upon"), s.done(finish_reason=CANCELLED))
    plain = folded(s.start(), s.token("Once upon"), s.done())

    assert (answer.status, answer.finished, answer.cancelled) == ("done", True, True)
    assert answer.final_message().content == "Once upon"
    assert plain.cancelled is False


def test_a_call_never_named_is_kept_as_a_draft_not_as_a_tool_call() -> None:
    s = Stream("r-7", "s-1")
    answer = folded(s.start(), s.tool_call(0, '{"x": 1}'), s.done(finish_reason="tool_calls"))

    assert answer.tool_calls == []
    assert [(d.index, d.id, d.name, d.arguments) for d in answer.tool_call_drafts] == [
        (0, None, None, '{"x": 1}')]
