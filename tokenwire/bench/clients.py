"""A client process (``python -m tokenwire.bench.clients``), driven by JSON lines on stdin.

Clients run apart from the edge and the relay so that their CPU is never charged to them. The
orchestrator sends one JSON command per line and reads one JSON answer per line:

- ``{"cmd": "stream", "job": {...}}`` -> ``{"ready": true}``; then ``{"cmd": "go"}`` runs the
  sessions and answers with the outcome (requests, latencies, errors, own CPU seconds);
- ``{"cmd": "cancel", "job": {...}}`` -> ``{"ready": true}``; ``go`` starts the cancel streams
  (``cancels``) and answers ``{"generating": true}`` once each has its first token;
  the next command lets them cancel and is answered with the outcome;
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
from collections.abc import Awaitable, Callable
from typing import Any

from tokenwire.bench.cancels import CancelJob, CancelRun
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


async def _run_on_go(run: Callable[[], Awaitable[Any]]) -> None:
    """Ready, then run on ``go`` and answer with the outcome and this process's CPU."""
    _answer({"ready": True})
    command = await _read_command()
    if command.get("cmd") != "go":
        return
    cpu0, started = time.process_time(), time.time()
    outcome = await run()
    answer = dataclasses.asdict(outcome)
    answer |= {"cpu_s": time.process_time() - cpu0, "wall_s": time.time() - started}
    _answer(answer)


async def _cancel(run: CancelRun) -> Any:
    streams = asyncio.create_task(run.run())
    try:
        await run.all_generating()
        _answer({"generating": True})
        await _read_command()
        released = time.process_time()
        run.release.set()
        outcome = await streams
        outcome.phase_cpu_s = time.process_time() - released
        return outcome
    finally:
        streams.cancel()


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
        stream_job = StreamJob(**command["job"])
        await _run_on_go(lambda: run_stream_job(stream_job))
    elif command.get("cmd") == "cancel":
        await _run_on_go(lambda: _cancel(CancelRun(CancelJob(**command["job"]))))
    elif command.get("cmd") == "idle":
        await _idle(IdlePool(command["host"], int(command["port"]), command["sessions"]))
    return 0


def main() -> int:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    return asyncio.run(main_async())


if __name__ == "__main__":
    sys.exit(main())
