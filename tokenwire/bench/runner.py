"""One benchmark run, start to end: stack up, warm-up, scenarios, cancels, idle capacity,
clean-up."""

from __future__ import annotations

import logging
import time
from typing import Any

from tokenwire.bench.clients import raise_nofile_limit
from tokenwire.bench.config import BenchConfig
from tokenwire.bench.idle import measure_idle_stack
from tokenwire.bench.report import build
from tokenwire.bench.scenarios import run_cancel, run_idle, run_streaming
from tokenwire.bench.stack import BenchStack
from tokenwire.bench.stats import added
from tokenwire.settings import Settings

log = logging.getLogger(__name__)

WARMUP_TRIES = 3
WARMUP_TIMEOUT_S = 90.0
# A short load before anything is timed: the broker's JIT compiles its produce/fetch paths (a cold
# broker spent ~2x the CPU per token at first) and every process's pools and caches fill.
WARM_LOAD_STREAMS = 20
WARM_LOAD_TOKENS = 60
# The first cancels of a run pay once for what later ones do not: the edge producer's metadata
# of the control topic, the worker's first control fetch, cold code paths.
WARM_CANCEL_STREAMS = 2


async def _warm_up(stack: BenchStack) -> None:
    """Both paths answer end to end (the worker owns its partitions) before anything is timed."""
    for mode in ("relay", "pipeline"):
        for attempt in range(1, WARMUP_TRIES + 1):
            figures = await run_streaming(stack, mode, 2, label=f"warmup{attempt}", tokens=5,
                                          requests=2, timeout_s=WARMUP_TIMEOUT_S)
            if figures["clean"]:
                break
            log.warning("warm-up not clean mode=%s attempt=%d errors=%s", mode, attempt,
                        figures["error_samples"])
        else:
            raise RuntimeError(f"{mode} warm-up failed: {figures['error_samples']}")
    if not stack.config.quick:
        for mode in ("relay", "pipeline"):
            await run_streaming(stack, mode, WARM_LOAD_STREAMS, label="warmload",
                                tokens=WARM_LOAD_TOKENS, requests=3, timeout_s=WARMUP_TIMEOUT_S)


async def _warm_cancel(stack: BenchStack) -> None:
    warm = await run_cancel(stack, WARM_CANCEL_STREAMS, label="warmcancel")
    if not warm["clean"]:
        log.warning("cancel warm-up not clean errors=%s", warm["error_samples"])


async def _streaming(stack: BenchStack) -> list[dict[str, Any]]:
    config = stack.config
    results = []
    for n in config.concurrency:
        relay = await run_streaming(stack, "relay", n, label=f"c{n}",
                                    profile=config.profile_at == n)
        pipeline = await run_streaming(stack, "pipeline", n, label=f"c{n}",
                                       profile=config.profile_at == n)
        results.append({
            "concurrency": n,
            "tps": config.tps,
            "tokens_per_request": config.tokens,
            "requests_per_session": config.requests_per_session,
            "relay": relay,
            "pipeline": pipeline,
            "added": {
                "latency_ms": added(pipeline, relay, "latency_ms"),
                "ttft_ms": added(pipeline, relay, "ttft_added_ms"),
                "broker_cpu_s_per_1k_tokens_net": _broker_net(pipeline, relay),
            },
        })
    return results


def _broker_net(pipeline: dict[str, Any], relay: dict[str, Any]) -> float | None:
    """The shared broker's CPU per 1k pipeline tokens, less its rate while only the relay ran."""
    busy, idle = pipeline["cpu_s"].get("kafka"), relay["cpu_s"].get("kafka")
    tokens = pipeline["tokens_delivered"]
    if busy is None or idle is None or not tokens:
        return None
    net = busy - idle / relay["wall_s"] * pipeline["wall_s"]
    return round(max(0.0, net) * 1000 / tokens, 4)


async def run_bench(base: Settings, config: BenchConfig) -> dict[str, Any]:
    raise_nofile_limit()
    started = time.time()
    config.out.mkdir(parents=True, exist_ok=True)
    stack = BenchStack(base, config, config.out)
    run_dir = config.out / f"logs-{stack.tag}"
    run_dir.mkdir(parents=True, exist_ok=True)
    stack.run_dir = run_dir
    log.info("bench starting tag=%s logs=%s", stack.tag, run_dir)
    streaming: list[dict[str, Any]] = []
    idle = cancel = idle_stack = None
    try:
        await stack.start(streaming=config.needs_stack)
        if config.needs_stack:
            await _warm_up(stack)
        if config.streaming:
            streaming = await _streaming(stack)
        if config.runs_cancel:
            # After the streaming scenarios: their answers are over, so the worker's load is the
            # cancel streams' own.
            await _warm_cancel(stack)
            cancel = await run_cancel(stack, config.cancel_streams)
        if config.idle_enabled:
            # The whole stack with no traffic at all, before it stops.
            idle_stack = await measure_idle_stack(stack)
        # Idle capacity is measured on a fresh edge with nothing else running.
        stack.stop_all()
        if config.idle_enabled:
            idle = await run_idle(stack)
    finally:
        stack.stop_all()
        if not config.keep_topics:
            try:
                await stack.delete_topics()
            except Exception as exc:  # clean-up must not hide the run's own outcome
                log.warning("could not delete bench topics tag=%s error=%r", stack.tag, exc)
    return build(config, streaming, idle, cancel, tag=stack.tag, started=started,
                 finished=time.time(), idle_stack=idle_stack)
