"""An idle worker's follower of ``chat.control`` long-polls: a few fetches a second at most.

It fetched with 100 ms waits (~10 empty fetches a second, broker and worker); the broker answers a
long poll as soon as a cancel arrives, so cancels are no slower (tests/pipeline/test_cancel.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from aiokafka import AIOKafkaProducer

from agents.chat.cancellation import CancelRegistry, ControlFollower
from tests.fixtures.fetch_counting import count_fetches
from tokenwire.settings import Settings
from tokenwire.topics import ensure_core_topics

IDLE_WINDOW_S = 3.0
# A 1 s long poll sends about one fetch a second; the 100 ms waits sent ~30 in the window.
MAX_IDLE_FETCHES = 12


async def test_an_idle_control_follower_sends_a_few_fetches_a_second_at_most(
    kafka_bootstrap: str, kafka_producer: AIOKafkaProducer, unique_name: Callable[..., str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tag = unique_name("idle-control")
    settings = Settings(
        kafka_bootstrap=kafka_bootstrap, worker_id=tag, requests_partitions=1,
        requests_topic=f"{tag}.requests", events_topic=f"{tag}.events",
        alerts_topic=f"{tag}.alerts", dead_letter_topic=f"{tag}.dlq",
        control_topic=f"{tag}.control",
    )  # fmt: skip
    await ensure_core_topics(settings)
    follower = ControlFollower(settings, CancelRegistry(), kafka_producer)
    await follower.start()
    reading = asyncio.create_task(follower.run_forever())
    try:
        await follower.follow_from_end([0])
        fetches = count_fetches(monkeypatch)
        await asyncio.sleep(IDLE_WINDOW_S)  # the window observed, not a wait for a state
        sent = fetches[f"{tag}-control"]
    finally:
        reading.cancel()
        await asyncio.gather(reading, return_exceptions=True)
        await follower.stop()
    assert sent <= MAX_IDLE_FETCHES, sent
