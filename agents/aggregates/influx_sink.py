"""A bounded, non-blocking, retrying writer of points to InfluxDB (async client, one owner task).

``write`` only puts rows in a buffer and returns; the drain task sends them in batches with
``InfluxDBClientAsync`` on the worker's own loop, so InfluxDB never blocks the stream. The buffer
is keyed by point identity (measurement, tags, time): a newer version of a window's point replaces
the one still waiting, so the live refreshes of a window cost one slot, not one per refresh.

When InfluxDB is down or slow the batch stays in the buffer and is retried with exponential
backoff; when the buffer is full the oldest points are dropped, counted in
``tokenwire_worker_influx_points_dropped_total{reason}`` and logged -- never silently. A batch
InfluxDB rejects as malformed (400/422) is dropped the same way (``reason="rejected"``).

Shutdown flushes explicitly (``flush`` / ``on_stop``): influxdb-client's own batching writer does
not flush on close (influxdata/influxdb-client-python#504, #697), which is why it is not used.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from typing import Any, Protocol

import mode
from influxdb_client import Point, WritePrecision
from influxdb_client.client.influxdb_client_async import InfluxDBClientAsync
from influxdb_client.rest import ApiException

from agents.aggregates.points import PointRow

log = logging.getLogger(__name__)

PERMANENT_STATUSES = frozenset({400, 413, 422})
DROP_LOG_INTERVAL_S = 5.0


class SinkMetrics(Protocol):
    influx_write_failures: Any
    influx_points_dropped: Any
    influx_points_written: Any
    influx_buffer_points: Any


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ApiException):
        return f"HTTP {exc.status} {str(exc.body or exc.reason)[:300]}"
    return f"{type(exc).__name__}: {exc}"


def to_line(row: PointRow) -> str:
    point = Point(row.measurement)
    for name, value in row.tags:
        point.tag(name, value)
    for name, field_value in row.fields.items():
        point.field(name, field_value)
    point.time(row.time_s, WritePrecision.S)
    return str(point.to_line_protocol())


class InfluxSink(mode.Service):
    def __init__(
        self,
        *,
        url: str,
        org: str,
        token: str,
        bucket: str,
        metrics: SinkMetrics,
        batch_size: int = 500,
        flush_interval_s: float = 1.0,
        buffer_max: int = 50_000,
        retry_base_s: float = 0.5,
        retry_max_s: float = 30.0,
        timeout_s: float = 10.0,
        close_timeout_s: float = 10.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        # Made in on_start; a worker that fails before then stops without one.
        self._client: InfluxDBClientAsync | None = None
        self.url, self.org, self.bucket = url, org, bucket
        self._token = token
        self.metrics = metrics
        self.batch_size = batch_size
        self.flush_interval_s = flush_interval_s
        self.buffer_max = buffer_max
        self.retry_base_s = retry_base_s
        self.retry_max_s = retry_max_s
        self.timeout_s = timeout_s
        self.close_timeout_s = close_timeout_s
        self._buffer: OrderedDict[tuple[Any, ...], PointRow] = OrderedDict()
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()  # one write at a time: versions of a point land in order
        self._in_flight = 0
        self._failures = 0
        self._dropped_unlogged = 0
        self._drop_reason = ""
        self._last_drop_log = 0.0
        self.written = 0
        self.dropped = 0

    # --- the producer side: never awaits -------------------------------------------------------
    def write(self, rows: list[PointRow]) -> None:
        for row in rows:
            if row.key in self._buffer:
                self._buffer[row.key] = row
                continue
            if len(self._buffer) >= self.buffer_max:
                self._buffer.popitem(last=False)
                self._count_dropped(1, "buffer_full")
            self._buffer[row.key] = row
        self.metrics.influx_buffer_points.set(len(self._buffer))
        if len(self._buffer) >= self.batch_size:
            self._wake.set()

    @property
    def pending(self) -> int:
        return len(self._buffer) + self._in_flight

    async def flush(self, timeout_s: float | None = None) -> bool:
        """Send everything buffered now; True when all of it landed within the timeout.

        Writes are serialised by a lock, so an older version of a point can never land after a
        newer one; waiting for the lock also waits for the drain task's batch in flight.
        """
        deadline = time.monotonic() + (timeout_s if timeout_s is not None else self.timeout_s)
        while self.pending and time.monotonic() < deadline:
            if not self._buffer:
                async with self._lock:
                    continue
            if not await self._send_batch():
                remaining = deadline - time.monotonic()
                await asyncio.sleep(max(0.0, min(self._retry_delay(), remaining)))
        return not self.pending

    # --- the service ---------------------------------------------------------------------------
    async def on_start(self) -> None:
        self._client = InfluxDBClientAsync(
            url=self.url, token=self._token, org=self.org, timeout=int(self.timeout_s * 1000)
        )
        self._write_api = self._client.write_api()
        self.add_future(self._drain_forever())
        log.info("influx sink started url=%s bucket=%s", self.url, self.bucket)

    async def on_stop(self) -> None:
        if self._client is None:
            return  # never started
        # The drain task ends with the service; the last points go out here, explicitly.
        landed = await self.flush(self.close_timeout_s)
        if not landed:
            left = len(self._buffer)
            self._buffer.clear()
            self._count_dropped(left, "shutdown")
        self._log_drops(force=True)
        await self._client.close()
        log.info("influx sink stopped written=%s dropped=%s", self.written, self.dropped)

    async def _drain_forever(self) -> None:
        while not self.should_stop:
            try:
                await asyncio.wait_for(self._wake.wait(), self.flush_interval_s)
            except TimeoutError:
                pass
            self._wake.clear()
            while self._buffer and not self.should_stop:
                if not await self._send_batch():
                    await self.sleep(self._retry_delay())
                    break
            self._log_drops()

    def _retry_delay(self) -> float:
        return min(self.retry_max_s, self.retry_base_s * 2 ** min(max(self._failures - 1, 0), 16))

    async def _send_batch(self) -> bool:
        async with self._lock:
            return await self._send_locked()

    async def _send_locked(self) -> bool:
        batch = [self._buffer.popitem(last=False)[1] for _ in range(self._take())]
        if not batch:
            return True
        self._in_flight = len(batch)
        try:
            await self._write_api.write(
                bucket=self.bucket,
                org=self.org,
                record=[to_line(row) for row in batch],
                write_precision=WritePrecision.S,  # type: ignore[arg-type]  # typed str upstream
            )
        except ApiException as exc:
            return self._failed(batch, exc, permanent=exc.status in PERMANENT_STATUSES)
        except Exception as exc:  # connection refused, reset, timeout: InfluxDB not there
            return self._failed(batch, exc, permanent=False)
        finally:
            self._in_flight = 0
            self.metrics.influx_buffer_points.set(len(self._buffer))
        self._failures = 0
        self.written += len(batch)
        self.metrics.influx_points_written.inc(len(batch))
        return True

    def _take(self) -> int:
        return min(self.batch_size, len(self._buffer))

    def _failed(self, batch: list[PointRow], exc: BaseException, *, permanent: bool) -> bool:
        self._failures += 1
        self.metrics.influx_write_failures.inc(len(batch))
        if permanent:
            log.error(
                "influx rejected a batch, dropping it points=%s bucket=%s error=%s",
                len(batch), self.bucket, _describe(exc),
            )  # fmt: skip
            self._count_dropped(len(batch), "rejected")
            return True
        log.warning(
            "influx write failed, will retry points=%s buffered=%s failures=%s error=%s",
            len(batch), len(self._buffer), self._failures, _describe(exc),
        )  # fmt: skip
        # Put the batch back in front, unless a newer version of a point arrived meanwhile.
        for row in reversed(batch):
            if row.key not in self._buffer:
                self._buffer[row.key] = row
                self._buffer.move_to_end(row.key, last=False)
        while len(self._buffer) > self.buffer_max:
            self._buffer.popitem(last=False)
            self._count_dropped(1, "buffer_full")
        return False

    def _count_dropped(self, count: int, reason: str) -> None:
        if count <= 0:
            return
        self.dropped += count
        self.metrics.influx_points_dropped.labels(reason).inc(count)
        self._dropped_unlogged += count
        self._drop_reason = reason
        self._log_drops()

    def _log_drops(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if not self._dropped_unlogged:
            return
        if force or now - self._last_drop_log >= DROP_LOG_INTERVAL_S:
            log.error(
                "influx points dropped count=%s total_dropped=%s reason=%s buffer_max=%s",
                self._dropped_unlogged, self.dropped, self._drop_reason, self.buffer_max,
            )  # fmt: skip
            self._dropped_unlogged = 0
            self._last_drop_log = now
