"""The aggregates agent: lifecycle events -> windowed rate and risk -> InfluxDB and chat.alerts.

Thin on purpose: it iterates ``chat.events``, hands each event to ``Aggregator.apply`` with the
``aggregates`` table as state, writes the returned points to the ``InfluxSink`` and sends the
returned alerts. A timer writes the still-open windows every ``current_interval_s`` for live
dashboards (never during table recovery, when the table is still partial).

Why a plain table and not a Faust windowed table: the window key is computed from the event's
own ``at`` (event time), closing is driven by a per-partition watermark persisted in the same
table, and a closed window is deleted. A plain ``Table`` restores exactly from its compacted
changelog after a restart, which sidesteps the windowed-table pitfalls (``expires`` shorter than
the window, faust #118; window state not restored after a restart or rebalance, faust PR #412),
and the same fold runs unchanged in ``aggregates.replay`` over a dict.
"""

from __future__ import annotations

import logging
from typing import Any

import faust
from pydantic import ValidationError

from agents.aggregates.aggregation import Aggregator, Output
from agents.aggregates.influx_sink import InfluxSink
from agents.metrics import WorkerMetrics
from schemas.lifecycle import parse_lifecycle_event
from tokenwire.aggregates_settings import AggregatesSettings
from tokenwire.settings import Settings

log = logging.getLogger(__name__)

TABLE_NAME = "aggregates"


def new_sink(
    settings: Settings, agg: AggregatesSettings, metrics: WorkerMetrics, bucket: str | None = None
) -> InfluxSink:
    return InfluxSink(
        url=settings.influx_url,
        org=settings.influx_org,
        token=settings.influx_token.get_secret_value(),
        bucket=bucket or settings.influx_bucket,
        metrics=metrics,
        batch_size=agg.influx_batch_size,
        flush_interval_s=agg.influx_flush_interval_s,
        buffer_max=agg.influx_buffer_max,
        retry_base_s=agg.influx_retry_base_s,
        retry_max_s=agg.influx_retry_max_s,
        timeout_s=agg.influx_timeout_s,
        close_timeout_s=agg.influx_close_timeout_s,
    )


def register_aggregates(
    app: faust.App, settings: Settings, agg: AggregatesSettings, metrics: WorkerMetrics
) -> None:
    aggregator = Aggregator(agg, default_model=settings.default_model)
    sink = new_sink(settings, agg, metrics)
    app.add_dependency(sink)
    table = app.Table(
        TABLE_NAME,
        partitions=settings.requests_partitions,  # co-partitioned with chat.events
        schema=faust.Schema(key_type=str, key_serializer="json", value_serializer="json"),
        help="Open user windows, baselines, in-flight requests and watermarks (aggregation.py).",
    )
    events = app.topic(
        settings.events_topic,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
    )
    alerts = app.topic(
        settings.alerts_topic,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
    )

    async def emit(out: Output) -> None:
        if out.rows:
            sink.write(out.rows)
        metrics.windows_closed.inc(out.closed)
        for label in out.late:
            metrics.late_events.labels(label).inc()
        for alert in out.alerts:
            try:
                await alerts.send(
                    key=alert.user_id.encode(), value=alert.model_dump_json().encode()
                )
            except Exception:  # the aggregates go on; the alert point is in InfluxDB already
                log.exception(
                    "risk alert not sent user_id=%s topic=%s", alert.user_id, settings.alerts_topic
                )
                continue
            metrics.risk_alerts.inc()
            log.warning(
                "risk alert sent user_id=%s score=%.2f signals=%s window=%s window_start=%s",
                alert.user_id, alert.score, ",".join(alert.signals), alert.window,
                alert.window_start,
            )  # fmt: skip

    @app.agent(events, name="aggregates")
    async def aggregate(stream: faust.StreamT) -> None:
        async for event in stream.events():
            message = event.message
            try:
                lifecycle = parse_lifecycle_event(message.value)
            except ValidationError as exc:
                metrics.aggregate_events.labels("invalid").inc()
                log.warning(
                    "invalid lifecycle event skipped topic=%s partition=%s offset=%s errors=%s",
                    message.topic, message.partition, message.offset, exc.error_count(),
                )  # fmt: skip
                continue
            out = aggregator.apply(lifecycle, message.partition, message.offset, table)
            metrics.aggregate_events.labels("redelivered" if out.skipped else "applied").inc()
            await emit(out)

    @app.timer(agg.current_interval_s, name="aggregates-current")
    async def write_current_windows() -> None:
        if app.in_recovery or app.rebalancing:
            return
        sink.write(aggregator.current_rows(table))

    def on_assigned(sender: Any, /, *_: Any, signal: Any, **__: Any) -> None:
        aggregator.mark_all_dirty()  # recovered windows: write them all once

    app.on_partitions_assigned.connect(on_assigned)
