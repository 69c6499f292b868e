"""What one benchmark run measures: the ``--quick`` and full presets, and flag overrides."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, replace
from pathlib import Path

LAYOUTS = ("topic", "shared")
# How much of the concurrency list the 2 workers + 2 edges scenario (shared layout) repeats.
SCALE_OUT = ("all", "largest", "off")


@dataclass(frozen=True)
class BenchConfig:
    quick: bool
    concurrency: tuple[int, ...]
    tps: float
    ttft_ms: float
    tokens: int
    requests_per_session: int
    ramp_s: float
    idle: tuple[int, ...]
    idle_sessions: int
    ping_s: float
    idle_hold_s: float
    stream_clients: int
    idle_clients: int
    ingress: str
    out: Path
    request_timeout_s: float = 120.0
    log_level: str = "INFO"
    streaming: bool = True
    idle_enabled: bool = True
    profile_at: int | None = None
    keep_topics: bool = False
    # The cancel scenario: this many long answers, each cancelled mid-stream (0: not run).
    cancel_streams: int = 25
    cancel_tokens: int = 400
    cancel_enabled: bool = True
    # Session layouts the pipeline is measured in, each against its own worker + edge; the
    # first is the primary one: cancels and the idle parts run on it alone.
    layouts: tuple[str, ...] = LAYOUTS
    scale_out: str = "all"
    # The worker's coalescing: chunk (one event per token, what the targets are about) or
    # adaptive (joins chunks while the worker is behind, within the latency bound).
    coalesce: str = "chunk"

    @property
    def primary_layout(self) -> str:
        return self.layouts[0]

    @property
    def scale_concurrency(self) -> tuple[int, ...]:
        """Concurrencies of the 2 workers + 2 edges scenario (shared layout only)."""
        if not self.streaming or "shared" not in self.layouts or self.scale_out == "off":
            return ()
        if self.scale_out == "largest":
            return (max(self.concurrency),)
        return self.concurrency

    @property
    def runs_cancel(self) -> bool:
        return self.cancel_enabled and self.cancel_streams > 0

    @property
    def needs_stack(self) -> bool:
        """Simulator, worker, edge and relay are up for the streaming or the cancel part."""
        return self.streaming or self.runs_cancel


QUICK = BenchConfig(
    quick=True, concurrency=(4,), tps=50.0, ttft_ms=50.0, tokens=20, requests_per_session=2,
    ramp_s=0.2, idle=(200,), idle_sessions=10, ping_s=1.0, idle_hold_s=1.6, stream_clients=1,
    idle_clients=1, ingress="http", out=Path("bench-results"), request_timeout_s=60.0,
    cancel_streams=3,
)
FULL = BenchConfig(
    quick=False, concurrency=(10, 25, 50, 100, 500, 1000), tps=30.0, ttft_ms=200.0, tokens=60,
    requests_per_session=3, ramp_s=1.0, idle=(1000, 5000, 10000), idle_sessions=100, ping_s=15.0,
    idle_hold_s=20.0, stream_clients=2, idle_clients=2, ingress="http", out=Path("bench-results"),
    # Past saturation (500+ streams here) answers queue for minutes; the client waits for them
    # so that "lost" means lost, not "not yet delivered".
    request_timeout_s=600.0,
)


def _ints(text: str) -> tuple[int, ...]:
    values = tuple(int(part) for part in text.split(",") if part.strip())
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("expected positive integers separated by commas")
    return values


def _layouts(text: str) -> tuple[str, ...]:
    values = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = [v for v in values if v not in LAYOUTS]
    if not values or unknown or len(set(values)) != len(values):
        raise argparse.ArgumentTypeError(
            f"expected distinct layouts among {','.join(LAYOUTS)} separated by commas"
        )
    return values


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("expected a count >= 0")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true",
                        help="tiny scale, under 2 minutes (smoke test of the whole benchmark)")
    parser.add_argument("--concurrency", type=_ints, help="concurrent sessions, e.g. 10,100")
    parser.add_argument("--tps", type=float, help="tokens per second of each answer")
    parser.add_argument("--ttft-ms", type=float, help="the simulator's time to first token")
    parser.add_argument("--tokens", type=int, help="tokens per answer")
    parser.add_argument("--requests", type=int, help="requests per session, one after another")
    parser.add_argument("--ramp-s", type=float, help="sessions start spread over this long")
    parser.add_argument("--idle", type=_ints, help="idle SSE connections, e.g. 1000,5000,10000")
    parser.add_argument("--idle-sessions", type=int, help="sessions the idle connections follow")
    parser.add_argument("--ping-s", type=float, help="SSE heartbeat interval (sse_ping_s)")
    parser.add_argument("--idle-hold-s", type=float, help="how long idle connections are held")
    parser.add_argument("--clients", type=int, help="client processes for streaming sessions")
    parser.add_argument("--idle-clients", type=int, help="client processes for idle connections")
    parser.add_argument("--request-timeout-s", type=float,
                        help="how long a client waits for an answer's terminal event")
    parser.add_argument("--ingress", choices=["http", "kafka"],
                        help="how requests enter: POST /v1/chat (default) or a Kafka publish")
    parser.add_argument("--layouts", type=_layouts, metavar="L1,L2",
                        help="session layouts the pipeline runs in, each on its own worker + "
                        "edge (default topic,shared); cancels and idle parts use the first")
    parser.add_argument("--scale-out", choices=SCALE_OUT,
                        help="2 workers + 2 edges (shared layout) at every concurrency (all, "
                        "default), the largest only, or off")
    parser.add_argument("--coalesce", choices=["chunk", "adaptive"],
                        help="the worker's coalescing (default chunk: one event per token)")
    parser.add_argument("--only", choices=["streaming", "idle", "cancel"],
                        help="run one part only")
    parser.add_argument("--cancel-streams", type=_count, metavar="N",
                        help="concurrent streams cancelled mid-answer (full 25, quick 3; 0: skip)")
    parser.add_argument("--profile-at", type=int, metavar="N",
                        help="record py-spy profiles of worker and edge at concurrency N")
    parser.add_argument("--child-log-level", help="log level of sim/worker/edge/relay")
    parser.add_argument("--keep-topics", action="store_true", help="do not delete bench topics")
    parser.add_argument("--out", type=Path, help="output directory (default bench-results/)")


def from_args(args: argparse.Namespace) -> BenchConfig:
    base = QUICK if args.quick else FULL
    overrides = {
        "concurrency": args.concurrency, "tps": args.tps, "ttft_ms": args.ttft_ms,
        "tokens": args.tokens, "requests_per_session": args.requests, "ramp_s": args.ramp_s,
        "idle": args.idle, "idle_sessions": args.idle_sessions, "ping_s": args.ping_s,
        "idle_hold_s": args.idle_hold_s, "stream_clients": args.clients,
        "idle_clients": args.idle_clients, "ingress": args.ingress, "out": args.out,
        "request_timeout_s": args.request_timeout_s,
        "profile_at": args.profile_at, "log_level": args.child_log_level,
        "cancel_streams": args.cancel_streams, "layouts": args.layouts,
        "scale_out": args.scale_out, "coalesce": args.coalesce,
    }
    config = replace(base, **{k: v for k, v in overrides.items() if v is not None})
    if args.only == "streaming":
        config = replace(config, idle_enabled=False, cancel_enabled=False)
    elif args.only == "idle":
        config = replace(config, streaming=False, cancel_enabled=False)
    elif args.only == "cancel":
        config = replace(config, streaming=False, idle_enabled=False)
    if args.keep_topics:
        config = replace(config, keep_topics=True)
    return config
