"""Idle SSE connections held by a client process: opened in batches, counted heartbeats."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from tokenwire.bench.wire import HttpError, SseConnection, SseEvent, open_sse, path_with

OPEN_CONCURRENCY = 100


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
