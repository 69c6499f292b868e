"""What the log already says about a request, for records that may be delivered again.

After a crash or a rebalance, records between the committed offset and the partition's end at
assignment time may already have been (partly) answered. Their session's log is the truth (read
through tokenwire/session_log.py, in either layout): a
terminal event means "finished, do not generate again"; otherwise the highest attempt seen says
which attempt comes next. Records produced after assignment are new and skip the read.

A finished request may still lack its ``completed``/``failed`` record on ``chat.events``: the
worker writes that record after the terminal event, so a crash in between leaves only the
terminal. ``RequestHistory.outcome`` rebuilds what the generation had returned from the session
topic (the terminal event, the final run's text and retries), so the record can be sent again
with the same content; readers de-duplicate it by ``(type, request_id)`` (schemas/lifecycle.py).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from aiokafka import TopicPartition
from pydantic import ValidationError

from agents.chat.generation import Outcome
from schemas.lifecycle import FinalMessage
from schemas.session_events import (
    OUTPUT_TYPES,
    DoneEvent,
    ErrorEvent,
    StartEvent,
    Timings,
    Usage,
    session_event_adapter,
)
from tokenwire.answers import fold
from tokenwire.errors import GenerationError
from tokenwire.kafka_clients import new_consumer, stop_consumer
from tokenwire.kafka_settings import KafkaConnection

log = logging.getLogger(__name__)

READ_TIMEOUT_MS = 500
# The reason of the ``retry`` event that opens a run resumed after a re-delivery.
REDELIVERED = "redelivered"


@dataclass(frozen=True)
class RequestHistory:
    last_attempt: int = 0
    finished: bool = False
    # This request's events in log order (JSON mappings); kept only while reading one request.
    events: list[dict[str, Any]] = field(default_factory=list, repr=False)

    @property
    def next_seq(self) -> int:
        """The ``seq`` of the next event of the last attempt."""
        seqs = [int(e.get("seq", -1)) for e in self.events if e.get("attempt") == self.last_attempt]
        return max(seqs, default=-1) + 1

    @property
    def output_events(self) -> int:
        """Output events of the last attempt (what a crashed attempt had streamed)."""
        return sum(
            1 for e in self.events
            if e.get("attempt") == self.last_attempt and e.get("type") in OUTPUT_TYPES
        )  # fmt: skip

    @property
    def final_run_retries(self) -> int:
        """Retries of the run on the log, counted as ``_outcome`` counts them."""
        opened = _run_opened_at(self.events)
        return sum(1 for e in self.events[opened + 1 :] if e.get("type") == "retry")

    def partial_message(self) -> FinalMessage:
        """What the last attempt on the log had produced (a client's view of it)."""
        if not self.events:
            return FinalMessage()
        answer = fold(self.events).get(str(self.events[0].get("request_id")))
        return answer.final_message() if answer is not None else FinalMessage()

    def outcome(self) -> Outcome | None:
        """What the generation returned, as the session topic tells it; None if unfinished."""
        if not self.finished:
            return None
        try:
            return _outcome(self.events)
        except (ValidationError, StopIteration, ValueError):
            log.warning("terminal event unreadable, outcome not rebuilt", exc_info=True)
            return None


class AssignmentMarks:
    """Per source partition: its end offset when this worker was assigned it."""

    def __init__(self) -> None:
        self._marks: dict[TopicPartition, int] = {}

    def set(self, marks: dict[TopicPartition, int]) -> None:
        self._marks.update(marks)

    def drop(self, partitions: set[TopicPartition]) -> None:
        for tp in partitions:
            self._marks.pop(tp, None)

    def may_be_redelivered(self, tp: TopicPartition, offset: int) -> bool:
        mark = self._marks.get(tp)
        return mark is None or offset < mark


async def end_offsets(
    kafka: KafkaConnection, partitions: list[TopicPartition]
) -> dict[TopicPartition, int]:
    consumer = new_consumer(kafka, client_id="tokenwire-worker-marks")
    await consumer.start()
    try:
        # Assigned partitions have their metadata fetched; others can stall on stale metadata.
        consumer.assign(partitions)
        return dict(await consumer.end_offsets(partitions))
    finally:
        await stop_consumer(consumer)


def history_of(events: list[dict[str, Any]]) -> RequestHistory:
    attempt = max((int(e.get("attempt", 0)) for e in events), default=0)
    finished = any(e.get("type") in ("done", "error") for e in events)
    return RequestHistory(last_attempt=attempt, finished=finished, events=events)


def _outcome(events: list[dict[str, Any]]) -> Outcome:
    """The ``Outcome`` ``Generation.run`` returned before it wrote the first terminal event.

    Retries count as the generation counts them: the ``retry`` events of the final run, the one
    opened by the last ``start`` or ``redelivered`` retry. A failed request's timings run from
    the run's start (``accepted_at`` of its ``start``; for a resumed run, its opening event) to
    the ``error`` event, which the worker writes at ``timings.finished_at``.
    """
    end = next(i for i, e in enumerate(events) if e.get("type") in ("done", "error"))
    terminal = session_event_adapter.validate_python(events[end])
    opened = _run_opened_at(events[:end])
    retries = sum(1 for e in events[opened + 1 : end] if e.get("type") == "retry")
    if isinstance(terminal, DoneEvent):
        answer = fold(events[: end + 1])[terminal.request_id]
        return Outcome(
            True, terminal.attempt, retries, terminal.timings, answer.text,
            terminal.finish_reason, terminal.usage, message=answer.final_message(),
        )  # fmt: skip
    assert isinstance(terminal, ErrorEvent)
    accepted_at = terminal.emitted_at  # refused before any run began (session_busy)
    if opened >= 0:
        opener = session_event_adapter.validate_python(events[opened])
        accepted_at = opener.accepted_at if isinstance(opener, StartEvent) else opener.emitted_at
    timings = Timings(
        accepted_at=accepted_at,
        finished_at=terminal.emitted_at,
        duration_s=terminal.emitted_at - accepted_at,
    )
    error = GenerationError(terminal.code, terminal.message, retryable=terminal.retryable)
    usage = terminal.usage or Usage()
    return Outcome(False, terminal.attempt, retries, timings, error=error, usage=usage)


def _run_opened_at(events: list[dict[str, Any]]) -> int:
    """Index of the event that opened the final run (-1: none is left)."""
    for index in range(len(events) - 1, -1, -1):
        kind, reason = events[index].get("type"), events[index].get("reason")
        if kind == "start" or (kind == "retry" and reason == REDELIVERED):
            return index
    return -1
