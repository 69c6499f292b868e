"""The worker's Prometheus metrics. Labels are bounded: never a session, user or request id."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


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
        self.active = Gauge(
            "tokenwire_worker_active_requests", "Generations in progress.", registry=r
        )
        self.consumer_lag = Gauge(
            "tokenwire_worker_consumer_lag",
            "Records behind the end of chat.requests.",
            registry=r,
        )
        self.influx_write_failures = Counter(
            "tokenwire_worker_influx_write_failures_total",
            "Points InfluxDB did not take.",
            registry=r,
        )
