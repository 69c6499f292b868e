"""Writes one request's events to its session's place (tokenwire/session_log.py), numbering
them per attempt.

Token events are handed to the producer without waiting for the broker (the idempotent producer
keeps them in order); ``done`` is sent once every token is confirmed, and awaited, because the
request's offset may be committed only once its end is durable.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiokafka import AIOKafkaProducer, TopicPartition
from pydantic import BaseModel

from agents.chat.stream_output import REASONING, REFUSAL, TEXT, TOOL_CALL, Output
from schemas.messages import ToolCall
from schemas.requests import ChatRequest
from schemas.session_events import (
    DoneEvent,
    ErrorEvent,
    ReasoningEvent,
    RefusalEvent,
    RetryEvent,
    StartEvent,
    Timings,
    TokenEvent,
    ToolCallEvent,
    Usage,
)


async def send(
    producer: AIOKafkaProducer,
    topic: str,
    key: str,
    event: BaseModel | bytes,
    at: float | None = None,
    *,
    partition: int | None = None,
    headers: list[tuple[str, bytes]] | None = None,
) -> asyncio.Future[object]:
    """Queue one event (or its JSON); the returned future resolves when the broker has it
    (acks=all).

    ``at``: the record's timestamp (default: now), so that a record sent again carries the
    timestamp of the first. ``partition``: None lets the key choose. ``headers``: the trace
    context, on the few records that carry it (agents/chat/request_trace.py).
    """
    timestamp_ms = None if at is None else int(at * 1000)
    value = event if isinstance(event, bytes) else event.model_dump_json().encode()
    return await producer.send(
        topic, value=value, key=key.encode(),
        timestamp_ms=timestamp_ms, partition=partition, headers=headers,
    )  # fmt: skip


PRUNE_AT = 256


@dataclass
class SessionWriter:
    producer: AIOKafkaProducer
    place: TopicPartition
    request: ChatRequest
    request_id: str
    model: str
    accepted_at: float
    # Told of each event's offset once the broker has it (the shared layout's lower bounds).
    on_written: Callable[[TopicPartition, int], None] | None = None
    attempt: int = 1
    _seq: int = 0
    _pending: list[asyncio.Future[object]] = field(default_factory=list)
    _prune_at: int = PRUNE_AT
    # What the first event waits for (the shared layout's index write, session_log.py).
    opening: Awaitable[object] | None = None
    # Events handed to the producer and not yet acknowledged (adaptive coalescing's signal).
    unacked: int = 0
    # The error event once built: a retried write of the same error sends this event (same seq)
    # again rather than a second terminal event.
    _error: ErrorEvent | None = None

    def _ids(self) -> dict[str, object]:
        """The ids of the next event; its ``seq`` is taken only once the event is handed to the
        producer (``_send``), so an event that fails to build or send leaves no gap."""
        return {
            "request_id": self.request_id,
            "session_id": self.request.session_id,
            "attempt": self.attempt,
            "seq": self._seq,
        }

    @property
    def topic(self) -> str:
        return self.place.topic

    async def _send(
        self, event: BaseModel | bytes, *, again: bool = False,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> None:  # fmt: skip
        if self.opening is not None:
            # Raises if the index write failed: the event is not written, the write is retried.
            await self.opening
            self.opening = None
        future = await send(
            self.producer, self.place.topic, self.request.session_id, event,
            partition=self.place.partition, headers=headers,
        )  # fmt: skip
        self.unacked += 1
        future.add_done_callback(self._written)
        self._pending.append(future)
        if not again:
            self._seq += 1
        if len(self._pending) >= self._prune_at:
            # Long answers: forget deliveries already confirmed, keep failures to raise later;
            # the next prune waits until the list doubled (a slow broker: no rescans per send).
            self._pending = [f for f in self._pending if not f.done() or f.exception()]
            self._prune_at = max(PRUNE_AT, 2 * len(self._pending))

    async def begin(self, attempt: int, *, reason: str = "", delay_s: float = 0.0) -> None:
        """Open an attempt: ``start`` for the first, ``retry`` (drop partial text) after that."""
        self.attempt, self._seq = attempt, 0
        if attempt == 1:
            await self._send(
                StartEvent(**self._ids(), model=self.model, accepted_at=self.accepted_at)
            )
        else:
            await self._send(RetryEvent(**self._ids(), reason=reason, delay_s=delay_s))

    def resume(self, attempt: int, next_seq: int) -> None:
        """Go on with an attempt already on the log (a re-delivered request being ended)."""
        self.attempt, self._seq = attempt, next_seq

    async def token(self, text: str, received_at: float) -> None:
        await self._send(TokenEvent(**self._ids(), text=text, received_at=received_at))

    async def output(self, out: Output) -> None:
        """The event of one coalesced lane of output (stream_output.py)."""
        kind, index = out.lane
        at = out.received_at
        if kind == TEXT:
            event: BaseModel = TokenEvent(
                **self._ids(), text=out.text, received_at=at, logprobs=out.logprobs
            )
        elif kind == TOOL_CALL:
            event = ToolCallEvent(
                **self._ids(), index=index, id=out.tool_id, name=out.tool_name,
                arguments=out.text, received_at=at,
            )  # fmt: skip
        elif kind == REFUSAL:
            event = RefusalEvent(**self._ids(), text=out.text, received_at=at)
        else:
            assert kind == REASONING
            event = ReasoningEvent(**self._ids(), text=out.text, received_at=at)
        await self._send(event)

    async def done(
        self,
        finish_reason: str,
        usage: Usage,
        timings: Timings,
        tool_calls: list[ToolCall] | None = None,
    ) -> None:
        # Every token must be on the broker before ``done`` is sent: a token batch the broker
        # refused while a later batch carrying ``done`` landed would leave a finished answer
        # with a hole. A failed token raises here and the attempt is retried instead.
        await self.flush()
        await self._send(
            DoneEvent(
                **self._ids(), finish_reason=finish_reason, usage=usage, timings=timings,
                tool_calls=tool_calls or [],
            )
        )
        await self.flush()

    async def error(
        self,
        code: str,
        message: str,
        *,
        retryable: bool,
        emitted_at: float | None = None,
        usage: Usage | None = None,
    ) -> None:
        """``emitted_at``: the request's ``finished_at``, so its ``failed`` record can be rebuilt
        from this event alone (request_ledger.py)."""
        again = self._error is not None and (self._error.code, self._error.message) == (
            code, message
        )
        if not again:
            at = {} if emitted_at is None else {"emitted_at": emitted_at}
            self._error = ErrorEvent(
                **self._ids(), code=code, message=message, retryable=retryable, usage=usage, **at
            )
        await self._send(self._error, again=again)
        await self.flush()

    def forget_pending(self) -> None:
        """Give up on sends not confirmed yet (after a failure), so the next write starts clean."""
        for future in self._pending:
            # Retrieved, so a failure already handled is not reported again as "never retrieved".
            future.add_done_callback(_retrieve)
        self._pending = []

    async def flush(self) -> None:
        """Wait until everything sent so far is on the broker; raises if any send failed."""
        pending, self._pending = self._pending, []
        if pending:
            await asyncio.gather(*pending)


    def _written(self, future: asyncio.Future[object]) -> None:
        self.unacked -= 1
        if self.on_written is not None and not future.cancelled() and not future.exception():
            metadata = future.result()
            self.on_written(self.place, metadata.offset)  # type: ignore[attr-defined]


def _retrieve(future: asyncio.Future[object]) -> None:
    if not future.cancelled():
        future.exception()
