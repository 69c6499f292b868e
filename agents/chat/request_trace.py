"""The worker's spans of a request (names in ``tokenwire.tracing``); used only while tracing is
on, chosen once per record or attempt, so the untraced path is the code as it was.

Parents: ``chat.queue_wait`` and ``chat.request`` continue the record's ``traceparent`` (the
edge's ``kafka.publish``, or any producer's); ``chat.attempt`` is a child of the request,
``llm.call`` of its attempt, ``session.write`` of the request (a write batch may hold the
events of two attempts). The request's context goes out on the session records that open an
attempt, carry its first output, or end the request, for the edge's delivery spans.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka import TopicPartition
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from pydantic import BaseModel

from agents.chat.cancellation import CancelSignal
from agents.chat.llm_stream import Chunk
from agents.chat.session_writer import SessionWriter
from schemas.requests import ChatRequest
from tokenwire import tracing
from tokenwire.errors import GenerationError

# Session records that carry the request's trace context (besides an attempt's first output).
MARKED_TYPES = frozenset({"start", "retry", "done", "error"})


@dataclass(frozen=True)
class Taken:
    """A record the worker took: the context its headers carry (the parent of the request's
    spans) and when it was taken (where ``chat.request`` starts)."""

    parent: Context
    at_ns: int


def taken(headers: Sequence[tuple[str, bytes]] | None, timestamp_s: float | None,
          tp: TopicPartition, offset: int) -> Taken:
    """``chat.queue_wait`` of a record just taken, from its timestamp to now."""
    parent = tracing.extract(headers)
    now_ns = time.time_ns()
    start_ns = now_ns if timestamp_s is None else min(now_ns, int(timestamp_s * 1e9))
    span = tracing.tracer().start_span(
        tracing.QUEUE_WAIT, context=parent, start_time=start_ns, attributes=_coordinates(tp, offset)
    )
    span.end(end_time=now_ns)
    return Taken(parent, now_ns)


async def within_request(
    taken: Taken, request: ChatRequest, tp: TopicPartition, offset: int, work: Awaitable[None]
) -> None:
    """Run ``work`` (the request's handling) with ``chat.request`` current; the span starts
    when the record was taken, so it holds the wait for the session's turn."""
    attributes = {
        **_coordinates(tp, offset),
        "tokenwire.request_id": request.request_id or "",
        "tokenwire.session_id": request.session_id,
        "gen_ai.request.model": request.model or "",
    }
    with tracing.tracer().start_as_current_span(
        tracing.REQUEST, context=taken.parent, kind=SpanKind.CONSUMER, attributes=attributes,
        start_time=taken.at_ns,
    ):
        await work


def note_outcome(finish_reason: str, error_code: str | None) -> None:
    """On the current ``chat.request``: how it ended."""
    span = trace.get_current_span()
    if error_code is not None:
        span.set_attribute("error.type", error_code)
        span.set_status(Status(StatusCode.ERROR, error_code))
    else:
        span.set_attribute("tokenwire.finish_reason", finish_reason)


@contextlib.contextmanager
def attempt_span(writer: SessionWriter) -> Iterator[Span]:
    """``chat.attempt``, current while the attempt runs (its TTFT and token-emit observations
    then carry its trace id as their exemplar)."""
    attributes: dict[str, Any] = {"tokenwire.attempt": writer.attempt}
    reason = getattr(writer, "retry_reason", "")
    if reason:
        attributes["retry.reason"] = reason
    with tracing.tracer().start_as_current_span(
        tracing.ATTEMPT, attributes=attributes, record_exception=False,
        set_status_on_exception=False,
    ) as span:
        try:
            yield span
        except GenerationError as error:
            span.set_attribute("error.type", error.code)
            span.set_status(Status(StatusCode.ERROR, error.message[:200]))
            raise


async def llm_call(chunks: AsyncIterator[Chunk], model: str) -> AsyncIterator[Chunk]:
    """``chunks`` as they come, counted in an ``llm.call`` span (two additions per chunk, no
    span work per chunk)."""
    span = tracing.tracer().start_span(
        tracing.LLM_CALL, kind=SpanKind.CLIENT,
        attributes={"gen_ai.system": "openai", "gen_ai.request.model": model},
    )  # fmt: skip
    started, count, output = time.time(), 0, 0
    try:
        async with contextlib.aclosing(chunks):  # type: ignore[type-var]
            async for chunk in chunks:
                count += 1
                if chunk.has_output:
                    if output == 0:
                        span.add_event("first_chunk")
                        ttfc_ms = (chunk.received_at - started) * 1000
                        span.set_attribute("llm.time_to_first_chunk_ms", round(ttfc_ms, 3))
                    output += 1
                if chunk.usage is not None:
                    span.set_attribute("gen_ai.usage.input_tokens", chunk.usage.prompt_tokens)
                    span.set_attribute(
                        "gen_ai.usage.output_tokens", chunk.usage.completion_tokens
                    )
                yield chunk
    except GenerationError as error:
        span.set_attribute("error.type", error.code)
        span.set_status(Status(StatusCode.ERROR, error.message[:200]))
        raise
    finally:
        span.set_attribute("llm.chunks", count)
        span.set_attribute("llm.output_chunks", output)
        span.end()


def cancel_applied(signal: CancelSignal, stage: str) -> None:
    """``chat.cancel``: from the user's cancel to now (the upstream stream closed, or the
    request ended without generating), linked to the edge's span that published it."""
    now_ns = time.time_ns()
    requested = signal.requested_at
    start_ns = now_ns if requested is None else min(now_ns, int(requested * 1e9))
    links = tracing.link_to(tracing.extract(signal.trace_headers)) if signal.trace_headers else []
    span = tracing.tracer().start_span(
        tracing.CANCEL, start_time=start_ns, links=links, attributes={"tokenwire.stage": stage}
    )
    span.end(end_time=now_ns)


def _coordinates(tp: TopicPartition, offset: int) -> dict[str, Any]:
    return {
        "messaging.system": "kafka",
        "messaging.destination.name": tp.topic,
        "messaging.destination.partition.id": str(tp.partition),
        "messaging.kafka.offset": offset,
    }


@dataclass
class TracedSessionWriter(SessionWriter):
    """A ``SessionWriter`` that puts the request's trace context on the records that open an
    attempt, carry its first output, or end the request, and spans each write batch: the
    events sent between two waits for the broker (``flush``), with their count and bytes.
    Made within ``chat.request`` (runtime._writer)."""

    retry_reason: str = ""
    _request_span: Span = field(default_factory=trace.get_current_span)
    _headers: list[tuple[str, bytes]] = field(default_factory=list)
    _marked_attempt: int = 0
    _batch: Span | None = None
    _batch_events: int = 0
    _batch_bytes: int = 0

    def __post_init__(self) -> None:
        self._headers = tracing.span_headers(self._request_span)
        self._context = trace.set_span_in_context(self._request_span)

    async def begin(self, attempt: int, *, reason: str = "", delay_s: float = 0.0) -> None:
        self.retry_reason = reason
        await super().begin(attempt, reason=reason, delay_s=delay_s)

    async def _send(
        self, event: BaseModel | bytes, *, again: bool = False,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> None:  # fmt: skip
        assert isinstance(event, BaseModel)
        kind = getattr(event, "type", "")
        if kind in MARKED_TYPES:
            headers = self._headers
        elif self._marked_attempt != self.attempt:
            self._marked_attempt = self.attempt  # this attempt's first output
            headers = self._headers
        if self._batch is None:
            self._batch = tracing.tracer().start_span(
                tracing.SESSION_WRITE, context=self._context,
                attributes={"messaging.destination.name": self.place.topic,
                            "messaging.destination.partition.id": str(self.place.partition)},
            )  # fmt: skip
            self._batch_events = self._batch_bytes = 0
        value = event.model_dump_json().encode()  # encoded here to count its bytes
        self._batch_events += 1
        self._batch_bytes += len(value)
        await super()._send(value, again=again, headers=headers)

    async def flush(self) -> None:
        batch, self._batch = self._batch, None
        try:
            await super().flush()
        except BaseException as exc:
            if batch is not None:
                batch.set_status(Status(StatusCode.ERROR, type(exc).__name__))
            raise
        finally:
            if batch is not None:
                batch.set_attribute("tokenwire.session.events", self._batch_events)
                batch.set_attribute("tokenwire.session.bytes", self._batch_bytes)
                batch.end()
