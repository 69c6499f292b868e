"""The worker's Prometheus metrics. Labels are bounded: never a session, user or request id.

The latency histograms are observed through tokenwire.exemplars.observe: each carries the trace
id of the request it saw as an OpenMetrics exemplar when tracing is on.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import faust
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# A whole answer: seconds to minutes.
DURATION_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0)


@dataclass
class WorkerMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.requests = Counter(
            "tokenwire_worker_requests_total",
            "Requests finished, by outcome.",
            ["outcome"],
            registry=r,
        )
        self.tokens = Counter(
            "tokenwire_worker_tokens_total", "Completion tokens streamed.", registry=r
        )
        self.token_events = Counter(
            "tokenwire_worker_token_events_total", "Token events written.", registry=r
        )
        self.retries = Counter(
            "tokenwire_worker_retries_total", "New attempts, by reason.", ["reason"], registry=r
        )
        self.errors = Counter(
            "tokenwire_worker_errors_total",
            "Requests ended with an error, by code.",
            ["code"],
            registry=r,
        )
        self.dead_letters = Counter(
            "tokenwire_worker_dead_letters_total",
            "Records sent to the DLQ.",
            ["reason"],
            registry=r,
        )
        # Alert on these two: a dead letter or terminal event Kafka would not take.
        self.write_failures = Counter(
            "tokenwire_worker_write_failures_total",
            "Failed attempts of a retried write: dead_letter, error_event, completed_event, "
            "failed_event.",
            ["what"],
            registry=r,
        )
        self.writes_given_up = Counter(
            "tokenwire_worker_writes_given_up_total",
            "Writes given up after TOKENWIRE_WORKER_WRITE_GIVE_UP_S; the record was acked and "
            "its coordinates logged at ERROR.",
            ["what"],
            registry=r,
        )
        self.ttft = Histogram(
            "tokenwire_worker_ttft_seconds",
            "Accepted to first token.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.token_latency = Histogram(
            "tokenwire_worker_token_emit_seconds",
            "Chunk received to token event queued.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.request_duration = Histogram(
            "tokenwire_worker_request_duration_seconds",
            "Accepted to the terminal event written, by outcome: completed, failed.",
            ["outcome"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.cancel_latency = Histogram(
            "tokenwire_worker_cancel_seconds",
            "Cancel requested (the edge's clock) to the upstream stream closed.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.cancels = Counter(
            "tokenwire_worker_cancels_total",
            "Requests ended by a cancel, by when it came: queued (never sent to the LLM), "
            "generating, redelivered (found on chat.control after a crash).",
            ["when"],
            registry=r,
        )
        self.active = Gauge(
            "tokenwire_worker_active_requests", "Generations in progress.", registry=r
        )
        self.consumer_lag = Gauge(
            "tokenwire_worker_consumer_lag",
            "Records behind the end of a consumed topic (chat.requests, chat.events), summed over "
            "the partitions this worker owns.",
            ["topic"],
            registry=r,
        )
        self.influx_write_failures = Counter(
            "tokenwire_worker_influx_write_failures_total",
            "Points InfluxDB did not take (per failed attempt; retried points count again).",
            registry=r,
        )
        self.influx_points_written = Counter(
            "tokenwire_worker_influx_points_written_total", "Points InfluxDB took.", registry=r
        )
        self.influx_points_dropped = Counter(
            "tokenwire_worker_influx_points_dropped_total",
            "Points given up on: buffer_full, rejected (malformed), shutdown (not flushed).",
            ["reason"],
            registry=r,
        )
        self.influx_buffer_points = Gauge(
            "tokenwire_worker_influx_buffer_points", "Points waiting for InfluxDB.", registry=r
        )
        self.aggregate_events = Counter(
            "tokenwire_worker_aggregate_events_total",
            "Lifecycle events read by the aggregates, by outcome: applied, redelivered (skipped "
            "by offset), invalid.",
            ["outcome"],
            registry=r,
        )
        self.late_events = Counter(
            "tokenwire_worker_late_events_total",
            "Lifecycle events beyond a window's grace period: counted, not applied.",
            ["window"],
            registry=r,
        )
        self.windows_closed = Counter(
            "tokenwire_worker_windows_closed_total", "User windows closed.", registry=r
        )
        self.risk_alerts = Counter(
            "tokenwire_worker_risk_alerts_total", "Risk alerts sent to chat.alerts.", registry=r
        )


def update_consumer_lag(app: faust.App, metrics: WorkerMetrics, topics: list[str]) -> None:
    """Lag = high watermark - committed offset (the read position before the first commit)."""
    consumer = app.consumer
    committed = getattr(consumer, "_committed_offset", {})
    read = getattr(consumer, "_read_offset", {})
    lag = dict.fromkeys(topics, 0)
    for tp in consumer.assignment():
        if tp.topic not in lag:
            continue
        try:
            highwater = consumer.highwater(tp)
        except Exception:  # the partition was revoked in between: no figure this round
            continue
        if highwater is None:
            continue
        position = committed.get(tp)
        if position is None:
            last_read = read.get(tp)
            position = 0 if last_read is None else last_read + 1
        lag[tp.topic] += max(0, highwater - position)
    for topic, value in lag.items():
        metrics.consumer_lag.labels(topic).set(value)
