"""After a worker restart the open windows continue from the changelog instead of starting at 0.

(faust's own windowed tables are known to lose window state on restart or rebalance, see the
discussion on faust-streaming PR #412; the aggregates use a plain table, and this proves it.)
"""

from __future__ import annotations

import math
import time

import pytest
from aiokafka import TopicPartition

from tests.aggregates.conftest import Stack, rate_flux, until_true
from tests.aggregates.lifecycle_factory import by_time, request_events
from tokenwire.kafka_clients import new_admin, new_consumer

pytestmark = pytest.mark.slow


def minute_ago() -> float:
    return math.floor(time.time() / 60) * 60 - 120


async def committed_everything(stack: Stack) -> bool:
    """The worker's group committed the end of every chat.events partition."""
    settings = stack.settings
    admin = new_admin(settings.kafka_connection, client_id="restart-test")
    consumer = new_consumer(settings.kafka_connection, client_id="restart-test")
    await admin.start()
    await consumer.start()
    try:
        tps = [
            TopicPartition(settings.events_topic, p) for p in range(settings.requests_partitions)
        ]
        ends = await consumer.end_offsets(tps)
        committed = await admin.list_consumer_group_offsets(settings.worker_id, partitions=tps)
        return all(
            ends[tp] == 0 or (tp in committed and committed[tp].offset >= ends[tp]) for tp in tps
        )
    finally:
        await consumer.stop()
        await admin.close()


async def two_phases(stack: Stack, t0: float, *, hard: bool) -> None:
    worker = await stack.start_worker()
    try:
        await stack.publish(
            by_time([e for i in range(3) for e in request_events("carol", t0 + 1 + i)])
        )
        await stack.wait_rows(
            rate_flux(stack.bucket, "carol", "1m"),
            lambda rows: any(r.get("completed") == 3 for r in rows),
        )
        if hard:
            worker.kill_hard()
        else:
            await until_true(lambda: committed_everything(stack), 30, "the offset commit")
            worker.stop()
    finally:
        worker.stop()
    worker = await stack.start_worker()
    try:
        await stack.publish(
            by_time([e for i in range(2) for e in request_events("carol", t0 + 20 + i)])
        )
        await stack.publish(request_events("carol", t0 + 80)[:1])  # closes the minute t0
        rows = await stack.wait_rows(
            rate_flux(stack.bucket, "carol", "1m"),
            lambda rows: any(r.get("final") and r["_time"].timestamp() == t0 for r in rows),
        )
        final = next(r for r in rows if r["_time"].timestamp() == t0)
        assert (final["requests"], final["completed"], final["ttft_count"]) == (5, 5, 5)
        assert final["tokens_out"] == 5 * 20
    finally:
        worker.stop()


async def test_a_clean_restart_continues_the_open_windows(stack: Stack) -> None:
    """Offsets were committed, so phase one is not read again: only the changelog has it."""
    await two_phases(stack, minute_ago(), hard=False)


async def test_a_hard_kill_neither_loses_nor_double_counts(stack: Stack) -> None:
    """SIGKILL: whatever was not committed is read again and recognised (offset/seen marks)."""
    await two_phases(stack, minute_ago(), hard=True)
