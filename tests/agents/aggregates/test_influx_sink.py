"""The InfluxDB sink against a real InfluxDB; outages come from a TCP proxy we switch off."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from influxdb_client import InfluxDBClient

from agents.aggregates.influx_sink import InfluxSink
from agents.aggregates.points import PointRow
from agents.metrics import WorkerMetrics
from tests.fixtures.asgi_server import free_port
from tests.fixtures.services import InfluxTarget
from tests.fixtures.waiting import eventually


class FaultProxy:
    """Forwards TCP to InfluxDB while up; refuses connections and cuts open ones while down."""

    def __init__(self, target_url: str) -> None:
        host_port = target_url.split("://", 1)[1].rstrip("/")
        self.target_host, port = host_port.rsplit(":", 1)
        self.target_port = int(port)
        self.port = free_port()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def up(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

    async def down(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._writers):
            writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(self.target_host, self.target_port)
        self._writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError, OSError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._writers -= {writer, up_writer}


@pytest.fixture
async def proxy(influxdb: InfluxTarget) -> AsyncIterator[FaultProxy]:
    p = FaultProxy(influxdb.url)
    await p.up()
    yield p
    await p.down()


def rows(n: int, *, user: str = "u1", value: int = 1, t0: int = 1_700_000_000) -> list[PointRow]:
    return [
        PointRow("chat_rate", (("user_id", user), ("window", "10s")), {"requests": value},
                 t0 + 10 * i)
        for i in range(n)
    ]  # fmt: skip


def sink_for(url: str, influxdb: InfluxTarget, bucket: str, **options: Any) -> InfluxSink:
    """Fast retries and flushes, so an outage and a recovery take a fraction of a second."""
    defaults: dict[str, Any] = {
        "flush_interval_s": 0.1, "retry_base_s": 0.05, "retry_max_s": 0.2, "timeout_s": 2.0,
        "close_timeout_s": 5.0,
    }  # fmt: skip
    return InfluxSink(
        url=url,
        org=influxdb.org,
        token=influxdb.token,
        bucket=bucket,
        metrics=WorkerMetrics(),
        **{**defaults, **options},
    )


def query(influxdb: InfluxTarget, bucket: str) -> list[tuple[float, int]]:
    flux = (
        f'from(bucket: "{bucket}") |> range(start: 0) '
        '|> filter(fn: (r) => r._measurement == "chat_rate" and r._field == "requests")'
    )
    with InfluxDBClient(url=influxdb.url, token=influxdb.token, org=influxdb.org) as client:
        tables = client.query_api().query(flux, org=influxdb.org)
    return sorted((r.get_time().timestamp(), r.get_value()) for t in tables for r in t.records)


def sample(sink: InfluxSink, name: str, **labels: str) -> float:
    value = sink.metrics.registry.get_sample_value(name, labels)  # type: ignore[attr-defined]
    return value or 0.0


async def test_the_last_points_land_on_a_clean_shutdown(
    influxdb: InfluxTarget, influx_bucket: str
) -> None:
    sink = sink_for(influxdb.url, influxdb, influx_bucket, flush_interval_s=3600)
    await sink.start()
    sink.write(rows(120))
    await sink.stop()  # no timer flush could have run: only the explicit one on stop
    assert len(query(influxdb, influx_bucket)) == 120
    assert sample(sink, "tokenwire_worker_influx_points_written_total") == 120


async def test_writing_a_window_again_overwrites_its_point(
    influxdb: InfluxTarget, influx_bucket: str
) -> None:
    sink = sink_for(influxdb.url, influxdb, influx_bucket)
    await sink.start()
    try:
        sink.write(rows(3, value=1))
        assert await sink.flush()
        sink.write(rows(3, value=7))
        assert await sink.flush()
    finally:
        await sink.stop()
    assert query(influxdb, influx_bucket) == [(1_700_000_000 + 10 * i, 7) for i in range(3)]


async def test_refreshes_of_a_waiting_point_take_one_slot(
    influxdb: InfluxTarget, influx_bucket: str
) -> None:
    sink = sink_for(influxdb.url, influxdb, influx_bucket, buffer_max=5, flush_interval_s=3600)
    await sink.start()
    for value in range(1000):
        sink.write(rows(1, value=value))
    assert sink.pending == 1
    await sink.stop()
    assert sink.dropped == 0
    assert query(influxdb, influx_bucket) == [(1_700_000_000, 999)]


async def test_influxdb_down_never_blocks_counts_losses_and_retries_the_rest(
    influxdb: InfluxTarget,
    influx_bucket: str,
    proxy: FaultProxy,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await proxy.down()
    sink = sink_for(proxy.url, influxdb, influx_bucket, buffer_max=50, batch_size=20)
    await sink.start()
    try:
        started = time.perf_counter()
        with caplog.at_level(logging.WARNING, logger="agents.aggregates.influx_sink"):
            for i in range(8):
                sink.write(rows(10, user=f"u{i}"))
            elapsed = time.perf_counter() - started
            assert elapsed < 0.05, f"write() must not wait for InfluxDB ({elapsed:.3f}s)"
            # The drain task keeps failing and retrying in the background.
            failures = "tokenwire_worker_influx_write_failures_total"
            await eventually(lambda: sample(sink, failures) >= 40)
        assert sink.pending == 50, "bounded: the oldest 30 gave way"
        assert sample(sink, "tokenwire_worker_influx_points_dropped_total",
                      reason="buffer_full") == 30  # fmt: skip
        assert any("influx points dropped" in m for m in caplog.messages)
        assert any("influx write failed, will retry" in m for m in caplog.messages)
        await proxy.up()
        assert await sink.flush(timeout_s=10)
    finally:
        await sink.stop()
    landed = query(influxdb, influx_bucket)
    assert len(landed) == 50
    assert sink.dropped == 30 and sink.written == 50


async def test_a_batch_influxdb_rejects_is_dropped_counted_and_does_not_jam(
    influxdb: InfluxTarget, influx_bucket: str, caplog: pytest.LogCaptureFixture
) -> None:
    sink = sink_for(influxdb.url, influxdb, influx_bucket)
    await sink.start()
    try:
        sink.write(rows(1, value=1))
        assert await sink.flush()
        conflicting = PointRow("chat_rate", (("user_id", "u1"), ("window", "10s")),
                               {"requests": "many"}, 1_700_000_000)  # fmt: skip
        with caplog.at_level(logging.ERROR, logger="agents.aggregates.influx_sink"):
            sink.write([conflicting])
            assert await sink.flush()
        sink.write(rows(2, user="u2", value=3))
        assert await sink.flush()
    finally:
        await sink.stop()
    assert sample(sink, "tokenwire_worker_influx_points_dropped_total", reason="rejected") == 1
    assert any("influx rejected a batch" in m for m in caplog.messages)
    assert len(query(influxdb, influx_bucket)) == 3
