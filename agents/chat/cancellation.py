"""Stopping a generation: cancels read from ``chat.control`` reach the request they name.

Where a cancel is found, in the order a request meets them:

- **Live**: ``ControlFollower`` reads the ``chat.control`` partitions whose numbers match the
  ``chat.requests`` partitions this worker owns (same key, same partition count: a session's
  cancels land beside its requests, schemas/control.py), from their end at assignment. A cancel
  sets the ``CancelSignal`` of its request; the generation closes the upstream stream and ends
  with ``cancelled`` (generation.py).
- **Early**: a cancel for a request this worker has not taken yet (queued behind its session,
  or not fetched yet) waits in ``CancelRegistry``'s bounded map and is set when it is taken, so
  the request is never sent to the LLM.
- **After a crash**: cancels consumed by a worker that died are behind the new owner's start
  position. A request that may be delivered again (``request_ledger.AssignmentMarks``) is
  therefore checked against the control partition itself (``cancel_on_log``), read from just
  before the request was created. The control partitions' ends are read before the request
  marks at assignment, so every cancel is either behind the follower's start (and its request
  behind the mark, so checked) or in front of it (and seen live).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from agents.chat.dead_letter import dead_letter
from agents.chat.request_intake import Rejection
from schemas.control import CancelRequest, parse_control_record
from schemas.dead_letter import REASON_SCHEMA
from schemas.requests import ChatRequest
from tokenwire import tracing
from tokenwire.kafka_clients import new_consumer, new_follower, stop_consumer, wake_fetch
from tokenwire.settings import Settings

log = logging.getLogger(__name__)

EARLY_CANCELS_MAX = 10_000
# Cancels are looked for from this long before the request was created (clocks of edges differ).
CLOCK_SKEW_S = 60.0
READ_TIMEOUT_MS = 500
RETRY_S = 1.0


class CancelSignal:
    """Set once, when a cancel for its request arrives; callbacks run at that moment."""

    def __init__(self) -> None:
        self._event = asyncio.Event()
        self._callbacks: list[Callable[[], object]] = []
        self.requested_at: float | None = None
        # The cancel record's headers while tracing is on (its span links to the edge's).
        self.trace_headers: Sequence[tuple[str, bytes]] | None = None

    @property
    def requested(self) -> bool:
        return self._event.is_set()

    def set(self, requested_at: float | None = None) -> None:
        if self._event.is_set():
            return
        self.requested_at = time.time() if requested_at is None else requested_at
        self._event.set()
        for callback in self._callbacks:
            callback()

    def on_request(self, callback: Callable[[], object]) -> Callable[[], None]:
        """Run ``callback`` when the cancel arrives; returns a function that forgets it."""
        self._callbacks.append(callback)
        return lambda: self._callbacks.remove(callback)

    async def wait(self, timeout_s: float) -> bool:
        """Sleep up to ``timeout_s``, waking early on a cancel; True if cancelled."""
        try:
            async with asyncio.timeout(timeout_s):
                await self._event.wait()
        except TimeoutError:
            pass
        return self.requested


class CancelRegistry:
    """The signals of requests in this worker's hands, and cancels that came before them."""

    def __init__(self, early_max: int = EARLY_CANCELS_MAX) -> None:
        self._live: dict[str, tuple[str, CancelSignal]] = {}
        # request id -> (session id, requested_at), least recently added forgotten first
        self._early: OrderedDict[str, tuple[str, float]] = OrderedDict()
        self._early_max = early_max

    def register(self, request_id: str, session_id: str) -> CancelSignal:
        signal = CancelSignal()
        self._live[request_id] = (session_id, signal)
        early = self._early.pop(request_id, None)
        if early is not None and early[0] == session_id:
            signal.set(early[1])
        return signal

    def unregister(self, request_id: str) -> None:
        self._live.pop(request_id, None)

    def cancel(
        self, record: CancelRequest, trace_headers: Sequence[tuple[str, bytes]] | None = None
    ) -> bool:
        """Apply a cancel; True if it reached a request in this worker's hands."""
        live = self._live.get(record.request_id)
        if live is not None and live[0] == record.session_id:
            if not live[1].requested:
                live[1].trace_headers = trace_headers
            live[1].set(record.requested_at)
            return True
        self._early[record.request_id] = (record.session_id, record.requested_at)
        self._early.move_to_end(record.request_id)
        while len(self._early) > self._early_max:
            self._early.popitem(last=False)
        return False


class ControlFollower:
    """Follows the ``chat.control`` partitions matching this worker's request partitions."""

    def __init__(
        self, settings: Settings, registry: CancelRegistry, producer: AIOKafkaProducer
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.producer = producer
        # Long polls: the broker answers a fetch as soon as a cancel arrives, and an idle worker
        # costs nothing. Every assign() is followed by wake_fetch (kafka_clients).
        self._consumer: AIOKafkaConsumer = new_follower(
            settings.kafka_connection, client_id=f"{settings.worker_id}-control"
        )
        self._assigned = asyncio.Event()

    async def start(self) -> None:
        await self._consumer.start()

    async def stop(self) -> None:
        await stop_consumer(self._consumer)

    async def follow_from_end(self, partitions: list[int]) -> None:
        """Read exactly these partitions, from their current end on."""
        tps = [TopicPartition(self.settings.control_topic, p) for p in partitions]
        # Assigned first (a consumer knows the metadata of assigned partitions only), paused so
        # that nothing is fetched from the default position before the seek.
        self._consumer.assign(tps)
        self._consumer.pause(*tps)
        ends = await self._consumer.end_offsets(tps) if tps else {}
        self.follow(dict(ends))

    def follow(self, starts: dict[TopicPartition, int]) -> None:
        """Read exactly these partitions, each from its given offset."""
        self._consumer.assign(list(starts))
        for tp, offset in starts.items():
            self._consumer.seek(tp, offset)
        self._consumer.resume(*starts)
        wake_fetch(self._consumer)
        if starts:
            self._assigned.set()
        else:
            self._assigned.clear()

    async def unfollow(self, partitions: set[int]) -> None:
        current = self._consumer.assignment()
        keep = [tp for tp in current if tp.partition not in partitions]
        if len(keep) == len(current):
            return
        # assign() forgets positions: the kept partitions go on from where they were.
        self.follow({tp: await self._consumer.position(tp) for tp in keep})

    async def run_forever(self) -> None:
        while True:
            await self._assigned.wait()
            try:
                batches = await self._consumer.getmany(timeout_ms=READ_TIMEOUT_MS)
            except Exception:
                # A broker failing over: the consumer reconnects; cancels wait, none is lost.
                log.exception("reading chat.control failed; retrying")
                await asyncio.sleep(RETRY_S)
                continue
            for tp, records in batches.items():
                for record in records:
                    await self._apply(tp, record)

    async def _apply(self, tp: TopicPartition, record: object) -> None:
        value = getattr(record, "value", None)
        try:
            cancel = parse_control_record(value or b"")
        except Exception as exc:  # hostile input: whatever it raises, it is this record's fault
            await self._reject(tp, record, f"{type(exc).__name__}: {exc}"[:2000])
            return
        headers = getattr(record, "headers", None) if tracing.is_enabled() else None
        reached = self.registry.cancel(cancel, headers)
        log.info(
            "cancel received request_id=%s session_id=%s in_hand=%s lag_ms=%.0f",
            cancel.request_id, cancel.session_id, reached,
            (time.time() - cancel.requested_at) * 1000,
        )  # fmt: skip

    async def _reject(self, tp: TopicPartition, record: object, detail: str) -> None:
        try:
            await dead_letter(
                self.producer, self.settings.dead_letter_topic, Rejection(REASON_SCHEMA, detail),
                key=getattr(record, "key", None), value=getattr(record, "value", None),
                topic=tp.topic, partition=tp.partition, offset=getattr(record, "offset", -1),
            )  # fmt: skip
        except Exception:
            log.exception("could not dead-letter a control record partition=%s", tp.partition)


async def cancel_on_log(settings: Settings, partition: int, request: ChatRequest) -> bool:
    """Whether ``chat.control`` holds a cancel of ``request`` (it may have been consumed by a
    worker that died since); read from just before the request was created to the end."""
    tp = TopicPartition(settings.control_topic, partition)
    since_ms = int((request.created_at.timestamp() - CLOCK_SKEW_S) * 1000)
    consumer = new_consumer(settings.kafka_connection, client_id=f"{settings.worker_id}-cancels")
    await consumer.start()
    try:
        consumer.assign([tp])
        found = (await consumer.offsets_for_times({tp: max(0, since_ms)}))[tp]
        end = (await consumer.end_offsets([tp]))[tp]
        if found is None or found.offset >= end:
            return False
        consumer.seek(tp, found.offset)
        while await consumer.position(tp) < end:
            batches = await consumer.getmany(tp, timeout_ms=READ_TIMEOUT_MS)
            for record in batches.get(tp, []):
                if _cancels(record.value, request):
                    return True
        return False
    finally:
        await stop_consumer(consumer)


def _cancels(raw: bytes | None, request: ChatRequest) -> bool:
    try:
        cancel = parse_control_record(raw or b"")
    except Exception:
        return False
    return cancel.request_id == request.request_id and cancel.session_id == request.session_id
