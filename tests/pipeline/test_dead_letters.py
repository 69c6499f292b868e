"""Bad records on chat.requests go to the DLQ with their reason; the agent keeps serving.

A bad record never holds back the records behind it (issue #11): whatever decoding raises, and
even while the DLQ cannot be written, the next record is answered and, once the dead letter has
landed, the partition's commit moves past both.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from tests.fixtures.kafka_reading import read_topic
from tests.fixtures.pipeline import WorkerProcess, pipeline_settings_for, start_worker
from tests.fixtures.sse_client import read_session
from tests.pipeline.conftest import token_for, user_message
from tests.pipeline.worker_probes import (
    committed_offset,
    eventually_async,
    metric_value,
    wait_for_terminal,
    wait_until_committed_past,
)
from tokenwire.answers import fold
from tokenwire.settings import Settings
from tokenwire.simulator import expected_text
from tokenwire.topics import UNREPLICATED, core_topics, create_topics, ensure_core_topics


async def test_malformed_and_invalid_records_are_dead_lettered_and_service_continues(
    worker: WorkerProcess, edge_url: str, pipeline_settings: Settings, publish_direct, session_ids
) -> None:
    marker = uuid.uuid4().hex
    not_json = f"{{not json {marker}".encode()
    invalid = json.dumps({"session_id": "bad.session", "marker": marker}).encode()
    await publish_direct(not_json, key="k1")
    await publish_direct(invalid, key="k2")
    session_id, request_id = next(session_ids), uuid.uuid4().hex
    messages = user_message(f"after the bad ones {marker}")
    await publish_direct({"request_id": request_id, "session_id": session_id,
                          "user_id": "u", "messages": messages}, key=session_id)

    events = await read_session(edge_url, session_id, token_for(pipeline_settings, session_id),
                                request_id=request_id)
    assert fold(e.data for e in events)[request_id].text == expected_text(messages)

    dead = {r.value: dict(r.headers) for r in await read_topic(
        pipeline_settings.kafka_bootstrap, pipeline_settings.dead_letter_topic)}
    assert dead[not_json]["tw-dlq-reason"] == b"not_json"
    assert dead[invalid]["tw-dlq-reason"] == b"schema_invalid"
    assert b"session_id" in dead[invalid]["tw-dlq-error"]
    assert b"user_id" in dead[invalid]["tw-dlq-error"]


def chat_request(session_id: str, text: str) -> tuple[str, bytes]:
    request_id = uuid.uuid4().hex
    body = {"request_id": request_id, "session_id": session_id, "user_id": "u-dlq",
            "messages": user_message(text)}
    return request_id, json.dumps(body).encode()


async def dead_letter_of(bootstrap: str, topic: str, value: bytes) -> dict[str, bytes] | None:
    for record in await read_topic(bootstrap, topic):
        if record.value == value:
            return dict(record.headers)
    return None


async def test_a_record_that_breaks_the_decoder_is_dead_lettered_and_the_partition_moves_on(
    worker: WorkerProcess, pipeline_settings: Settings, kafka_producer: AIOKafkaProducer,
    session_ids,
) -> None:
    s = pipeline_settings
    session_id = next(session_ids)
    # Deeper than the JSON decoder's stack: it raised RecursionError, not a JSON error.
    hostile = b"[" * 100_000 + uuid.uuid4().hex.encode()
    request_id, good = chat_request(session_id, f"behind the hostile one {uuid.uuid4().hex}")
    bad_at = await kafka_producer.send_and_wait(s.requests_topic, hostile, key=session_id.encode())
    good_at = await kafka_producer.send_and_wait(s.requests_topic, good, key=session_id.encode())
    assert bad_at.partition == good_at.partition

    done = await wait_for_terminal(s, session_id, request_id)
    assert done["type"] == "done"
    tp = TopicPartition(s.requests_topic, good_at.partition)
    await wait_until_committed_past(s.kafka_bootstrap, s.worker_id, tp, good_at.offset)
    headers = await dead_letter_of(s.kafka_bootstrap, s.dead_letter_topic, hostile)
    assert headers is not None and headers["tw-dlq-reason"] == b"not_json"
    assert headers["tw-dlq-source-offset"] == str(bad_at.offset).encode()


async def test_a_dead_letter_kafka_will_not_take_holds_its_record_not_the_partition(
    kafka_bootstrap: str, simulator_url: str, worker_logs: Path, kafka_admin: AIOKafkaAdminClient,
    kafka_producer: AIOKafkaProducer,
) -> None:
    tag = f"dlqdown{uuid.uuid4().hex[:8]}"
    s = pipeline_settings_for(kafka_bootstrap, simulator_url, tag, requests_partitions=1,
                              worker_write_attempt_timeout_s=1.0,
                              worker_write_retry_max_delay_s=0.5)
    await ensure_core_topics(s)
    worker = await start_worker(s, worker_logs)
    try:
        # Real fault: the DLQ topic is gone (auto-creation is off), so every send fails.
        await kafka_admin.delete_topics([s.dead_letter_topic])

        async def dlq_gone() -> bool:
            return s.dead_letter_topic not in await kafka_admin.list_topics()

        await eventually_async(dlq_gone, 30, "the DLQ topic deleted")
        bad = f"{{not json {tag}".encode()
        session_id = f"s-{tag}"
        request_id, good = chat_request(session_id, f"behind the undeliverable one {tag}")
        bad_at = await kafka_producer.send_and_wait(s.requests_topic, bad, partition=0)
        good_at = await kafka_producer.send_and_wait(s.requests_topic, good, partition=0,
                                                     key=session_id.encode())

        # The record behind is answered while the dead letter still cannot be written...
        done = await wait_for_terminal(s, session_id, request_id,
                                       timeout_s=20)
        assert done["type"] == "done"

        async def retried() -> bool:
            failures = await metric_value(worker.web_url, "tokenwire_worker_write_failures_total",
                                          'what="dead_letter"')
            return failures >= 2

        await eventually_async(retried, 30, "dead letter sends failing and retried")
        # ...and the bad record is not given up on: the commit waits behind it.
        tp = TopicPartition(s.requests_topic, 0)
        assert await committed_offset(kafka_bootstrap, s.worker_id, tp) <= bad_at.offset

        dlq = [t for t in core_topics(s) if t.name == s.dead_letter_topic]
        await create_topics(kafka_admin, dlq, UNREPLICATED)

        async def dead_lettered() -> bool:
            headers = await dead_letter_of(kafka_bootstrap, s.dead_letter_topic, bad)
            return headers is not None and headers["tw-dlq-reason"] == b"not_json"

        await eventually_async(dead_lettered, 30, "the dead letter landing once the DLQ exists")
        await wait_until_committed_past(kafka_bootstrap, s.worker_id, tp, good_at.offset)
    finally:
        worker.stop()
