"""Hostile input never hurts anyone else (issue #11).

One worker with two generation slots and a four-request share per session, one partition (so
every record here is behind the ones before it), and a short give-up for writes Kafka refuses.
Records are published straight to Kafka, and answers read straight from the session topics.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from itertools import groupby
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from tests.fixtures.kafka_reading import wait_for_record
from tests.fixtures.pipeline import WorkerProcess, pipeline_settings_for, start_worker
from tests.pipeline.conftest import user_message
from tests.pipeline.worker_probes import (
    session_events,
    wait_for_terminal,
    wait_until_committed_past,
)
from tokenwire.settings import Settings
from tokenwire.topics import ensure_core_topics

SLOW = "[[sim: tokens=40 tps=20]]"  # about two seconds of streaming
SHARE = 4


@pytest.fixture(scope="module")
async def hostile_worker(
    kafka_bootstrap: str, simulator_url: str, worker_logs: Path
) -> AsyncIterator[WorkerProcess]:
    tag = f"hostile{uuid.uuid4().hex[:8]}"
    settings = pipeline_settings_for(
        kafka_bootstrap, simulator_url, tag, requests_partitions=1, worker_concurrency=2,
        worker_max_pending_per_session=SHARE, worker_write_attempt_timeout_s=1.0,
        worker_write_retry_max_delay_s=0.5, worker_write_give_up_s=3.0,
    )
    await ensure_core_topics(settings)
    worker = await start_worker(settings, worker_logs)
    yield worker
    worker.stop()


async def publish(producer: AIOKafkaProducer, s: Settings, session_id: str, text: str
                  ) -> tuple[str, int]:
    """Publish one request on partition 0; its request id and offset."""
    request_id = uuid.uuid4().hex
    body = {"request_id": request_id, "session_id": session_id, "user_id": "u-hostile",
            "messages": user_message(text)}
    meta = await producer.send_and_wait(s.requests_topic, json.dumps(body).encode(),
                                        key=session_id.encode(), partition=0)
    return request_id, meta.offset


async def test_a_session_topic_the_broker_refuses_ends_the_request_and_the_partition_moves_on(
    hostile_worker: WorkerProcess, kafka_admin: AIOKafkaAdminClient,
    kafka_producer: AIOKafkaProducer,
) -> None:
    s = hostile_worker.settings
    refused, fine = f"s-refused-{uuid.uuid4().hex[:8]}", f"s-fine-{uuid.uuid4().hex[:8]}"
    # Real fault: Kafka refuses a name that collides with an existing one up to '.' vs '_'.
    collider = s.session_topic(refused).replace(".", "_")
    await kafka_admin.create_topics([NewTopic(collider, 1, 1)])
    try:
        refused_id, _ = await publish(kafka_producer, s, refused, "this one has nowhere to go")
        fine_id, fine_at = await publish(kafka_producer, s, fine, "this one is behind it")

        failed = await wait_for_record(
            s.kafka_bootstrap, s.events_topic,
            lambda e: e.get("request_id") == refused_id and e.get("type") == "failed",
            timeout_s=30,
        )
        assert failed["code"] == "unavailable"
        done = await wait_for_terminal(s, fine, fine_id)
        assert done["type"] == "done"
        await wait_until_committed_past(
            s.kafka_bootstrap, s.worker_id, TopicPartition(s.requests_topic, 0), fine_at
        )
    finally:
        await kafka_admin.delete_topics([collider])


async def test_a_session_with_a_queue_does_not_hold_up_another_session(
    hostile_worker: WorkerProcess, kafka_producer: AIOKafkaProducer,
) -> None:
    s = hostile_worker.settings
    busy, other = f"s-busy-{uuid.uuid4().hex[:8]}", f"s-other-{uuid.uuid4().hex[:8]}"
    queued = [(await publish(kafka_producer, s, busy, f"{SLOW} queued {i}"))[0]
              for i in range(SHARE)]
    other_id, _ = await publish(kafka_producer, s, other, "just one short question")

    other_done = await wait_for_terminal(s, other, other_id)
    await wait_for_terminal(s, busy, queued[-1], timeout_s=90)

    events = await session_events(s, busy)
    busy_done = [e["emitted_at"] for e in events if e["type"] == "done"]
    assert len(busy_done) == SHARE
    # With two slots, the other session gets the one the busy session is not using: it must
    # not wait for the busy session's queue (before the fix it waited for three of its four).
    finished_before = sum(at < other_done["emitted_at"] for at in busy_done)
    assert finished_before <= 1, f"{finished_before} queued requests finished first"
    # The busy session's requests still ran one at a time, in order.
    assert [rid for rid, _ in groupby(e["request_id"] for e in events)] == queued


async def test_requests_beyond_a_sessions_share_of_the_queue_end_at_once_as_busy(
    hostile_worker: WorkerProcess, kafka_producer: AIOKafkaProducer,
) -> None:
    s = hostile_worker.settings
    session_id = f"s-flood-{uuid.uuid4().hex[:8]}"
    ids = [(await publish(kafka_producer, s, session_id, f"{SLOW} flood {i}"))[0]
           for i in range(SHARE + 2)]

    ends = [await wait_for_terminal(s, session_id, rid,
                                    timeout_s=90) for rid in ids]

    assert [e["type"] for e in ends] == ["done"] * SHARE + ["error"] * 2
    assert {(e["code"], e["retryable"]) for e in ends[SHARE:]} == {("session_busy", True)}
