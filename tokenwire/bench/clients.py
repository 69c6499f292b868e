"""A client process (``python -m tokenwire.bench.clients``), driven by JSON lines on stdin.

Clients run apart from the edge and the relay so that their CPU is never charged to them. The
orchestrator sends one JSON command per line and reads one JSON answer per line:

- ``{"cmd": "stream", "job": {...}}`` -> ``{"ready": true}``; then ``{"cmd": "go"}`` runs the
  sessions and answers with the outcome (requests, latencies, errors, own CPU seconds);
- ``{"cmd": "idle", "host", "port", "sessions"}`` -> ``{"ready": true}``; then ``open`` (n),
  ``mark`` (reset heartbeat counters), ``report`` and ``close`` each answer a pool report.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import resource
import sys
import time
from typing import Any

from tokenwire.bench.idle import IdlePool
from tokenwire.bench.sessions import StreamJob, run_stream_job

log = logging.getLogger(__name__)


def raise_nofile_limit() -> int:
    """Soft RLIMIT_NOFILE up to the hard limit (thousands of sockets per process)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


async def _read_command() -> dict[str, Any]:
    line = await asyncio.to_thread(sys.stdin.readline)
    if not line:
        return {"cmd": "close"}
    command: dict[str, Any] = json.loads(line)
    return command


def _answer(payload: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(payload, separators=(",", ":")) + "\n")
    sys.stdout.flush()


async def _stream(job: StreamJob) -> None:
    _answer({"ready": True})
    command = await _read_command()
    if command.get("cmd") != "go":
        return
    cpu0, started = time.process_time(), time.time()
    outcome = await run_stream_job(job)
    answer = dataclasses.asdict(outcome)
    answer |= {"cpu_s": time.process_time() - cpu0, "wall_s": time.time() - started}
    _answer(answer)


async def _idle(pool: IdlePool) -> None:
    _answer({"ready": True})
    while True:
        command = await _read_command()
        name = command.get("cmd")
        if name == "open":
            _answer(await pool.open(int(command["n"])))
        elif name == "mark":
            _answer(pool.mark())
        elif name == "report":
            _answer(pool.report())
        else:
            _answer(await pool.close())
            return


async def main_async() -> int:
    raise_nofile_limit()
    command = await _read_command()
    if command.get("cmd") == "stream":
        await _stream(StreamJob(**command["job"]))
    elif command.get("cmd") == "idle":
        await _idle(IdlePool(command["host"], int(command["port"]), command["sessions"]))
    return 0


def main() -> int:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    return asyncio.run(main_async())


if __name__ == "__main__":
    sys.exit(main())
