"""A ``completed`` record on chat.events twice counts once, live and in a replay.

The chat worker sends a request's ``completed``/``failed`` record again when it finds the request
finished after a restart (a crash may have cut the first one off), with the same ``at``: the
aggregates count one per ``(type, request_id)`` and window (schemas/lifecycle.py).
"""

from __future__ import annotations

import math
import time
from typing import Any

import pytest
from influxdb_client import InfluxDBClient

from agents.aggregates.replay import replay_aggregates
from tests.aggregates.conftest import FAST_AGGREGATES, Stack, rate_flux, wait_rows
from tests.aggregates.lifecycle_factory import request_events
from tests.fixtures.services import make_unique_name
from tokenwire.aggregates_settings import AggregatesSettings

pytestmark = pytest.mark.slow


def finals(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in rows if r.get("final")]


async def test_a_completed_record_written_twice_is_counted_once(stack: Stack) -> None:
    t0 = math.floor(time.time() / 60) * 60 - 300
    accepted, first_token, completed = request_events("erin", t0 + 1, completion_tokens=30)
    failed = request_events("erin", t0 + 3, fail_code="http_500")[2]
    worker = await stack.start_worker()
    try:
        # The copies at new offsets, as a restarted worker's re-sends land.
        await stack.publish([accepted, first_token, completed, failed, completed, failed],
                            partition=0)
        await stack.publish(request_events("clock", t0 + 90)[:1], partition=0)  # closes both
        for window in ("10s", "1m"):
            rows = await wait_rows(stack.influx, rate_flux(stack.bucket, "erin", window),
                                   lambda rows: bool(finals(rows)))
            final = finals(rows)
            assert sum(r["completed"] for r in final) == 1, window
            assert sum(r["failed"] for r in final) == 1, window
            assert sum(r["tokens_out"] for r in final) == 30, window
    finally:
        worker.stop()

    fresh = make_unique_name("copies")
    with InfluxDBClient(url=stack.influx.url, token=stack.influx.token,
                        org=stack.influx.org) as client:  # fmt: skip
        created = client.buckets_api().create_bucket(bucket_name=fresh, org=stack.influx.org)
    try:
        agg = AggregatesSettings(windows_s=[10, 60],
                                 grace_s=float(FAST_AGGREGATES["TOKENWIRE_AGG_GRACE_S"]))
        await replay_aggregates(stack.settings, t0, t0 + 60, fresh,
                                group_id=f"{stack.settings.worker_id}-copies", agg=agg)
        rows = finals(await wait_rows(stack.influx, rate_flux(fresh, "erin", "1m"), bool))
        assert (sum(r["completed"] for r in rows), sum(r["failed"] for r in rows)) == (1, 1)
    finally:
        with InfluxDBClient(url=stack.influx.url, token=stack.influx.token,
                            org=stack.influx.org) as client:  # fmt: skip
            client.buckets_api().delete_bucket(created)
