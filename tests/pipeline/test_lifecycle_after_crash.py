"""A worker killed after a request's ``done`` but before its ``completed`` record: not lost.

Real fault: ``chat.events`` is deleted (auto-creation is off) once the request's first lifecycle
records are on it, so the ``completed`` write that follows ``done`` fails and is retried; the
worker is killed with SIGKILL while it retries. The record was never acked, so the next worker
(which creates the core topics again) is delivered it again, finds it finished on its session
topic and must send its ``completed`` record, rebuilt from the session topic, exactly as the
first worker would have: the audit and the rebuilt aggregates count the request once.
"""

from __future__ import annotations

import json
import math
import uuid
from pathlib import Path

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from tests.aggregates.conftest import FAST_AGGREGATES, rate_flux, wait_rows
from tests.fixtures.kafka_reading import read_topic, wait_for_record
from tests.fixtures.pipeline import pipeline_settings_for, start_worker
from tests.fixtures.services import InfluxTarget
from tests.pipeline.conftest import user_message
from tests.pipeline.worker_probes import (
    eventually_async,
    metric_value,
    wait_for_terminal,
    wait_until_committed_past,
)
from tokenwire.aggregates_settings import AggregatesSettings
from tokenwire.replay.verify import verify_log
from tokenwire.simulator import expected_text
from tokenwire.topics import ensure_core_topics

# Long enough that chat.events is gone before the answer ends (~4 s at 30 tokens/s).
LONG = "[[sim: tokens=120 tps=30]]"


async def test_a_completed_record_cut_off_by_a_crash_is_sent_by_the_next_worker(
    kafka_bootstrap: str, simulator_url: str, worker_logs: Path,
    kafka_admin: AIOKafkaAdminClient, kafka_producer: AIOKafkaProducer,
    influxdb: InfluxTarget, influx_bucket: str,
) -> None:
    tag = f"lifecrash{uuid.uuid4().hex[:8]}"
    s = pipeline_settings_for(kafka_bootstrap, simulator_url, tag, requests_partitions=1,
                              worker_write_attempt_timeout_s=1.0,
                              worker_write_retry_max_delay_s=0.5,
                              influx_url=influxdb.url, influx_org=influxdb.org,
                              influx_token=influxdb.token)
    await ensure_core_topics(s)
    session_id, request_id, user_id = f"s-{tag}", f"r-{tag}", f"u-{tag}"
    messages = user_message(f"{LONG} answer me once {tag}")
    first = await start_worker(s, worker_logs, FAST_AGGREGATES)
    second = None
    try:
        body = {"request_id": request_id, "session_id": session_id, "user_id": user_id,
                "messages": messages}
        sent = await kafka_producer.send_and_wait(s.requests_topic, json.dumps(body).encode(),
                                                  key=session_id.encode(), partition=0)
        await wait_for_record(kafka_bootstrap, s.events_topic,
                              lambda e: e.get("request_id") == request_id
                              and e.get("type") == "first_token", timeout_s=30)
        await kafka_admin.delete_topics([s.events_topic])

        async def events_gone() -> bool:
            return s.events_topic not in await kafka_admin.list_topics()

        await eventually_async(events_gone, 30, "chat.events deleted")
        done = await wait_for_terminal(s, session_id, request_id)
        assert done["type"] == "done"

        async def completed_retried() -> bool:
            failures = await metric_value(first.web_url, "tokenwire_worker_write_failures_total",
                                          'what="completed_event"')
            return failures >= 1

        await eventually_async(completed_retried, 60, "the completed write failing")
        first.kill_hard()

        second = await start_worker(s, worker_logs, FAST_AGGREGATES)
        await wait_for_record(kafka_bootstrap, s.events_topic,
                              lambda e: e.get("request_id") == request_id
                              and e.get("type") == "completed", timeout_s=60)
        await wait_until_committed_past(kafka_bootstrap, s.worker_id,
                                        TopicPartition(s.requests_topic, 0), sent.offset)
    finally:
        first.stop()
        if second is not None:
            second.stop()

    records = [json.loads(r.value) for r in await read_topic(kafka_bootstrap, s.events_topic)]
    outcomes = {(r["type"], r["request_id"]): r for r in records
                if r["type"] in ("completed", "failed")}
    completed = outcomes.pop(("completed", request_id))
    assert not outcomes, f"no other outcome of the request: {sorted(outcomes)}"
    # Rebuilt from the session topic, as the first worker would have written it.
    assert completed["answer"] == expected_text(messages)
    assert (completed["attempt"], completed["retries"]) == (1, 0)
    assert completed["usage"] == done["usage"]
    assert completed["timings"] == done["timings"]
    assert completed["at"] == done["timings"]["finished_at"]
    assert (completed["user_id"], completed["session_id"]) == (user_id, session_id)

    report = await verify_log(s, sessions={session_id})
    assert report.ok, [str(f) for f in report.errors]

    # The aggregates rebuilt from chat.events (the live table's offsets belong to the deleted
    # topic) count the request once.
    from agents.aggregates.replay import replay_aggregates

    minute = math.floor(done["timings"]["finished_at"] / 60) * 60
    agg = AggregatesSettings(windows_s=[10, 60], grace_s=2.0)
    await replay_aggregates(s, minute - 60, minute + 120, influx_bucket,
                            group_id=f"{tag}-replay", agg=agg)
    rows = await wait_rows(influxdb, rate_flux(influx_bucket, user_id, "1m"), bool)
    assert sum(r.get("completed", 0) for r in rows) == 1
