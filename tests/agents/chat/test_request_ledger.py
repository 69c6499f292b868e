"""``RequestHistory.outcome``: what a finished request's session topic says its generation
returned, so that its lifecycle record can be sent again with the same content."""

from __future__ import annotations

from typing import Any

from agents.chat import request_ledger
from agents.chat.request_ledger import REDELIVERED
from schemas.session_events import ErrorEvent, SessionEvent
from tests.replay.scripted_log import Stream


def history_of(*events: SessionEvent) -> Any:
    return request_ledger.history_of([e.model_dump(mode="json") for e in events])


def test_a_done_request_gives_back_its_answer_usage_timings_and_retries() -> None:
    s = Stream("r1", "s1", at=1000.0)
    events = [s.start(), s.token("Par"), s.retry("http_429"), s.token("Full"), s.token(" text")]
    done = s.done(completion_tokens=3)
    history = history_of(*events, done)
    outcome = history.outcome()

    assert history.finished and outcome is not None and outcome.ok
    assert (outcome.attempt, outcome.retries, outcome.answer) == (2, 1, "Full text")
    assert (outcome.usage, outcome.timings, outcome.finish_reason) == (
        done.usage, done.timings, "stop")


def test_retries_count_from_the_run_a_redelivery_opened() -> None:
    s = Stream("r1", "s1", at=1000.0)
    events = [s.start(), s.token("a"), s.retry("stall"), s.token("b")]  # then a crash
    events += [s.retry(REDELIVERED), s.token("c"), s.retry("http_503"), s.token("d"), s.done()]

    outcome = history_of(*events).outcome()

    assert outcome is not None
    assert (outcome.attempt, outcome.retries, outcome.answer) == (4, 1, "d")


def test_a_failed_request_gives_back_its_error_and_timings_from_its_events() -> None:
    s = Stream("r1", "s1", at=1000.0)
    start = s.start()
    error = ErrorEvent(**s._ids(), code="http_400", message="bad", retryable=False,
                       emitted_at=1002.5)

    outcome = history_of(start, s.token("x"), error).outcome()

    assert outcome is not None and not outcome.ok and outcome.error is not None
    assert (outcome.error.code, outcome.error.message, outcome.error.retryable) == (
        "http_400", "bad", False)
    t = outcome.timings
    assert (t.accepted_at, t.finished_at, t.duration_s, t.first_token_at) == (
        1000.0, 1002.5, 2.5, None)


def test_a_request_refused_before_it_ran_ends_where_its_error_was_written() -> None:
    busy = ErrorEvent(request_id="r1", session_id="s1", attempt=1, seq=0, code="session_busy",
                      message="later", retryable=True, emitted_at=1234.0)

    outcome = history_of(busy).outcome()

    assert outcome is not None and outcome.retries == 0
    assert (outcome.timings.accepted_at, outcome.timings.duration_s) == (1234.0, 0.0)


def test_an_unfinished_request_has_no_outcome_and_says_what_comes_next() -> None:
    s = Stream("r1", "s1")
    history = history_of(s.start(), s.token("a"), s.retry(), s.token("b"))
    assert (history.finished, history.last_attempt, history.outcome()) == (False, 2, None)
