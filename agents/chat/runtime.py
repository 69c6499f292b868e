"""The chat agent's resources and per-record logic, owned by one mode.Service.

Offsets: the agent iterates with acks off and acks a record only when its terminal event is on
the broker. Faust commits the longest acked prefix of each partition, so a crash can never commit
past a request that is still being generated (the failure of faust-streaming #606 with
``concurrency > 1``); the re-delivered record is recognised through ``request_ledger``.

The ``completed``/``failed`` record on ``chat.events`` is written after the terminal event and
before the ack. A re-delivered request whose session topic already holds its terminal event is
therefore not generated again but has its record sent again, rebuilt from the session topic
with the same content and timestamp: a crash between the two writes loses nothing, and readers
count the record once per ``(type, request_id)`` (schemas/lifecycle.py).

A cancel (agents/chat/cancellation.py) ends a request wherever it is: queued (never sent to the
LLM), generating (the upstream stream is closed, the text so far kept), or delivered again after
a crash (found on ``chat.control`` itself). It ends with ``done`` ``finish_reason: "cancelled"``
and a ``completed`` record saying so.

No record may wedge its partition (issue #11): decoding never raises, every failure of a valid
request ends it with an ``error`` event, and writes Kafka refuses are retried in the record's
own task (``write_retry``) while the agent goes on taking records.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import faust
import mode
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from agents.chat import request_trace
from agents.chat.cancellation import CancelRegistry, CancelSignal, ControlFollower, cancel_on_log
from agents.chat.dead_letter import dead_letter
from agents.chat.generation import Generation, Outcome
from agents.chat.inflight import InflightRequests
from agents.chat.llm_stream import new_client
from agents.chat.ordered_acks import OrderedAcks
from agents.chat.request_intake import Rejection, decode_request
from agents.chat.request_ledger import (
    REDELIVERED,
    AssignmentMarks,
    RequestHistory,
    end_offsets,
    history_of,
)
from agents.chat.request_trace import TracedSessionWriter
from agents.chat.retry_policy import RetryPolicy
from agents.chat.session_janitor import SessionJanitor
from agents.chat.session_writer import SessionWriter, send
from agents.chat.write_retry import WriteRetry
from agents.metrics import WorkerMetrics
from schemas.lifecycle import Accepted, Completed, Failed, FinalMessage, FirstToken
from schemas.requests import ChatRequest
from schemas.session_events import CANCELLED, Timings, Usage
from tokenwire import tracing
from tokenwire.errors import GenerationError, TopicError
from tokenwire.exemplars import observe
from tokenwire.kafka_clients import new_admin, new_producer
from tokenwire.session_log import TopicSessionLog, worker_session_log
from tokenwire.settings import Settings
from tokenwire.topics import ensure_core_topics

log = logging.getLogger(__name__)

READY_TIMEOUT_S = 60.0


class ChatRuntime(mode.Service):
    def __init__(self, settings: Settings, metrics: WorkerMetrics, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        self.metrics = metrics
        self.policy = RetryPolicy.from_settings(settings)
        self.writes = WriteRetry.from_settings(settings)
        self.inflight = InflightRequests(settings.worker_concurrency, settings.worker_max_pending)
        self._per_session = settings.worker_max_pending_per_session
        self.marks = AssignmentMarks()
        self.acks = OrderedAcks(settings.worker_max_unacked)
        self.cancels = CancelRegistry()
        self.ready = asyncio.Event()

    async def on_start(self) -> None:
        s = self.settings
        await ensure_core_topics(s)
        self.producer: AIOKafkaProducer = new_producer(s.kafka_connection, client_id=s.worker_id)
        await self.producer.start()
        self.admin = new_admin(s.kafka_connection, client_id=f"{s.worker_id}-admin")
        await self.admin.start()
        self.client = new_client(s)
        self.session_log = worker_session_log(s, self.producer, self.admin)
        if isinstance(self.session_log, TopicSessionLog):
            self.janitor = SessionJanitor(s, self.admin, self.session_log.topics)
            self.add_future(self.janitor.run_forever())
        self.control = ControlFollower(s, self.cancels, self.producer)
        await self.control.start()
        self.add_future(self.control.run_forever())
        self.ready.set()
        log.info(
            "chat runtime ready requests_topic=%s concurrency=%s",
            s.requests_topic,
            s.worker_concurrency,
        )

    async def on_stop(self) -> None:
        await self.inflight.cancel()
        # on_start may have failed half-way: close what exists.
        if (control := getattr(self, "control", None)) is not None:
            await control.stop()
        if (session_log := getattr(self, "session_log", None)) is not None:
            await session_log.close()
        if (producer := getattr(self, "producer", None)) is not None:
            await producer.stop()
        if (admin := getattr(self, "admin", None)) is not None:
            await admin.close()
        if (client := getattr(self, "client", None)) is not None:
            await client.close()

    # --- rebalance -----------------------------------------------------------------------
    async def on_assigned(self, sender: Any, assigned: set[TopicPartition], **_: Any) -> None:
        ours = [tp for tp in assigned if tp.topic == self.settings.requests_topic]
        if not ours:
            return
        try:
            async with asyncio.timeout(READY_TIMEOUT_S):
                await self.ready.wait()
            # Control ends before request marks (cancellation.py says why the order matters).
            await self.control.follow_from_end([tp.partition for tp in ours])
        except Exception:
            # Cancels of new requests on these partitions are missed until the next assignment;
            # re-delivered ones are still checked on the log.
            log.exception("could not follow chat.control at assignment partitions=%s", ours)
        try:
            self.marks.set(await end_offsets(self.settings.kafka_connection, ours))
        except Exception:
            # Without marks every record is checked against its session topic: slower, still safe.
            log.exception("could not read end offsets at assignment partitions=%s", ours)
        if self.settings.session_layout == "shared":
            sessions = [TopicPartition(self.settings.sessions_topic, tp.partition) for tp in ours]
            try:
                ends = await end_offsets(self.settings.kafka_connection, sessions)
                self.session_log.note_ends({tp.partition: end for tp, end in ends.items()})
            except Exception:
                # Each partition's end is then asked of the broker by its first request.
                log.exception("could not read session partition ends partitions=%s", ours)

    async def on_revoked(self, sender: Any, revoked: set[TopicPartition], **_: Any) -> None:
        # Their records will be delivered again (to us or another worker) and resume there.
        await self.inflight.cancel(revoked)
        self.marks.drop(revoked)
        self.acks.forget(revoked)
        ours = {tp.partition for tp in revoked if tp.topic == self.settings.requests_topic}
        if ours and hasattr(self, "control"):
            await self.control.unfollow(ours)

    # --- records -------------------------------------------------------------------------
    async def take(self, event: faust.EventT, stream: faust.StreamT) -> None:
        """Handle one ``chat.requests`` record; returns once the worker has room for it.

        Never raises for a record: whatever it holds, it ends in the DLQ or with a terminal
        event, and is acked, so the records behind it are never held back for good.
        """
        await self.ready.wait()
        message = event.message
        tp = TopicPartition(message.topic, message.partition)
        await self.acks.wait_for_room()
        await self.inflight.admit()
        self.acks.track(tp, message.offset, event)
        decoded = decode_request(message.value, partition=message.partition, offset=message.offset)
        taken = None
        if tracing.is_enabled():
            taken = request_trace.taken(message.headers, message.timestamp, tp, message.offset)
        if isinstance(decoded, Rejection):
            rejection = decoded
            self.inflight.start(tp, lambda: self._dead_letter(rejection, message, stream))
        elif self.inflight.backlog(decoded.session_id) >= self._per_session:
            request = decoded
            self.inflight.start(tp, lambda: self._traced(
                taken, request, tp, message.offset,
                self._refuse_busy(request, stream, tp, message.offset),
            ))  # fmt: skip
        else:
            request = decoded
            self.inflight.start(
                tp,
                lambda: self._traced(
                    taken, request, tp, message.offset,
                    self._process(request, stream, tp, message.offset),
                ),
                session_id=request.session_id,
            )

    def _traced(
        self, taken: request_trace.Taken | None, request: ChatRequest, tp: TopicPartition,
        offset: int,
        work: Awaitable[None],
    ) -> Awaitable[None]:  # fmt: skip
        """``work`` within its ``chat.request`` span, while tracing is on."""
        if taken is None:
            return work
        return request_trace.within_request(taken, request, tp, offset, work)

    async def _dead_letter(self, rejection: Rejection, message: Any, stream: faust.StreamT) -> None:
        tp = TopicPartition(message.topic, message.partition)
        where = f"topic={message.topic} partition={message.partition} offset={message.offset}"

        async def send() -> None:
            await dead_letter(
                self.producer,
                self.settings.dead_letter_topic,
                rejection,
                key=message.key,
                value=message.value,
                topic=message.topic,
                partition=message.partition,
                offset=message.offset,
            )

        if await self._durably("dead_letter", send, where):
            self.metrics.dead_letters.labels(rejection.reason).inc()
        await self.acks.finish(tp, message.offset, stream)

    async def _process(
        self, request: ChatRequest, stream: faust.StreamT, tp: TopicPartition, offset: int
    ) -> None:
        """Answer one request; any failure ends it with an ``error`` event. Acks it either way."""
        assert request.request_id is not None
        writer: SessionWriter | None = None
        signal = self.cancels.register(request.request_id, request.session_id)
        try:
            opening = await self.session_log.open_request(request.session_id, request.request_id)
            writer = self._writer(request)
            writer.opening = opening
            if signal.requested:
                # Cancelled while queued: ended without a generation slot.
                await self._answer(request, writer, signal, tp, offset)
            else:
                # The slot is taken only now that this session's earlier requests are done.
                async with self.inflight.slot():
                    await self._answer(request, writer, signal, tp, offset)
        except asyncio.CancelledError:
            # Revoked or stopping: not acked, the record is delivered again and resumes.
            raise
        except Exception as exc:
            log.exception(
                "request failed request_id=%s partition=%s offset=%s",
                request.request_id, tp.partition, offset,
            )
            code, retryable = _error_code(exc)
            message = f"the request could not be completed ({type(exc).__name__})"
            await self._end_request(request, writer, code, message, retryable, tp, offset)
        finally:
            self.cancels.unregister(request.request_id)
        await self.acks.finish(tp, offset, stream)

    async def _answer(
        self,
        request: ChatRequest,
        writer: SessionWriter,
        signal: CancelSignal,
        tp: TopicPartition,
        offset: int,
    ) -> None:
        """Generate, end as cancelled, or re-send the outcome of a request finished before."""
        history = await self._history(request, tp, offset)
        if history is not None and history.finished:
            await self._log_outcome_again(request, writer, history)
            return
        if history is not None and not signal.requested:
            if await cancel_on_log(self.settings, tp.partition, request):
                signal.set()
                self.metrics.cancels.labels("redelivered").inc()
        if signal.requested:
            queued = history is None or not history.events
            if queued:
                self.metrics.cancels.labels("queued").inc()
            if tracing.is_enabled():
                request_trace.cancel_applied(signal, "queued" if queued else "redelivered")
            await self._end_cancelled(request, writer, history)
            return
        if history is not None and history.last_attempt:
            await self._generate(request, writer, history.last_attempt + 1, REDELIVERED, signal)
        else:
            await self._generate(request, writer, 1, "", signal)

    async def _end_cancelled(
        self, request: ChatRequest, writer: SessionWriter, history: RequestHistory | None
    ) -> None:
        """A request cancelled before (or between) generations: never sent to the LLM again.

        Its attempt on the log, if any, is closed where it stopped: its text is kept, and
        ``done`` follows its last event."""
        started = history is not None and bool(history.events)
        if started:
            assert history is not None
            writer.resume(history.last_attempt, history.next_seq)
        else:
            await self._lifecycle(self._accepted(request, writer))
            await writer.begin(1)
        message = history.partial_message() if started and history else FinalMessage()
        # Counted as the log shows it: the crashed attempt's output events (a token each, about);
        # nothing was sent to the provider for a request cancelled before it started.
        spent = history.output_events if started and history else 0
        usage = Usage(completion_tokens=spent, total_tokens=spent, estimated=True)
        timings = _timings_until_now(writer.accepted_at)
        await writer.done(CANCELLED, usage, timings, message.tool_calls)
        log.info(
            "cancelled before generating request_id=%s resumed=%s", request.request_id, started
        )
        retries = history.final_run_retries if started and history else 0
        outcome = Outcome(
            True, writer.attempt, retries, timings, message.content, CANCELLED, usage,
            message=message,
        )
        await self._finish(outcome, self._common(request, writer))

    async def _refuse_busy(
        self, request: ChatRequest, stream: faust.StreamT, tp: TopicPartition, offset: int
    ) -> None:
        """Too many requests of this session are waiting: end this one now, visibly."""
        log.warning(
            "session busy, refusing request_id=%s session_id=%s pending=%s",
            request.request_id, request.session_id, self.inflight.backlog(request.session_id),
        )
        message = f"more than {self._per_session} requests of this session are waiting; retry later"
        await self._end_request(request, None, "session_busy", message, True, tp, offset)
        await self.acks.finish(tp, offset, stream)

    async def _history(
        self, request: ChatRequest, tp: TopicPartition, offset: int
    ) -> RequestHistory | None:
        """What the session's log says of a request that may be delivered again; None: new."""
        assert request.request_id is not None
        if not self.marks.may_be_redelivered(tp, offset):
            return None
        events = await self.session_log.request_events(request.session_id, request.request_id)
        return history_of(events)

    async def _log_outcome_again(
        self, request: ChatRequest, writer: SessionWriter, history: RequestHistory
    ) -> None:
        """Finished before: send its lifecycle record again (a crash may have cut it off)."""
        outcome = history.outcome()
        if outcome is None:
            log.error(
                "already finished, but its terminal event is unreadable: no lifecycle record "
                "sent request_id=%s topic=%s", request.request_id, writer.topic,
            )  # fmt: skip
            return
        log.info(
            "already finished, not generating again; sending its %s record again "
            "request_id=%s", "completed" if outcome.ok else "failed", request.request_id,
        )  # fmt: skip
        await self._finish(outcome, self._common(request, writer), again=True)

    def _common(self, request: ChatRequest, writer: SessionWriter) -> dict[str, Any]:
        return {
            "request_id": request.request_id,
            "session_id": request.session_id,
            "user_id": request.user_id,
            "model": writer.model,
        }

    def _writer(self, request: ChatRequest) -> SessionWriter:
        assert request.request_id is not None
        model = request.model or self.settings.default_model
        # Traced, it carries the current chat.request's context onto the session records.
        writer_class = TracedSessionWriter if tracing.is_enabled() else SessionWriter
        return writer_class(
            self.producer, self.session_log.place(request.session_id), request,
            request.request_id, model, time.time(), on_written=self.session_log.written,
        )  # fmt: skip

    async def _end_request(
        self,
        request: ChatRequest,
        writer: SessionWriter | None,
        code: str,
        message: str,
        retryable: bool,
        tp: TopicPartition,
        offset: int,
    ) -> None:
        """Write ``error`` to the session and ``failed`` to chat.events, each retried on its own.

        The terminal event first, as after a generation: a crash between the two leaves a
        finished request whose record a re-delivery sends again, never a ``failed`` record for a
        request that is then generated again. Runs outside any generation slot: a write that
        keeps failing holds up this session's queue, never other sessions.
        """
        assert request.request_id is not None
        if writer is None:
            writer = self._writer(request)
        writer.forget_pending()
        where = f"request_id={request.request_id} partition={tp.partition} offset={offset}"
        error = GenerationError(code, message, retryable=retryable)
        outcome = Outcome(
            False, writer.attempt, 0, _timings_until_now(writer.accepted_at), error=error
        )

        async def end_session() -> None:
            # Made again if it vanished (deleted as idle by a janitor while cached as ready).
            writer.opening = await self.session_log.open_request(
                request.session_id, request.request_id
            )
            await writer.error(
                code, message, retryable=retryable, emitted_at=outcome.timings.finished_at
            )

        await self._durably(
            "error_event", end_session, where,
            on_failure=lambda: self.session_log.forget(request.session_id),
        )
        await self._finish(outcome, self._common(request, writer), where=where)

    async def _durably(
        self,
        what: str,
        write: Callable[[], Awaitable[object]],
        where: str,
        on_failure: Callable[[], object] | None = None,
    ) -> bool:
        """Retry ``write`` (write_retry.py); past the bound say loudly what was given up."""

        def failed() -> None:
            self.metrics.write_failures.labels(what).inc()
            if on_failure is not None:
                on_failure()

        if await self.writes.run(write, what=f"{what} {where}", on_failure=failed):
            return True
        self.metrics.writes_given_up.labels(what).inc()
        log.error(
            "GAVE UP writing %s after %.0fs; acking the record, which stays on %s for its "
            "retention: re-drive it from %s",
            what, self.writes.give_up_s, self.settings.requests_topic, where,
        )
        return False

    def _accepted(self, request: ChatRequest, writer: SessionWriter) -> Accepted:
        prompt = request.prompt_text
        return Accepted(
            **self._common(request, writer),
            attempt=1,
            at=writer.accepted_at,
            prompt_chars=len(prompt),
            prompt_text=prompt,
        )

    async def _generate(
        self,
        request: ChatRequest,
        writer: SessionWriter,
        first_attempt: int,
        reason: str,
        signal: CancelSignal,
    ) -> None:
        assert request.request_id is not None
        accepted_at = writer.accepted_at
        common = self._common(request, writer)
        if first_attempt == 1:
            await self._lifecycle(self._accepted(request, writer))

        async def on_first_token(at: float) -> None:
            observe(self.metrics.ttft, at - accepted_at)
            await self._lifecycle(
                FirstToken(**common, attempt=writer.attempt, at=at, ttft_s=at - accepted_at)
            )

        generation = Generation(
            self.settings, self.client, self.policy, self.metrics, writer, on_first_token, signal
        )
        self.metrics.active.inc()
        try:
            outcome = await generation.run(first_attempt, reason)
        finally:
            self.metrics.active.dec()
        if outcome.finish_reason == CANCELLED:
            self.metrics.cancels.labels("generating").inc()
        await self._finish(outcome, common)

    async def _finish(
        self, outcome: Outcome, common: dict[str, Any], *, again: bool = False, where: str = ""
    ) -> None:
        """Write the ``completed``/``failed`` record of an outcome whose terminal event is written.

        Built from the outcome alone, and stamped with its ``finished_at`` (the event's ``at``
        and the record's timestamp): sent again from a re-built outcome it is the same record.
        ``again``: a re-send, not counted in the request metrics a second time.
        """
        at = outcome.timings.finished_at
        if outcome.ok:
            event: Completed | Failed = Completed(
                **common,
                at=at,
                attempt=outcome.attempt,
                finish_reason=outcome.finish_reason,
                usage=outcome.usage,
                timings=outcome.timings,
                retries=outcome.retries,
                answer=outcome.answer,
                message=outcome.message or FinalMessage(content=outcome.answer),
            )
        else:
            assert outcome.error is not None
            event = Failed(
                **common,
                at=at,
                attempt=outcome.attempt,
                code=outcome.error.code,
                message=outcome.error.message,
                retries=outcome.retries,
                timings=outcome.timings,
                usage=outcome.usage if outcome.usage.estimated else None,
            )
        if tracing.is_enabled():
            error_code = outcome.error.code if outcome.error is not None else None
            request_trace.note_outcome(outcome.finish_reason, error_code)
        if not again:
            self.metrics.requests.labels(event.type).inc()
            observe(self.metrics.request_duration.labels(event.type), outcome.timings.duration_s)
            if outcome.error is not None:
                self.metrics.errors.labels(outcome.error.code).inc()
        # The session already has its terminal event: from here on only retry, never end again.
        where = where or f"request_id={event.request_id}"

        async def log_outcome() -> None:
            await (await self._lifecycle(event, at=at))

        await self._durably(f"{event.type}_event", log_outcome, where)

    async def _lifecycle(
        self, event: Accepted | FirstToken | Completed | Failed, at: float | None = None
    ) -> Any:
        return await send(self.producer, self.settings.events_topic, event.user_id, event, at)


def _error_code(exc: Exception) -> tuple[str, bool]:
    """Kafka trouble may pass (the user may retry); anything else is a bug of ours."""
    if isinstance(exc, KafkaError | TopicError):
        return "unavailable", True
    return "internal", False


def _timings_until_now(accepted_at: float) -> Timings:
    finished_at = time.time()
    return Timings(
        accepted_at=accepted_at, finished_at=finished_at, duration_s=finished_at - accepted_at
    )
