"""``python -m tokenwire.bench.scale``: many new sessions through the real pipeline, and what each
one costs the broker (issue #14 §1, "show the scale").

The pipeline runs as child processes (simulator, one worker, one edge) on topics named for the run
(``scale-<hex>.*``, session topics included), in the layout asked for (``--layout``). After a
warm-up, ``--sessions`` new sessions run ``--concurrency`` at a time: each posts one short request
to ``POST /v1/chat`` as a new session, reads the answer over SSE (``until=done``) and compares it
token for token with the simulator's expected answer. Every ``--sample-s``, and at every
``--window`` sessions, the local broker's open files (``/proc/<pid>/fd``), memory maps
(``/proc/<pid>/maps``; the kernel caps them at ``vm.max_map_count``), RSS and CPU are read.

In the topic layout every session is a topic, so the broker's files and maps grow with sessions;
in the shared layout they should stay flat. The per-10k-session costs are the least-squares slope
of the samples, marked ``extrapolated`` when the run had fewer than 10k sessions. The broker is
shared with whatever else uses it, so other clients' topics move its figures too: the topic counts
at start and end are reported to judge that.

The summary is printed as JSON (without the raw samples) and written, samples included, to
``<out>/scale-<layout>-<sessions>-<tag>.json``. The run's topics are deleted at the end unless
``--keep-topics``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import itertools
import json
import logging
import os
import secrets
import sys
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from api.auth.development import mint_dev_jwt
from tokenwire.bench.clients import raise_nofile_limit
from tokenwire.bench.processes import (
    Child,
    child_env,
    cpu_seconds,
    free_port,
    rss_bytes,
    spawn,
    wait_http_ok,
)
from tokenwire.bench.records import RequestRecord
from tokenwire.bench.stack import BENCH_QUOTA
from tokenwire.bench.stats import distribution
from tokenwire.bench.wire import (
    HttpError,
    SseConnection,
    SseEvent,
    path_with,
    post_json,
    request_bytes,
)
from tokenwire.event_loop import use_fast_event_loop
from tokenwire.kafka_clients import new_admin
from tokenwire.settings import Settings, get_settings
from tokenwire.simulator import expected_tokens
from tokenwire.topics import ensure_core_topics, topic_names

log = logging.getLogger(__name__)

READY_TIMEOUT_S = 120.0
WARMUP_SESSIONS = 3
WARMUP_TRIES = 3
DELETE_BATCH = 200
MAX_RECONNECTS = 3
FAILURE_EXAMPLES = 20
PER = 10_000  # costs are given per this many sessions
MIB = 1024 * 1024


@dataclass(frozen=True)
class ScaleConfig:
    layout: str
    sessions: int
    concurrency: int = 100
    tokens: int = 4
    tps: float = 500.0
    ttft_ms: float = 5.0
    partitions: int | None = None
    users: int = 100
    window: int = PER
    sample_s: float = 5.0
    request_timeout_s: float = 60.0
    out: Path = Path("bench-results")
    keep_topics: bool = False
    child_log_level: str = "WARNING"


def scale_settings(base: Settings, tag: str, config: ScaleConfig) -> Settings:
    """Settings of one run: its own topics, ports and secret, the layout asked for, development
    mode (the callers' development JWTs) and quotas no run reaches."""
    sim_port = free_port()
    return base.model_copy(update={
        **topic_names(tag),
        "requests_partitions": config.partitions or base.requests_partitions,
        "session_layout": config.layout,
        "worker_id": f"{tag}-worker",
        "worker_web_port": free_port(),
        "worker_concurrency": max(64, 2 * config.concurrency),
        "edge_port": free_port(),
        "sim_port": sim_port,
        "sim_ttft_ms": config.ttft_ms,
        "sim_tokens_per_s": config.tps,
        "openai_base_url": f"http://127.0.0.1:{sim_port}/v1",
        "openai_api_key": SecretStr("sim-key"),
        # One token event per simulator chunk: the answer is compared chunk by chunk.
        "coalesce_mode": "chunk",
        "mode": "development",
        "auth": base.auth.model_copy(update={
            "stream_token_keys": {"scale": SecretStr(secrets.token_urlsafe(32))},
            "stream_token_kid": "scale",
            "tiers": {"default": BENCH_QUOTA},
        }),
        "sse_max_connections": max(base.sse_max_connections, 4 * config.concurrency),
        "sse_max_connections_per_user": max(base.sse_max_connections_per_user,
                                            config.concurrency),
        # Per-request INFO lines would be most of the run's disk writes.
        "log_level": config.child_log_level,
    })


# --- the processes under test ---------------------------------------------------------------


class ScaleStack:
    def __init__(self, base: Settings, config: ScaleConfig, run_dir: Path, tag: str) -> None:
        self.base, self.tag, self.run_dir = base, tag, run_dir
        self.settings = scale_settings(base, tag, config)
        self.children: dict[str, Child] = {}

    @property
    def kafka_pid(self) -> int | None:
        """The local broker's pid when the run uses ``tokenwire services``' Kafka."""
        from tokenwire.services import kafka

        if self.settings.kafka_bootstrap != kafka.address(self.base):
            return None
        return kafka.running_pid(self.base)

    def _spawn(self, name: str, argv: list[str]) -> Child:
        child = spawn(name, ["-m", "tokenwire.cli", *argv], child_env(self.settings),
                      self.run_dir)
        self.children[name] = child
        return child

    async def start(self) -> None:
        await ensure_core_topics(self.settings)
        s = self.settings
        sim = self._spawn("sim", ["sim", "--host", "127.0.0.1", "--port", str(s.sim_port)])
        worker = self._spawn("worker", ["worker"])
        edge = self._spawn("edge", ["edge", "--host", "127.0.0.1", "--port", str(s.edge_port)])
        await wait_http_ok(sim, f"http://127.0.0.1:{s.sim_port}/healthz", READY_TIMEOUT_S)
        await wait_http_ok(edge, f"http://127.0.0.1:{s.edge_port}/readyz", READY_TIMEOUT_S)
        await wait_http_ok(worker, f"http://127.0.0.1:{s.worker_web_port}/readyz",
                           READY_TIMEOUT_S)

    def stop_all(self) -> None:
        for name in reversed(list(self.children)):
            self.children.pop(name).stop()

    def cpu(self) -> dict[str, float]:
        return {name: child.cpu_seconds() for name, child in self.children.items()}

    async def topics(self) -> tuple[int, int]:
        """(topics on the cluster, of which this run's)."""
        admin = new_admin(self.settings.kafka_connection, client_id=f"{self.tag}-admin")
        await admin.start()
        try:
            names = await admin.list_topics()
        finally:
            await admin.close()
        return len(names), sum(1 for name in names if name.startswith(self.tag))

    async def delete_topics(self) -> int:
        """Delete every topic of the run (core, shared and session ones: all carry the tag)."""
        admin = new_admin(self.settings.kafka_connection, client_id=f"{self.tag}-admin")
        await admin.start()
        try:
            ours = sorted(t for t in await admin.list_topics() if t.startswith(self.tag))
            for start in range(0, len(ours), DELETE_BATCH):
                await admin.delete_topics(ours[start : start + DELETE_BATCH], timeout_ms=60_000)
        finally:
            await admin.close()
        log.info("deleted scale topics count=%d tag=%s", len(ours), self.tag)
        return len(ours)


# --- one new session ------------------------------------------------------------------------


@dataclass(frozen=True)
class SessionJob:
    host: str
    port: int
    tag: str
    tokens: int
    tps: float
    ttft_ms: float
    users: int
    timeout_s: float
    credentials: dict[str, str] = field(default_factory=dict)

    def user(self, index: int) -> tuple[str, str]:
        user = f"{self.tag}-u{index % self.users}"
        credential = self.credentials.get(user)
        if credential is None:
            credential = self.credentials[user] = mint_dev_jwt(user, ttl_s=24 * 3600)
        return user, credential

    def messages(self, label: str) -> list[dict[str, str]]:
        directive = f"[[sim: tokens={self.tokens} tps={self.tps:g} ttft_ms={self.ttft_ms:g}]]"
        return [{"role": "user", "content": f"scale {self.tag} {label} {directive}"}]


@dataclass
class SessionResult:
    ok: bool
    error: str | None = None
    ttft_ms: float | None = None
    token_latencies_ms: list[float] = field(default_factory=list)
    reconnects: int = 0


class _Reader:
    """Feeds one request's record from its SSE stream, keeping the last id for a reconnect."""

    def __init__(self, record: RequestRecord) -> None:
        self.record = record
        self.last_id: str | None = None

    def on_event(self, event: SseEvent) -> None:
        if event.id is not None:
            self.last_id = event.id
        self.record.add(event.event, json.loads(event.data), event.at)

    def on_comment(self, at: float) -> None:
        pass


async def run_session(job: SessionJob, label: str, index: int) -> SessionResult:
    """A new session, one request: POST, then its answer over SSE until done, checked exact."""
    user, credential = job.user(index)
    messages = job.messages(label)
    record = RequestRecord(expected=expected_tokens(messages), t0=time.time())
    answer: dict[str, Any] = {}
    try:
        status, answer = await asyncio.wait_for(post_json(
            job.host, job.port, "/v1/chat", {"user_id": user, "messages": messages},
            headers={"authorization": f"Bearer {credential}"},
        ), job.timeout_s)
        if status != 202:
            return SessionResult(False, f"post: HTTP {status} {answer.get('error', answer)}")
        record.submitted_at = time.time()
        reconnects = await _read_answer(job, record, answer)
    except (OSError, HttpError, TimeoutError, ValueError, KeyError) as exc:
        seen = f" with {len(record.arrivals)} tokens seen" if "request_id" in answer else ""
        return SessionResult(False, f"{type(exc).__name__}: {exc}"[:200] + seen + _where(answer))
    summary = record.summary(index, 0, 0.0)
    return SessionResult(
        ok=bool(summary["ok"]),
        error=None if summary["ok"] else _mismatch(summary) + _where(answer),
        ttft_ms=summary["ttft_added_ms"], token_latencies_ms=record.latencies_ms,
        reconnects=reconnects,
    )


def _where(answer: dict[str, Any]) -> str:
    if "request_id" not in answer:
        return ""
    return f" (session={answer.get('session_id')} request={answer['request_id']})"


async def _read_answer(job: SessionJob, record: RequestRecord, answer: dict[str, Any]) -> int:
    """Read the request's events until its terminal one; a dropped stream resumes from the last
    id, as EventSource would. Returns the reconnects."""
    path = path_with(f"/v1/sessions/{answer['session_id']}/events", {
        "token": answer["stream_token"], "until": "done", "request_id": answer["request_id"],
    })
    reader = _Reader(record)
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(job.timeout_s):
        for attempt in range(MAX_RECONNECTS + 1):
            headers = {"accept": "text/event-stream"}
            if reader.last_id is not None:
                headers["last-event-id"] = reader.last_id
            request = request_bytes("GET", job.host, job.port, path, headers=headers)
            _, conn = await loop.create_connection(
                functools.partial(SseConnection, reader, request), job.host, job.port
            )
            try:
                status = await conn.opened
                if status != 200:
                    raise HttpError(status, bytes(conn.body_error))
                # until=done: the edge ends the stream after the request's done or error event.
                await conn.closed
            finally:
                conn.close()
            if record.finished.is_set():
                return attempt
    return MAX_RECONNECTS


def _mismatch(summary: dict[str, Any]) -> str:
    if summary["error"]:
        return str(summary["error"])[:200]
    return ("not exact: " + ", ".join(
        f"{k}={summary[k]}" for k in ("expected", "delivered", "lost", "duplicated", "reordered",
                                      "mismatched", "retries")
    ))


# --- figures --------------------------------------------------------------------------------


def read_broker(pid: int) -> dict[str, float]:
    """Open files, memory maps, RSS and CPU of ``pid`` (blocking: run it in a thread)."""
    maps = Path(f"/proc/{pid}/maps").read_bytes().count(b"\n")
    return {
        "open_files": len(os.listdir(f"/proc/{pid}/fd")),
        "mmaps": maps,
        "rss_mib": round(rss_bytes(pid) / MIB, 1),
        "cpu_s": round(cpu_seconds(pid), 2),
    }


@dataclass
class Tally:
    """What the sessions did, aggregated as they finish (nothing kept per session but floats)."""

    window: int
    started: float = field(default_factory=time.monotonic)
    done: int = 0
    ok: int = 0
    reconnects: int = 0
    ttft_ms: list[float] = field(default_factory=list)
    token_ms: list[float] = field(default_factory=list)
    failure_kinds: Counter[str] = field(default_factory=Counter)
    failure_examples: list[str] = field(default_factory=list)
    window_ttft: list[float] = field(default_factory=list)
    window_ok: int = 0
    window_started: float = field(default_factory=time.monotonic)
    windows: list[dict[str, Any]] = field(default_factory=list)

    def add(self, index: int, result: SessionResult) -> dict[str, Any] | None:
        """Count one session; the window it closes, if it closes one."""
        self.done += 1
        self.reconnects += result.reconnects
        if result.ok:
            self.ok += 1
            self.window_ok += 1
        else:
            self.failure_kinds[(result.error or "?").split(":")[0][:60]] += 1
            if len(self.failure_examples) < FAILURE_EXAMPLES:
                self.failure_examples.append(f"s{index}: {result.error}")
        if result.ttft_ms is not None:
            self.ttft_ms.append(result.ttft_ms)
            self.window_ttft.append(result.ttft_ms)
        self.token_ms.extend(result.token_latencies_ms)
        return self.close_window() if self.done % self.window == 0 else None

    def close_window(self, partial: bool = False) -> dict[str, Any] | None:
        """The window's figures; its ``broker`` sample is filled in by the caller."""
        size = self.done - (self.windows[-1]["sessions"] if self.windows else 0)
        if size == 0:
            return None
        now = time.monotonic()
        ttft = distribution(self.window_ttft)
        row: dict[str, Any] = {
            "sessions": self.done, "size": size, "partial": partial, "ok": self.window_ok,
            "elapsed_s": round(now - self.started, 2),
            "new_sessions_per_s": round(size / max(now - self.window_started, 1e-9), 2),
            "ttft_ms_p50": ttft["p50"], "ttft_ms_p99": ttft["p99"],
            "broker": None,
        }
        self.windows.append(row)
        self.window_ttft, self.window_ok, self.window_started = [], 0, now
        log.info("scale window sessions=%d ok=%d failures=%d new_sessions_per_s=%s "
                 "ttft_p50_ms=%s", self.done, self.ok, self.done - self.ok,
                 row["new_sessions_per_s"], row["ttft_ms_p50"])
        return row


def slope_per(samples: list[dict[str, Any]], key: str, per: int = PER) -> float | None:
    """Least-squares growth of ``key`` per ``per`` sessions over the samples."""
    points = [(s["sessions"], s["broker"][key]) for s in samples if s.get("broker")]
    if len(points) < 2:
        return None
    n = len(points)
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    var = sum((x - mean_x) ** 2 for x, _ in points)
    if var == 0:
        return None
    cov = sum((x - mean_x) * (y - mean_y) for x, y in points)
    return round(cov / var * per, 2)


class Sampler:
    """Reads the broker (and the children's RSS) every ``interval_s``; owns its task."""

    def __init__(self, stack: ScaleStack, pid: int | None, tally: Tally, interval_s: float):
        self.stack, self.pid, self.tally, self.interval_s = stack, pid, tally, interval_s
        self.samples: list[dict[str, Any]] = []
        self._task: asyncio.Task[None] | None = None

    async def sample(self) -> dict[str, Any]:
        broker = None if self.pid is None else await asyncio.to_thread(read_broker, self.pid)
        rss = {name: round(child.rss_bytes() / MIB, 1)
               for name, child in self.stack.children.items() if child.alive()}
        row = {"t_s": round(time.monotonic() - self.tally.started, 2),
               "sessions": self.tally.done, "broker": broker, "rss_mib": rss}
        self.samples.append(row)
        return row

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            await self.sample()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


# --- the run --------------------------------------------------------------------------------


async def _warm_up(job: SessionJob) -> None:
    """The pipeline answers end to end (the worker owns its partitions) before anything counts."""
    for attempt in range(1, WARMUP_TRIES + 1):
        results = await asyncio.gather(*(
            run_session(job, f"warm{attempt}-{i}", i) for i in range(WARMUP_SESSIONS)
        ))
        if all(r.ok for r in results):
            return
        log.warning("warm-up not clean attempt=%d errors=%s", attempt,
                    [r.error for r in results if not r.ok])
    raise RuntimeError(f"warm-up failed: {[r.error for r in results if not r.ok]}")


async def _drive(job: SessionJob, sessions: int, concurrency: int, tally: Tally,
                 sampler: Sampler) -> None:
    indexes = itertools.count()

    async def lane() -> None:
        while (index := next(indexes)) < sessions:
            result = await run_session(job, f"s{index}", index)
            window = tally.add(index, result)
            if window is not None:
                # Sessions finishing meanwhile belong to the next window already.
                window["broker"] = (await sampler.sample())["broker"]

    async with asyncio.TaskGroup() as group:
        for _ in range(min(concurrency, sessions)):
            group.create_task(lane())


def _broker_figures(samples: list[dict[str, Any]], done: int, pid: int) -> dict[str, Any]:
    first, last = samples[0]["broker"], samples[-1]["broker"]
    return {
        "pid": pid, "start": first, "end": last,
        "peak_open_files": max(s["broker"]["open_files"] for s in samples),
        "peak_mmaps": max(s["broker"]["mmaps"] for s in samples),
        f"per_{PER}_sessions": {key: slope_per(samples, key)
                                for key in ("open_files", "mmaps", "rss_mib")},
        # A slope measured over fewer sessions than it is given per.
        f"per_{PER}_extrapolated": done < PER,
        "cpu_ms_per_session": round((last["cpu_s"] - first["cpu_s"]) * 1000 / max(done, 1), 3),
    }


async def _measure(config: ScaleConfig, stack: ScaleStack, job: SessionJob) -> dict[str, Any]:
    """The timed part: ``config.sessions`` new sessions, sampled; its summary."""
    tally = Tally(config.window)
    pid = stack.kafka_pid
    sampler = Sampler(stack, pid, tally, config.sample_s)
    topics_start = await stack.topics()
    first = await sampler.sample()
    cpu0, client0, started = stack.cpu(), time.process_time(), time.monotonic()
    tally.started = tally.window_started = started
    sampler.start()
    try:
        await _drive(job, config.sessions, config.concurrency, tally, sampler)
    finally:
        await sampler.stop()
    wall, client_cpu = time.monotonic() - started, time.process_time() - client0
    cpu1 = stack.cpu()
    last = await sampler.sample()
    if (window := tally.close_window(partial=True)) is not None:
        window["broker"] = last["broker"]
    topics_end = await stack.topics()
    per_session = {name: round((cpu1[name] - cpu0.get(name, 0.0)) * 1000 / max(tally.done, 1), 3)
                   for name in cpu1}
    per_session["clients"] = round(client_cpu * 1000 / max(tally.done, 1), 3)
    return {
        "schema": "tokenwire-bench-scale/1",
        "layout": config.layout, "tag": stack.tag,
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(config).items()}
        | {"partitions": stack.settings.requests_partitions},
        "sessions_requested": config.sessions, "sessions_done": tally.done,
        "sessions_ok": tally.ok, "failures": tally.done - tally.ok,
        "all_exact": tally.ok == tally.done == config.sessions,
        "failure_kinds": dict(tally.failure_kinds), "failure_examples": tally.failure_examples,
        "reconnects": tally.reconnects,
        "wall_s": round(wall, 2),
        "new_sessions_per_s": round(tally.done / max(wall, 1e-9), 2),
        # POST sent -> first token event parsed; includes the simulator's own ttft_ms.
        "ttft_ms": distribution(tally.ttft_ms),
        # The worker read the chunk from the simulator -> the client parsed its event.
        "token_latency_ms": distribution(tally.token_ms),
        "windows": tally.windows,
        "broker": None if pid is None else _broker_figures(sampler.samples, tally.done, pid),
        "rss_mib": {"start": first["rss_mib"], "end": last["rss_mib"]},
        "cpu_ms_per_session": per_session,
        "topics": {"cluster_start": topics_start[0], "cluster_end": topics_end[0],
                   "run_start": topics_start[1], "run_end": topics_end[1]},
        "samples": sampler.samples,
    }


async def run_scale(base: Settings, config: ScaleConfig) -> dict[str, Any]:
    tag = f"scale-{uuid.uuid4().hex[:8]}"
    run_dir = config.out / f"logs-{tag}"
    run_dir.mkdir(parents=True, exist_ok=True)
    stack = ScaleStack(base, config, run_dir, tag)
    job = SessionJob("127.0.0.1", stack.settings.edge_port, tag, config.tokens, config.tps,
                     config.ttft_ms, config.users, config.request_timeout_s)
    log.info("scale run starting tag=%s layout=%s sessions=%d logs=%s", tag, config.layout,
             config.sessions, run_dir)
    deleted: int | None = None
    try:
        await stack.start()
        await _warm_up(job)
        summary = await _measure(config, stack, job)
    finally:
        stack.stop_all()
        if not config.keep_topics:
            try:
                deleted = await stack.delete_topics()
            except Exception as exc:  # clean-up must not hide the run's own outcome
                log.warning("could not delete scale topics tag=%s error=%r", tag, exc)
    summary["topics"]["deleted"] = deleted
    summary["logs"] = str(run_dir)
    return summary


# --- command line ---------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> ScaleConfig:
    parser = argparse.ArgumentParser(prog="python -m tokenwire.bench.scale",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--layout", choices=["topic", "shared"], required=True)
    parser.add_argument("--sessions", type=int, required=True, help="new sessions to run")
    parser.add_argument("--concurrency", type=int, default=100, help="sessions in flight")
    parser.add_argument("--tokens", type=int, default=4, help="tokens per answer")
    parser.add_argument("--tps", type=float, default=500.0, help="tokens per second of answers")
    parser.add_argument("--ttft-ms", type=float, default=5.0, help="the simulator's ttft")
    parser.add_argument("--partitions", type=int, help="partitions of requests (and sessions)")
    parser.add_argument("--users", type=int, default=100, help="callers the sessions belong to")
    parser.add_argument("--window", type=int, default=PER, help="figures every N sessions")
    parser.add_argument("--sample-s", type=float, default=5.0, help="broker sampling interval")
    parser.add_argument("--request-timeout-s", type=float, default=60.0)
    parser.add_argument("--out", type=Path, default=Path("bench-results"))
    parser.add_argument("--keep-topics", action="store_true", help="do not delete the topics")
    parser.add_argument("--child-log-level", default="WARNING")
    args = parser.parse_args(argv)
    if min(args.sessions, args.concurrency, args.users, args.window, args.tokens) < 1:
        parser.error("--sessions, --concurrency, --users, --window and --tokens must be >= 1")
    return ScaleConfig(
        layout=args.layout, sessions=args.sessions, concurrency=args.concurrency,
        tokens=args.tokens, tps=args.tps, ttft_ms=args.ttft_ms, partitions=args.partitions,
        users=args.users, window=args.window, sample_s=args.sample_s,
        request_timeout_s=args.request_timeout_s, out=args.out, keep_topics=args.keep_topics,
        child_log_level=args.child_log_level,
    )


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    config = parse_args(argv)
    raise_nofile_limit()
    use_fast_event_loop()
    summary = asyncio.run(run_scale(get_settings(), config))
    path = config.out / f"scale-{config.layout}-{config.sessions}-{summary['tag']}.json"
    path.write_text(json.dumps(summary, indent=2))
    printed = {k: v for k, v in summary.items() if k != "samples"} | {"file": str(path)}
    print(json.dumps(printed, indent=2))
    return 0 if summary["all_exact"] else 1


if __name__ == "__main__":
    sys.exit(main())
