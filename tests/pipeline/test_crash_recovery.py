"""A worker killed with SIGKILL mid-stream: every request still completes exactly once.

Several requests stream concurrently on one partition (concurrency > 1, faust-streaming #606's
setting), and a short request behind them finishes first, so its offset cannot be committed
past the long ones. After ``kill -9`` a new worker must resume the long ones as new attempts
(``retry``) with exact final text, and must not generate the finished one again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from pathlib import Path

from aiokafka import AIOKafkaProducer

from tests.fixtures.kafka_reading import read_session_records
from tests.fixtures.pipeline import edge_serving, pipeline_settings_for, start_worker
from tests.fixtures.sse_client import read_session
from tests.pipeline.conftest import token_for, user_message
from tokenwire.answers import fold
from tokenwire.simulator import expected_text
from tokenwire.topics import ensure_core_topics

LONG = "[[sim: tokens=120 tps=25]]"


async def test_kill_9_mid_stream_loses_nothing_and_repeats_nothing(
    kafka_bootstrap: str, simulator_url: str, session_layout: str, worker_logs: Path,
    exit_stack: contextlib.AsyncExitStack,
) -> None:
    tag = f"crash{uuid.uuid4().hex[:8]}"
    settings = pipeline_settings_for(kafka_bootstrap, simulator_url, tag, worker_concurrency=4,
                                     requests_partitions=2,
                                     session_layout=session_layout)
    await ensure_core_topics(settings)
    edge_url = await exit_stack.enter_async_context(edge_serving(settings))
    first = await start_worker(settings, worker_logs)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all",
                                enable_idempotence=True)
    await producer.start()
    try:
        long_ones = {f"s-long{i}-{tag}": user_message(f"{LONG} long {i} {tag}") for i in range(3)}
        short_session, short = f"s-short-{tag}", user_message(f"short {tag}")
        for sid, messages in [*long_ones.items(), (short_session, short)]:
            request = {"request_id": f"r-{sid}", "session_id": sid, "user_id": "crash",
                       "messages": messages}
            # One partition for all: the short one finishes behind unfinished long ones.
            await producer.send_and_wait(settings.requests_topic, json.dumps(request).encode(),
                                         key=sid.encode(), partition=0)

        async def partial(sid: str) -> None:
            await read_session(edge_url, sid, token_for(settings, sid), stop_after=3)

        await asyncio.wait_for(asyncio.gather(*(partial(s) for s in long_ones)), 60)
        await read_session(edge_url, short_session, token_for(settings, short_session),
                           request_id=f"r-{short_session}")
        first.kill_hard()

        second = await start_worker(settings, worker_logs)
        try:
            for sid, messages in long_ones.items():
                events = await read_session(edge_url, sid, token_for(settings, sid),
                                            request_id=f"r-{sid}", timeout_s=90)
                answer = fold(e.data for e in events)[f"r-{sid}"]
                assert answer.status == "done" and answer.text == expected_text(messages)
                assert answer.retries >= 1, "the restarted attempt is announced"
                assert [e.type for e in events].count("done") == 1
        finally:
            second.stop()

        short_events = [json.loads(r.value)
                        for r in await read_session_records(settings, short_session)]
        assert [e["type"] for e in short_events if e["type"] != "token"] == ["start", "done"]
        assert fold(short_events)[f"r-{short_session}"].text == expected_text(short)
    finally:
        await producer.stop()
        first.stop()
