"""The chat agent's resources and per-record logic, owned by one mode.Service.

Offsets: the agent iterates with acks off and acks a record only when its terminal event is on
the broker. Faust commits the longest acked prefix of each partition, so a crash can never commit
past a request that is still being generated (the failure of faust-streaming #606 with
``concurrency > 1``); the re-delivered record is recognised through ``request_ledger``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import faust
import mode
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from agents.chat.dead_letter import dead_letter
from agents.chat.generation import Generation, Outcome
from agents.chat.inflight import InflightRequests
from agents.chat.llm_stream import new_client
from agents.chat.ordered_acks import OrderedAcks
from agents.chat.request_intake import Rejection, decode_request
from agents.chat.request_ledger import AssignmentMarks, end_offsets, read_history
from agents.chat.retry_policy import RetryPolicy
from agents.chat.session_janitor import SessionJanitor
from agents.chat.session_writer import SessionWriter, send
from agents.metrics import WorkerMetrics
from schemas.lifecycle import Accepted, Completed, Failed, FirstToken
from schemas.requests import ChatRequest
from tokenwire.kafka_clients import new_admin, new_producer
from tokenwire.settings import Settings
from tokenwire.topics import SessionTopics, ensure_core_topics

log = logging.getLogger(__name__)


class ChatRuntime(mode.Service):
    def __init__(self, settings: Settings, metrics: WorkerMetrics, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        self.metrics = metrics
        self.policy = RetryPolicy.from_settings(settings)
        self.inflight = InflightRequests(settings.worker_concurrency)
        self.marks = AssignmentMarks()
        self.acks = OrderedAcks()
        self.ready = asyncio.Event()

    async def on_start(self) -> None:
        s = self.settings
        await ensure_core_topics(s)
        self.producer: AIOKafkaProducer = new_producer(s.kafka_bootstrap, client_id=s.worker_id)
        await self.producer.start()
        self.admin = new_admin(s.kafka_bootstrap, client_id=f"{s.worker_id}-admin")
        await self.admin.start()
        self.client = new_client(s)
        self.session_topics = SessionTopics(s, self.admin)
        self.janitor = SessionJanitor(s, self.admin, self.session_topics)
        self.add_future(self.janitor.run_forever())
        self.ready.set()
        log.info(
            "chat runtime ready requests_topic=%s concurrency=%s",
            s.requests_topic,
            s.worker_concurrency,
        )

    async def on_stop(self) -> None:
        await self.inflight.cancel()
        # on_start may have failed half-way: close what exists.
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
            self.marks.set(await end_offsets(self.settings.kafka_bootstrap, ours))
        except Exception:
            # Without marks every record is checked against its session topic: slower, still safe.
            log.exception("could not read end offsets at assignment partitions=%s", ours)

    async def on_revoked(self, sender: Any, revoked: set[TopicPartition], **_: Any) -> None:
        # Their records will be delivered again (to us or another worker) and resume there.
        await self.inflight.cancel(revoked)
        self.marks.drop(revoked)
        self.acks.forget(revoked)

    # --- records -------------------------------------------------------------------------
    async def take(self, event: faust.EventT, stream: faust.StreamT) -> None:
        """Handle one ``chat.requests`` record; returns once its work has a slot."""
        await self.ready.wait()
        message = event.message
        tp = TopicPartition(message.topic, message.partition)
        self.acks.track(tp, message.offset, event)
        decoded = decode_request(message.value, partition=message.partition, offset=message.offset)
        if isinstance(decoded, Rejection):
            await self._dead_letter(decoded, message)
            await self.acks.finish(tp, message.offset, stream)
            return
        await self.inflight.wait_for_slot()
        self.inflight.start(
            tp, decoded.session_id, self._process(decoded, event, stream, tp, message.offset)
        )

    async def _dead_letter(self, rejection: Rejection, message: Any) -> None:
        self.metrics.dead_letters.labels(rejection.reason).inc()
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

    async def _process(
        self,
        request: ChatRequest,
        event: faust.EventT,
        stream: faust.StreamT,
        tp: TopicPartition,
        offset: int,
    ) -> None:
        assert request.request_id is not None
        topic = await self.session_topics.ensure(request.session_id)
        first_attempt, reason = 1, ""
        if self.marks.may_be_redelivered(tp, offset):
            history = await read_history(self.settings.kafka_bootstrap, topic, request.request_id)
            if history.finished:
                log.info("already finished, not generating again request_id=%s", request.request_id)
                await self.acks.finish(tp, offset, stream)
                return
            if history.last_attempt:
                first_attempt, reason = history.last_attempt + 1, "redelivered"
        try:
            await self._generate(request, topic, first_attempt, reason)
        except (asyncio.CancelledError, KafkaError):
            # Not acked: the record is delivered again and resumes as a new attempt.
            raise
        except Exception as exc:
            log.exception("request failed unexpectedly request_id=%s", request.request_id)
            await self._end_unexpectedly(request, topic, first_attempt, exc)
        await self.acks.finish(tp, offset, stream)

    async def _end_unexpectedly(
        self, request: ChatRequest, topic: str, attempt: int, exc: Exception
    ) -> None:
        """A bug must not wedge the partition: end the request visibly, then move on."""
        assert request.request_id is not None
        writer = SessionWriter(self.producer, topic, request, request.request_id,
                               request.model or self.settings.default_model, time.time(),
                               attempt=attempt)
        await writer.error("internal", f"internal error: {type(exc).__name__}", retryable=False)
        self.metrics.requests.labels("failed").inc()
        self.metrics.errors.labels("internal").inc()

    async def _generate(
        self, request: ChatRequest, topic: str, first_attempt: int, reason: str
    ) -> None:
        assert request.request_id is not None
        model = request.model or self.settings.default_model
        accepted_at = time.time()
        writer = SessionWriter(
            self.producer, topic, request, request.request_id, model, accepted_at
        )
        common = {
            "request_id": request.request_id,
            "session_id": request.session_id,
            "user_id": request.user_id,
            "model": model,
        }
        if first_attempt == 1:
            prompt = "\n".join(m.content for m in request.messages if m.role == "user")
            await self._lifecycle(
                Accepted(
                    **common,
                    attempt=1,
                    at=accepted_at,
                    prompt_chars=len(prompt),
                    prompt_text=prompt,
                )
            )

        async def on_first_token(at: float) -> None:
            self.metrics.ttft.observe(at - accepted_at)
            await self._lifecycle(
                FirstToken(**common, attempt=writer.attempt, at=at, ttft_s=at - accepted_at)
            )

        generation = Generation(
            self.settings, self.client, self.policy, self.metrics, writer, on_first_token
        )
        self.metrics.active.inc()
        try:
            outcome = await generation.run(first_attempt, reason)
        finally:
            self.metrics.active.dec()
        await self._finish(outcome, common)

    async def _finish(self, outcome: Outcome, common: dict[str, Any]) -> None:
        if outcome.ok:
            self.metrics.requests.labels("completed").inc()
            event: Completed | Failed = Completed(
                **common,
                attempt=outcome.attempt,
                finish_reason=outcome.finish_reason,
                usage=outcome.usage,
                timings=outcome.timings,
                retries=outcome.retries,
                answer=outcome.answer,
            )
        else:
            assert outcome.error is not None
            self.metrics.requests.labels("failed").inc()
            self.metrics.errors.labels(outcome.error.code).inc()
            event = Failed(
                **common,
                attempt=outcome.attempt,
                code=outcome.error.code,
                message=outcome.error.message,
                retries=outcome.retries,
                timings=outcome.timings,
            )
        delivered = await self._lifecycle(event)
        await delivered

    async def _lifecycle(self, event: Accepted | FirstToken | Completed | Failed) -> Any:
        return await send(self.producer, self.settings.events_topic, event.user_id, event)
