"""The edge's usage ledger counts a ``completed`` record's tokens once per request, even when a
worker sent the record again after a crash (schemas/lifecycle.py)."""

from __future__ import annotations

import time
import uuid

from aiokafka import AIOKafkaProducer

from api.usage_ledger import UsageLedger
from tests.aggregates.lifecycle_factory import request_events
from tests.fixtures.pipeline import pipeline_settings_for
from tests.fixtures.waiting import eventually
from tokenwire.topics import ensure_core_topics


async def test_a_completed_record_sent_twice_counts_its_tokens_once(
    kafka_bootstrap: str, simulator_url: str, kafka_producer: AIOKafkaProducer
) -> None:
    tag = f"ledgercopies{uuid.uuid4().hex[:8]}"
    s = pipeline_settings_for(kafka_bootstrap, simulator_url, tag, requests_partitions=1)
    await ensure_core_topics(s)
    ledger = UsageLedger(s, client_id=f"{tag}-ledger")
    await ledger.start()
    try:
        # 10 prompt + 20 completion tokens each; the second request tells when the copy is read.
        again = request_events("u-copies", time.time())[2]
        after = request_events("u-copies", time.time())[2]
        for event in (again, again, after):
            await kafka_producer.send_and_wait(s.events_topic, event.model_dump_json().encode(),
                                               key=b"u-copies", partition=0)
        await eventually(lambda: ledger.usage("u-copies").tokens_last_minute >= 60)
        assert ledger.usage("u-copies").tokens_last_minute == 60
    finally:
        await ledger.stop()
