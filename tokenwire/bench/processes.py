"""Child processes of a benchmark run, and what /proc says about them (CPU seconds, RSS).

Every child gets its settings through ``TOKENWIRE_*`` variables, writes its output to a log file in
the run's directory and is stopped (SIGTERM, then SIGKILL) by whoever spawned it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from pydantic import BaseModel
from pydantic_settings import BaseSettings

from tokenwire.settings import Settings

log = logging.getLogger(__name__)

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
STOP_TIMEOUT_S = 15.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def child_env(settings: Settings) -> dict[str, str]:
    """The environment that makes a child process read exactly these settings.

    Nested settings objects (``BaseSettings`` fields such as ``aggregates``) are written under
    their own ``env_prefix``, the way they are read.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOKENWIRE_")}
    _put(env, settings, "TOKENWIRE_")
    env["TOKENWIRE_OPENAI_BASE_URL"] = settings.effective_openai_base_url
    env["TOKENWIRE_OPENAI_API_KEY"] = settings.effective_openai_api_key
    env.pop("OPENAI_API_KEY", None)
    env.pop("OPENAI_BASE_URL", None)
    return env


def _put(env: dict[str, str], settings: BaseSettings, prefix: str) -> None:
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if value is None or name in ("openai_api_key", "openai_base_url", "influxd"):
            continue
        if isinstance(value, BaseSettings):
            _put(env, value, str(value.model_config.get("env_prefix", "")))
            continue
        value = _plain(value)
        if isinstance(value, list | dict):
            value = json.dumps(value, default=str)
        env[f"{prefix}{name.upper()}"] = str(value)


def _plain(value: Any) -> Any:
    """Secrets revealed and models as dicts, anywhere in a value: a child reads them back."""
    if hasattr(value, "get_secret_value"):
        return value.get_secret_value()
    if isinstance(value, BaseModel):
        return _plain(value.model_dump())
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value


# --- /proc --------------------------------------------------------------------------------


def _stat_fields(pid: int) -> list[str]:
    raw = Path(f"/proc/{pid}/stat").read_text()
    # The command name (field 2) may hold spaces; everything after its ')' is space-separated.
    return raw[raw.rindex(")") + 2 :].split()


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` and its live descendants, in seconds."""
    total = 0.0
    for member in [pid, *descendants(pid)]:
        try:
            fields = _stat_fields(member)
        except (FileNotFoundError, ProcessLookupError, ValueError):
            continue
        total += (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return total


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            parent = int(_stat_fields(int(entry))[1])
        except (FileNotFoundError, ProcessLookupError, ValueError, IndexError):
            continue
        children.setdefault(parent, []).append(int(entry))
    found, stack = [], list(children.get(pid, []))
    while stack:
        child = stack.pop()
        found.append(child)
        stack.extend(children.get(child, []))
    return found


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine spent busy (all cores, /proc/stat), for background load."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    ticks = [int(x) for x in fields[:8]]
    idle = ticks[3] + ticks[4]  # idle + iowait
    return (sum(ticks) - idle) / CLOCK_TICKS


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


# --- children -----------------------------------------------------------------------------


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.pid)

    def rss_bytes(self) -> int:
        return rss_bytes(self.pid)

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop in time; killing pid=%s", self.name, self.pid)
                self.process.kill()
                self.process.wait()


def spawn(name: str, argv: list[str], env: dict[str, str], log_dir: Path) -> Child:
    log_path = log_dir / f"{name}.log"
    with log_path.open("ab") as log_file:
        process = subprocess.Popen(
            [sys.executable, *argv], env=env, stdout=log_file, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    log.info("spawned %s pid=%s log=%s", name, process.pid, log_path)
    return Child(name, process, log_path)


async def wait_http_ok(child: Child, url: str, timeout_s: float) -> None:
    """Poll ``url`` until it answers 200; fail early if the child exits."""
    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient(timeout=2.0) as client:
        while time.monotonic() < deadline:
            if not child.alive():
                raise RuntimeError(f"{child.name} exited early:\n{child.log_tail()}")
            try:
                if (await client.get(url)).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.2)
    raise RuntimeError(f"{child.name} not ready at {url} in {timeout_s}s:\n{child.log_tail()}")


# --- client processes ---------------------------------------------------------------------


class ClientProcess:
    """A ``tokenwire.bench.clients`` process: JSON commands in, JSON answers out."""

    def __init__(self, process: asyncio.subprocess.Process, name: str) -> None:
        self.process = process
        self.name = name

    @classmethod
    async def start(cls, name: str, log_dir: Path) -> ClientProcess:
        stderr = (log_dir / f"{name}.log").open("ab")
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "tokenwire.bench.clients",
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr,
                limit=256 * 1024 * 1024,
            )
        finally:
            stderr.close()
        return cls(process, name)

    @property
    def pid(self) -> int:
        return self.process.pid

    async def ask(self, command: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps(command).encode() + b"\n")
        await self.process.stdin.drain()
        line = await asyncio.wait_for(self.process.stdout.readline(), timeout_s)
        if not line:
            raise RuntimeError(f"client process {self.name} exited (see its log)")
        answer: dict[str, Any] = json.loads(line)
        return answer

    async def finish(self) -> None:
        if self.process.returncode is None:
            try:
                await asyncio.wait_for(self.process.wait(), 10)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
