"""Idle: SSE connections held by a client process (opened in batches, counted heartbeats), and
what the whole stack costs with no traffic at all (``measure_idle_stack``)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tokenwire.bench.processes import cpu_seconds, machine_busy_seconds
from tokenwire.bench.wire import HttpError, SseConnection, SseEvent, open_sse, path_with

if TYPE_CHECKING:
    from tokenwire.bench.stack import BenchStack

OPEN_CONCURRENCY = 100
# The idle stack: nothing is sent for this long before (in-flight work ends, timers settle) and
# while CPU is counted; a quick run counts for less.
IDLE_STACK_SETTLE_S = 3.0
IDLE_STACK_S = 20.0
QUICK_IDLE_STACK_S = 5.0
IDLE_STACK_PROCESSES = ("edge", "worker", "sim")


async def measure_idle_stack(stack: BenchStack) -> dict[str, Any] | None:
    """CPU (cores: CPU seconds per wall second) of the edge, worker, simulator and broker while
    nothing at all is sent; None when the stack is not running.

    The broker's figure is the whole broker's: its own idle work, and any other client of a
    shared broker (``background_cores``: what else ran on the host meanwhile).
    """
    pids = {name: child.pid for name, child in stack.children.items()
            if name in IDLE_STACK_PROCESSES and child.alive()}
    if not {"edge", "worker"} <= pids.keys():
        return None
    if (kafka := stack.kafka_pid) is not None:
        pids["kafka"] = kafka
    hold_s = QUICK_IDLE_STACK_S if stack.config.quick else IDLE_STACK_S
    await asyncio.sleep(IDLE_STACK_SETTLE_S)
    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    busy_before, started = machine_busy_seconds(), time.monotonic()
    await asyncio.sleep(hold_s)
    wall_s = time.monotonic() - started
    cores = {name: round((cpu_seconds(pid) - before[name]) / wall_s, 4)
             for name, pid in pids.items()}
    own = sum(cores[name] for name in IDLE_STACK_PROCESSES if name in cores)
    total = own + cores.get("kafka", 0.0)
    busy = (machine_busy_seconds() - busy_before) / wall_s
    return {
        "hold_s": round(wall_s, 2),
        "cpu_cores": cores,
        "processes_cpu_cores": round(own, 4),
        "stack_cpu_cores": round(total, 4),
        "broker_measured": "kafka" in cores,
        "background_cores": round(max(0.0, busy - total), 3),
    }


class IdleReader:
    def __init__(self) -> None:
        self.pings = 0
        self.events = 0
        self.conn: SseConnection | None = None
        self.closing = False

    def on_event(self, event: SseEvent) -> None:
        self.events += 1

    def on_comment(self, at: float) -> None:
        self.pings += 1

    @property
    def dropped(self) -> bool:
        return self.conn is not None and self.conn.closed.done() and not self.closing


@dataclass
class IdlePool:
    host: str
    port: int
    sessions: list[dict[str, str]]  # {"session_id", "token"}
    readers: list[IdleReader] = field(default_factory=list)
    failed: int = 0
    errors: list[str] = field(default_factory=list)

    async def open(self, count: int) -> dict[str, Any]:
        gate = asyncio.Semaphore(OPEN_CONCURRENCY)
        start = len(self.readers)

        async def one(k: int) -> None:
            session = self.sessions[k % len(self.sessions)]
            path = path_with(f"/v1/sessions/{session['session_id']}/events",
                             {"token": session["token"]})
            reader = IdleReader()
            async with gate:
                try:
                    reader.conn = await open_sse(self.host, self.port, path, reader)
                except (OSError, HttpError) as exc:
                    self.failed += 1
                    if len(self.errors) < 10:
                        self.errors.append(repr(exc))
                    return
            self.readers.append(reader)

        await asyncio.gather(*(one(k) for k in range(start, start + count)))
        return self.report()

    def mark(self) -> dict[str, Any]:
        for reader in self.readers:
            reader.pings = 0
        return self.report()

    def report(self) -> dict[str, Any]:
        pings = [r.pings for r in self.readers] or [0]
        return {
            "open": sum(1 for r in self.readers if not r.dropped),
            "dropped": sum(1 for r in self.readers if r.dropped),
            "failed": self.failed,
            "min_pings": min(pings),
            "max_pings": max(pings),
            "events": sum(r.events for r in self.readers),
            "errors": self.errors,
        }

    async def close(self) -> dict[str, Any]:
        report = self.report()
        for reader in self.readers:
            reader.closing = True
            if reader.conn is not None:
                reader.conn.close()
        await asyncio.sleep(0.2)
        return report
