"""What the log already says about a request, for records that may be delivered again.

After a crash or a rebalance, records between the committed offset and the partition's end at
assignment time may already have been (partly) answered. Their session topic is the truth: a
terminal event means "finished, do not generate again"; otherwise the highest attempt seen says
which attempt comes next. Records produced after assignment are new and skip the read.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

from aiokafka import TopicPartition

from tokenwire.kafka_clients import new_consumer
from tokenwire.kafka_settings import KafkaConnection

log = logging.getLogger(__name__)

READ_TIMEOUT_MS = 500


@dataclass(frozen=True)
class RequestHistory:
    last_attempt: int = 0
    finished: bool = False


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
        await consumer.stop()


async def read_history(kafka: KafkaConnection, topic: str, request_id: str) -> RequestHistory:
    tp = TopicPartition(topic, 0)
    consumer = new_consumer(kafka, client_id="tokenwire-worker-ledger")
    await consumer.start()
    try:
        consumer.assign([tp])
        start = (await consumer.beginning_offsets([tp]))[tp]
        end = (await consumer.end_offsets([tp]))[tp]
        if end <= start:
            return RequestHistory()
        consumer.seek(tp, start)
        history = RequestHistory()
        while await consumer.position(tp) < end:
            batches = await consumer.getmany(tp, timeout_ms=READ_TIMEOUT_MS)
            for record in batches.get(tp, []):
                history = _fold(history, record.value, request_id)
        return history
    finally:
        await consumer.stop()


def _fold(history: RequestHistory, raw: bytes | None, request_id: str) -> RequestHistory:
    if raw is None:
        return history
    try:
        event = json.loads(raw)
    except json.JSONDecodeError:
        return history
    if event.get("request_id") != request_id:
        return history
    attempt = max(history.last_attempt, int(event.get("attempt", 0)))
    finished = history.finished or event.get("type") in ("done", "error")
    return RequestHistory(last_attempt=attempt, finished=finished)
