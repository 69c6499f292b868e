"""The kinds of scenario: N streaming sessions (pipeline or relay), N cancelled streams, and
idle connections.

Streaming: sessions are dealt round-robin to client processes (and, through the pipeline, to the
deployment's edges in turn); all processes prepare, the CPU counters of every server process are
read, all start together, and the counters are read again when the last one reports. Cancel:
the same dealing; then the simulator's record of closed streams is matched to the clients'
cancel POSTs (``cancel_figures``). Idle: a fresh edge process, its RSS before any SSE connection,
then after each level of open connections; heartbeats are counted over the hold at the last
level.
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import httpx

from api.auth.development import mint_dev_jwt
from api.stream_tokens import issue_token
from tokenwire.bench.cancel_figures import (
    all_matched,
    cancel_figures,
    histogram_delta,
    histogram_sample,
)
from tokenwire.bench.cancels import CancelJob
from tokenwire.bench.processes import (
    ClientProcess,
    free_port,
    machine_busy_seconds,
    wait_http_ok,
)
from tokenwire.bench.sessions import StreamJob
from tokenwire.bench.stack import BenchStack
from tokenwire.bench.stats import mode_figures

log = logging.getLogger(__name__)

READY_TIMEOUT_S = 60.0
SETTLE_S = 2.0
# The simulator records a close when its disconnect watcher wakes: normally before the client
# reads ``done``, but a loaded machine may reorder them; this is how long to poll for stragglers.
CLOSE_RECORD_WAIT_S = 10.0
CLOSE_POLL_S = 0.2


def _job(stack: BenchStack, mode: str, sessions: list[dict[str, Any]], *, tokens: int,
         requests: int, timeout_s: float) -> StreamJob:
    config, s = stack.config, stack.settings
    port = stack.relay_port if mode == "relay" else stack.edge_ports[0]
    return StreamJob(
        mode=mode, ingress=config.ingress, host="127.0.0.1", port=port, tag=stack.tag,
        sessions=sessions, requests_per_session=requests, tokens=tokens, tps=config.tps,
        ttft_ms=config.ttft_ms, request_timeout_s=timeout_s,
        joined=mode == "pipeline" and config.coalesce != "chunk",
        kafka_bootstrap=s.kafka_bootstrap, requests_topic=s.requests_topic,
    )


async def _sessions(stack: BenchStack, mode: str, concurrency: int, label: str
                    ) -> list[dict[str, Any]]:
    ramp = stack.config.ramp_s
    sessions = [
        {"index": i, "delay_s": ramp * i / concurrency, "user_id": f"{stack.tag}-{label}-u{i}"}
        for i in range(concurrency)
    ]
    for session in sessions:
        # The bench stack runs in development mode: each user posts with a development JWT.
        session["credential"] = mint_dev_jwt(session["user_id"], ttl_s=24 * 3600)
        if mode == "pipeline":
            # With several edges, clients alternate between them (as a load balancer would).
            session["port"] = stack.edge_ports[session["index"] % len(stack.edge_ports)]
    if mode == "pipeline" and stack.config.ingress == "kafka":
        ids = [f"{stack.tag}-{label}-s{i}" for i in range(concurrency)]
        # As POST /v1/chat does: the topic exists before the reader attaches.
        await stack.create_session_topics(ids)
        for session, sid in zip(sessions, ids, strict=True):
            session["session_id"] = sid
            session["token"] = issue_token(stack.settings, session_id=sid,
                                           user_id=session["user_id"])
    return sessions


async def run_streaming(
    stack: BenchStack, mode: str, concurrency: int, *, label: str, tokens: int | None = None,
    requests: int | None = None, timeout_s: float | None = None, profile: bool = False,
) -> dict[str, Any]:
    config = stack.config
    tokens = tokens or config.tokens
    requests = requests or config.requests_per_session
    timeout_s = timeout_s or config.request_timeout_s
    sessions = await _sessions(stack, mode, concurrency, label)
    n_procs = max(1, min(config.stream_clients, concurrency))
    clients = [await ClientProcess.start(f"clients-{label}-{mode}-{k}", stack.run_dir)
               for k in range(n_procs)]
    profilers: list[subprocess.Popen[bytes]] = []
    try:
        await asyncio.gather(*(
            c.ask({"cmd": "stream", "job": asdict(_job(
                stack, mode, sessions[k::n_procs], tokens=tokens, requests=requests,
                timeout_s=timeout_s,
            ))}, READY_TIMEOUT_S)
            for k, c in enumerate(clients)
        ))
        budget = config.ramp_s + requests * (timeout_s + 5) + 30
        profilers += _start_profilers(stack, label, mode) if profile else []
        cpu_before, busy_before, started = stack.cpu(), machine_busy_seconds(), time.time()
        outcomes = await asyncio.gather(*(c.ask({"cmd": "go"}, budget) for c in clients))
        cpu_after, busy = stack.cpu(), machine_busy_seconds() - busy_before
        wall = time.time() - started
    finally:
        _stop_profilers(profilers)
        for client in clients:
            await client.finish()
    delta = {name: cpu_after[name] - cpu_before.get(name, 0.0) for name in cpu_after}
    raw = stack.run_dir / f"raw-{label}-{mode}.json"
    raw.write_text(json.dumps({"cpu_delta": delta, "outcomes": outcomes}))
    if mode == "pipeline":
        _note_session_topics(stack, outcomes)
    figures = mode_figures(outcomes, delta, concurrency=concurrency,
                           requests_per_session=requests, tps=config.tps)
    figures["wall_s"] = round(wall, 3)
    ours = sum(delta.values()) + figures["client_cpu_s"]
    figures["machine"] = {
        "busy_cores": round(busy / wall, 3),
        # Anything not ours (other users of the host); the broker's own load counts as ours.
        "background_cores": round(max(0.0, busy - ours) / wall, 3),
    }
    log.info(
        "scenario done mode=%s concurrency=%d clean=%s p50_ms=%s p99_ms=%s ttft_p50_ms=%s "
        "tokens_per_s=%s", mode, concurrency, figures["clean"], figures["latency_ms"]["p50"],
        figures["latency_ms"]["p99"], figures["ttft_added_ms"]["p50"], figures["tokens_per_s"],
    )
    return figures


# --- cancel ---------------------------------------------------------------------------------


async def run_cancel(stack: BenchStack, streams: int, *, label: str = "cancel"
                     ) -> dict[str, Any]:
    """``streams`` long answers at once; once all generate, each is cancelled after its own
    3..20 further tokens."""
    config, s = stack.config, stack.settings
    sessions = []
    for i in range(streams):
        user = f"{stack.tag}-{label}-u{i}"
        sessions.append({"index": i, "delay_s": config.ramp_s * i / streams, "user_id": user,
                         "credential": mint_dev_jwt(user, ttl_s=24 * 3600)})
    n_procs = max(1, min(config.stream_clients, streams))
    clients = [await ClientProcess.start(f"clients-{label}-{k}", stack.run_dir)
               for k in range(n_procs)]
    worker_metrics = f"http://127.0.0.1:{s.worker_web_port}/metrics"
    budget = config.ramp_s + 3 * config.request_timeout_s + 30
    async with httpx.AsyncClient(timeout=10.0) as http:
        try:
            await asyncio.gather(*(
                c.ask({"cmd": "cancel", "job": asdict(CancelJob(
                    host="127.0.0.1", port=s.edge_port, tag=stack.tag, label=label,
                    sessions=sessions[k::n_procs], tokens=config.cancel_tokens, tps=config.tps,
                    ttft_ms=config.ttft_ms, request_timeout_s=config.request_timeout_s,
                ))}, READY_TIMEOUT_S)
                for k, c in enumerate(clients)
            ))
            await asyncio.gather(*(c.ask({"cmd": "go"}, budget) for c in clients))
            before = await _worker_histogram(http, worker_metrics)
            cpu_before, busy_before, started = stack.cpu(), machine_busy_seconds(), time.time()
            outcomes = await asyncio.gather(*(c.ask({"cmd": "cancel"}, budget) for c in clients))
            cpu_after, busy = stack.cpu(), machine_busy_seconds() - busy_before
            wall = time.time() - started
        finally:
            for client in clients:
                await client.finish()
        rows = [row for o in outcomes for row in o["streams"]]
        closed = await _closed_streams(http, f"http://127.0.0.1:{s.sim_port}/v1/_sim/closed", rows)
        after = await _worker_histogram(http, worker_metrics)
    _note_session_topics(stack, outcomes)
    worker = histogram_delta(before, after) if before and after else None
    figures = cancel_figures(rows, closed, worker)
    ours = sum(cpu_after[n] - cpu_before.get(n, 0.0) for n in cpu_after)
    ours += sum(float(o["phase_cpu_s"]) for o in outcomes)
    figures |= {
        "tokens_per_answer": config.cancel_tokens, "tps": config.tps,
        "reconnects": sum(int(o["reconnects"]) for o in outcomes),
        "id_violations": sum(int(o["id_violations"]) for o in outcomes),
        "client_errors": [e for o in outcomes for e in o["errors"]][:10],
        # From the release (every stream generating) to the last stream's end.
        "cancel_phase_s": round(wall, 3),
        "machine": {"busy_cores": round(busy / wall, 3),
                    "background_cores": round(max(0.0, busy - ours) / wall, 3)},
    }
    (stack.run_dir / f"raw-{label}.json").write_text(json.dumps({"outcomes": outcomes,
                                                                  "closed": closed}))
    closed_ms = figures["post_to_upstream_closed_ms"]
    log.info("cancel scenario done streams=%d ok=%d missing_close=%d wrong_finish=%d "
             "closed_p50_ms=%s closed_p99_ms=%s background_cores=%s", streams,
             figures["cancelled_ok"], figures["missing_close"], figures["wrong_finish"],
             closed_ms["p50"], closed_ms["p99"], figures["machine"]["background_cores"])
    return figures


def _note_session_topics(stack: BenchStack, outcomes: list[dict[str, Any]]) -> None:
    """Session topics to delete at the end (topic layout; the shared one has none)."""
    if stack.layout == "topic":
        for outcome in outcomes:
            stack.session_topics.update(stack.settings.session_topic(sid)
                                        for sid in outcome["session_ids"])


async def _closed_streams(http: httpx.AsyncClient, url: str, rows: list[dict[str, Any]]
                          ) -> list[dict[str, Any]]:
    """The simulator's closed streams, polled until every posted cancel's close is there (or
    ``CLOSE_RECORD_WAIT_S`` passed: what is missing then is reported as missing)."""
    deadline = time.monotonic() + CLOSE_RECORD_WAIT_S
    while True:
        response = await http.get(url)
        response.raise_for_status()
        closed: list[dict[str, Any]] = response.json()["closed"]
        if all_matched(rows, closed) or time.monotonic() > deadline:
            return closed
        await asyncio.sleep(CLOSE_POLL_S)


async def _worker_histogram(http: httpx.AsyncClient, url: str) -> dict[str, Any] | None:
    """The worker's own cancel histogram, or None when its /metrics cannot be read (optional)."""
    try:
        response = await http.get(url)
        response.raise_for_status()
    except httpx.HTTPError as exc:
        log.warning("worker metrics not read url=%s error=%r", url, exc)
        return None
    return histogram_sample(response.text)


# --- profiling ------------------------------------------------------------------------------


def _start_profilers(stack: BenchStack, label: str, mode: str) -> list[subprocess.Popen[bytes]]:
    """py-spy (if installed) records the serving processes for the scenario's duration."""
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(py_spy).exists():
        log.warning("py-spy not found; no profile recorded")
        return []
    procs = []
    for name in ("relay",) if mode == "relay" else ("worker", "edge"):
        child = stack.children.get(name)
        if child is None:
            continue
        out = stack.run_dir / f"profile-{label}-{mode}-{name}.speedscope.json"
        procs.append(subprocess.Popen(
            [py_spy, "record", "-p", str(child.pid), "-o", str(out), "-f", "speedscope",
             "-r", "100", "--nonblocking"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        ))
    return procs


def _stop_profilers(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        proc.send_signal(signal.SIGINT)  # py-spy writes its output, then exits
    for proc in procs:
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


# --- idle connections -----------------------------------------------------------------------


async def run_idle(stack: BenchStack) -> dict[str, Any]:
    config = stack.config
    port = free_port()
    edge = stack.spawn_edge("edge-idle", port)
    await wait_http_ok(edge, f"http://127.0.0.1:{port}/readyz", READY_TIMEOUT_S)
    ids = [f"{stack.tag}-idle-s{i}" for i in range(config.idle_sessions)]
    await stack.create_session_topics(ids)
    sessions = [{"session_id": sid, "token": issue_token(stack.settings, session_id=sid,
                                                          user_id=f"{stack.tag}-idle-u{i}")}
                for i, sid in enumerate(ids)]
    clients = [await ClientProcess.start(f"clients-idle-{k}", stack.run_dir)
               for k in range(config.idle_clients)]
    levels: list[dict[str, Any]] = []
    heartbeats: dict[str, Any] = {}
    try:
        await asyncio.gather(*(c.ask({"cmd": "idle", "host": "127.0.0.1", "port": port,
                                      "sessions": sessions}, READY_TIMEOUT_S) for c in clients))
        await asyncio.sleep(SETTLE_S)
        base_rss = edge.rss_bytes()
        opened = 0
        for level in sorted(config.idle):
            need = level - opened
            shares = [need // len(clients) + (1 if k < need % len(clients) else 0)
                      for k in range(len(clients))]
            started = time.monotonic()
            reports = await asyncio.gather(*(c.ask({"cmd": "open", "n": n}, 600)
                                             for c, n in zip(clients, shares, strict=True)))
            open_s = time.monotonic() - started
            opened = level
            await asyncio.sleep(SETTLE_S)
            rss = edge.rss_bytes()
            levels.append(_level(level, reports, base_rss, rss, open_s, edge.alive()))
            log.info("idle level connections=%d rss_mib=%.1f per_conn_kib=%.2f open=%d",
                     level, rss / 2**20, levels[-1]["per_connection_kib"], levels[-1]["open"])
        await asyncio.gather(*(c.ask({"cmd": "mark"}, 60) for c in clients))
        cpu0 = edge.cpu_seconds()
        await asyncio.sleep(config.idle_hold_s)
        reports = await asyncio.gather(*(c.ask({"cmd": "report"}, 60) for c in clients))
        cpu1 = edge.cpu_seconds()
        heartbeats = {
            "connections": opened,
            "hold_s": config.idle_hold_s,
            "ping_s": config.ping_s,
            "min_heartbeats_per_connection": min(r["min_pings"] for r in reports),
            "max_heartbeats_per_connection": max(r["max_pings"] for r in reports),
            "open_at_end": sum(r["open"] for r in reports),
            "dropped": sum(r["dropped"] for r in reports),
            "edge_cpu_s_per_s": round((cpu1 - cpu0) / config.idle_hold_s, 4),
            "edge_rss_mib_at_end": round(edge.rss_bytes() / 2**20, 2),
        }
        await asyncio.gather(*(c.ask({"cmd": "close"}, 60) for c in clients))
    finally:
        for client in clients:
            await client.finish()
        stack.stop("edge-idle")
    return {"sessions": config.idle_sessions, "base_rss_mib": round(base_rss / 2**20, 2),
            "levels": levels, "heartbeats": heartbeats}


def _level(level: int, reports: list[dict[str, Any]], base_rss: int, rss: int, open_s: float,
           alive: bool) -> dict[str, Any]:
    open_now = sum(r["open"] for r in reports)
    return {
        "connections": level,
        "open": open_now,
        "failed": sum(r["failed"] for r in reports),
        "dropped": sum(r["dropped"] for r in reports),
        "errors": [e for r in reports for e in r["errors"]][:5],
        "open_s": round(open_s, 2),
        "edge_alive": alive,
        "edge_rss_mib": round(rss / 2**20, 2),
        "per_connection_kib": round((rss - base_rss) / 1024 / max(1, open_now), 2),
    }
