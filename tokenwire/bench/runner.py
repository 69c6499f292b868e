"""One benchmark run, start to end: stack up, warm-up, scenarios, cancels, idle capacity,
clean-up.

The order: the relay and the primary layout's pipeline, interleaved per concurrency (as before
layouts existed); the cancels and the idle stack on that same deployment; then each other
layout on a fresh worker + edge of its own, and the shared layout's 2 workers + 2 edges, each at
the same concurrencies and compared with the relay figures measured first; last, idle
connections on a fresh edge of the primary layout.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from tokenwire.bench.clients import raise_nofile_limit
from tokenwire.bench.config import BenchConfig
from tokenwire.bench.idle import measure_idle_stack
from tokenwire.bench.report import build
from tokenwire.bench.scenarios import run_cancel, run_idle, run_streaming
from tokenwire.bench.stack import SCALE_OUT, BenchStack, layout_deployment
from tokenwire.bench.stats import added_figures
from tokenwire.settings import Settings

log = logging.getLogger(__name__)

WARMUP_TRIES = 3
WARMUP_TIMEOUT_S = 90.0
WARMUP_STREAMS = 2
# A short load before anything is timed: the broker's JIT compiles its produce/fetch paths (a cold
# broker spent ~2x the CPU per token at first) and every process's pools and caches fill.
WARM_LOAD_STREAMS = 20
WARM_LOAD_TOKENS = 60
# The first cancels of a run pay once for what later ones do not: the edge producer's metadata
# of the control topic, the worker's first control fetch, cold code paths.
WARM_CANCEL_STREAMS = 2


async def _warm_up(stack: BenchStack, modes: tuple[str, ...] = ("relay", "pipeline")) -> None:
    """Each path answers end to end (every worker owns its partitions) before anything is timed.

    With several workers or edges, enough streams that each edge and, most likely, each worker
    serves some (sessions land on partitions by their id's hash)."""
    streams = WARMUP_STREAMS * max(stack.deployment.workers, stack.deployment.edges) ** 2
    for mode in modes:
        for attempt in range(1, WARMUP_TRIES + 1):
            figures = await run_streaming(
                stack, mode, streams, label=f"warmup{attempt}{_where(stack, mode)}", tokens=5,
                requests=2, timeout_s=WARMUP_TIMEOUT_S,
            )
            if figures["clean"]:
                break
            log.warning("warm-up not clean mode=%s deployment=%s attempt=%d errors=%s", mode,
                        stack.deployment.name, attempt, figures["error_samples"])
        else:
            raise RuntimeError(f"{mode} warm-up failed on {stack.deployment.name}: "
                               f"{figures['error_samples']}")
    if not stack.config.quick:
        for mode in modes:
            await run_streaming(stack, mode, WARM_LOAD_STREAMS,
                                label=f"warmload{_where(stack, mode)}", tokens=WARM_LOAD_TOKENS,
                                requests=3, timeout_s=WARMUP_TIMEOUT_S)


def _where(stack: BenchStack, mode: str) -> str:
    """A pipeline label names its deployment (raw files and user ids stay apart)."""
    return "" if mode == "relay" else f"-{stack.deployment.name}"


async def _warm_cancel(stack: BenchStack) -> None:
    warm = await run_cancel(stack, WARM_CANCEL_STREAMS, label="warmcancel")
    if not warm["clean"]:
        log.warning("cancel warm-up not clean errors=%s", warm["error_samples"])


async def _pipeline(stack: BenchStack, n: int) -> dict[str, Any]:
    return await run_streaming(stack, "pipeline", n, label=f"c{n}-{stack.deployment.name}",
                               profile=stack.config.profile_at == n)


async def _streaming(stack: BenchStack) -> list[dict[str, Any]]:
    """The relay and the primary layout, one concurrency after the other."""
    config, layout = stack.config, stack.layout
    results = []
    for n in config.concurrency:
        relay = await run_streaming(stack, "relay", n, label=f"c{n}",
                                    profile=config.profile_at == n)
        pipeline = await _pipeline(stack, n)
        added = added_figures(pipeline, relay)
        results.append({
            "concurrency": n,
            "tps": config.tps,
            "tokens_per_request": config.tokens,
            "requests_per_session": config.requests_per_session,
            "relay": relay,
            # "pipeline"/"added": the primary layout's, as reports before layouts read them.
            "layout": layout,
            "pipeline": pipeline,
            "added": added,
            "layouts": {layout: pipeline},
            "added_by_layout": {layout: added},
        })
    return results


async def _other_layouts(stack: BenchStack, streaming: list[dict[str, Any]]) -> None:
    """Every further layout on its own fresh worker + edge, added to the same rows."""
    for layout in stack.config.layouts[1:]:
        await stack.deploy(layout_deployment(layout))
        await _warm_up(stack, ("pipeline",))
        for row in streaming:
            pipeline = await _pipeline(stack, row["concurrency"])
            row["layouts"][layout] = pipeline
            row["added_by_layout"][layout] = added_figures(pipeline, row["relay"])


async def _scale_out(stack: BenchStack, streaming: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The shared layout on 2 workers (one group) + 2 edges, at the 1+1 runs' offered load."""
    await stack.deploy(SCALE_OUT)
    await _warm_up(stack, ("pipeline",))
    relays = {row["concurrency"]: row["relay"] for row in streaming}
    results = []
    for n in stack.config.scale_concurrency:
        pipeline = await _pipeline(stack, n)
        results.append({
            "concurrency": n,
            "layout": SCALE_OUT.layout,
            "workers": SCALE_OUT.workers,
            "edges": SCALE_OUT.edges,
            # Each worker's chat.requests partitions when timing began.
            "assignment": stack.assignment,
            "pipeline": pipeline,
            "added": added_figures(pipeline, relays[n]),
        })
    return results


async def run_bench(base: Settings, config: BenchConfig) -> dict[str, Any]:
    raise_nofile_limit()
    started = time.time()
    config.out.mkdir(parents=True, exist_ok=True)
    stack = BenchStack(base, config, config.out)
    run_dir = config.out / f"logs-{stack.tag}"
    run_dir.mkdir(parents=True, exist_ok=True)
    stack.run_dir = run_dir
    log.info("bench starting tag=%s logs=%s layouts=%s", stack.tag, run_dir, config.layouts)
    primary = layout_deployment(config.primary_layout)
    streaming: list[dict[str, Any]] = []
    scale_out: list[dict[str, Any]] = []
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
        if config.streaming:
            await _other_layouts(stack, streaming)
        if config.scale_concurrency:
            scale_out = await _scale_out(stack, streaming)
        # Idle capacity is measured on a fresh edge with nothing else running.
        stack.stop_all()
        stack.select(primary)
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
                 finished=time.time(), idle_stack=idle_stack, scale_out=scale_out)
