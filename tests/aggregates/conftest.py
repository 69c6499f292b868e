"""Real workers fed with lifecycle events we write ourselves, and InfluxDB read back with Flux.

A test gets its own topics (``<tag>.events`` ...), consumer group, changelog topic and bucket, so
nothing it reads was written by another test.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from influxdb_client import InfluxDBClient

from schemas.lifecycle import LifecycleEvent
from tests.fixtures.pipeline import (
    WorkerProcess,
    pipeline_settings_for,
    start_worker,
)
from tests.fixtures.services import InfluxTarget, make_unique_name, temporary_bucket
from tokenwire.kafka_clients import new_producer
from tokenwire.settings import Settings
from tokenwire.topics import ensure_core_topics

UNUSED_LLM = "http://127.0.0.1:9"  # the aggregates never call the model

# Small windows and a fast refresh, so a test sees closed windows within seconds.
FAST_AGGREGATES = {
    "TOKENWIRE_AGG_WINDOWS_S": "[10, 60]",
    "TOKENWIRE_AGG_GRACE_S": "2",
    "TOKENWIRE_AGG_CURRENT_INTERVAL_S": "0.5",
    "TOKENWIRE_AGG_INFLUX_FLUSH_INTERVAL_S": "0.2",
    # The models the specifications use; any other is tagged "other" (series.py).
    "TOKENWIRE_AGG_INFLUX_MODELS": '["gpt-test", "small"]',
}


@dataclass
class Stack:
    """The names one test's worker uses."""

    settings: Settings
    influx: InfluxTarget
    bucket: str
    log_dir: Path
    agg_env: dict[str, str]

    async def start_worker(self) -> WorkerProcess:
        return await start_aggregates_worker(self.settings, self.agg_env, self.log_dir)

    async def publish(self, events: list[LifecycleEvent], partition: int | None = None) -> None:
        await publish_events(self.settings, events, partition)

    def query(self, flux: str) -> list[dict[str, Any]]:
        return flux_rows(self.influx, flux)

    async def wait_rows(
        self,
        flux: str,
        until: Callable[[list[dict[str, Any]]], bool],
        timeout_s: float = 60.0,
    ) -> list[dict[str, Any]]:
        return await wait_rows(self.influx, flux, until, timeout_s)


def flux_rows(influx: InfluxTarget, flux: str) -> list[dict[str, Any]]:
    with InfluxDBClient(url=influx.url, token=influx.token, org=influx.org) as client:
        tables = client.query_api().query(flux, org=influx.org)
        return [record.values for table in tables for record in table.records]


async def wait_rows(
    influx: InfluxTarget,
    flux: str,
    until: Callable[[list[dict[str, Any]]], bool],
    timeout_s: float = 60.0,
) -> list[dict[str, Any]]:
    """Poll InfluxDB until the query's rows satisfy ``until`` (InfluxDB has no change feed)."""
    deadline = time.monotonic() + timeout_s
    rows: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        rows = await asyncio.to_thread(flux_rows, influx, flux)
        if until(rows):
            return rows
        await asyncio.sleep(0.3)
    raise AssertionError(f"InfluxDB never satisfied the condition; last rows: {rows[:10]}")


def rate_flux(bucket: str, user_id: str, window: str = "10s", extra: str = "") -> str:
    return (
        f'from(bucket: "{bucket}") |> range(start: 0) '
        f'|> filter(fn: (r) => r._measurement == "chat_rate" and r.user_id == "{user_id}" '
        f'and r.window == "{window}") {extra}'
        '|> pivot(rowKey: ["_time", "model"], columnKey: ["_field"], valueColumn: "_value")'
    )


async def publish_events(
    settings: Settings, events: list[LifecycleEvent], partition: int | None = None
) -> None:
    """As the chat runtime writes them: key = user_id, value = the event's JSON."""
    producer = new_producer(settings.kafka_connection, client_id="aggregates-test")
    await producer.start()
    try:
        for event in events:
            await producer.send_and_wait(
                settings.events_topic,
                event.model_dump_json().encode(),
                key=event.user_id.encode(),
                partition=partition,
            )
    finally:
        await producer.stop()


async def start_aggregates_worker(
    settings: Settings, agg_env: dict[str, str], log_dir: Path
) -> WorkerProcess:
    """A real ``tokenwire worker`` with these aggregates settings, once Faust says it is ready."""
    return await start_worker(settings, log_dir, agg_env)


@pytest.fixture
async def stack(
    kafka_bootstrap: str,
    influxdb: InfluxTarget,
    influx_bucket: str,
    tmp_path: Path,
) -> Stack:
    return await new_stack(kafka_bootstrap, influxdb, influx_bucket, tmp_path)


async def new_stack(
    kafka_bootstrap: str,
    influxdb: InfluxTarget,
    bucket: str,
    log_dir: Path,
    llm_url: str = UNUSED_LLM,
    **agg: str,
) -> Stack:
    tag = make_unique_name("agg").replace("-", "")
    settings = pipeline_settings_for(
        kafka_bootstrap,
        llm_url,
        tag,
        requests_partitions=2,
        influx_url=influxdb.url,
        influx_org=influxdb.org,
        influx_token=influxdb.token,
        influx_bucket=bucket,
    )
    await ensure_core_topics(settings)
    return Stack(settings, influxdb, bucket, log_dir, {**FAST_AGGREGATES, **agg})


@pytest.fixture(scope="module")
def module_bucket(influxdb: InfluxTarget) -> Iterator[str]:
    """A bucket shared by the tests of one module (a worker per module is the slow part)."""
    with temporary_bucket(influxdb) as name:
        yield name


async def until_true(check: Callable[[], Awaitable[bool]], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.25)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


@pytest.fixture(scope="module")
def module_logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("aggregates-logs")
