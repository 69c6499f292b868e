"""``tokenwire run`` (``make run``): the whole pipeline on one machine, stopped by Ctrl-C.

Local services first, then the simulator (only when no OpenAI key is configured), the worker and
the edge as child processes. Ctrl-C or SIGTERM stops the children in reverse order; the local
services keep running (``tokenwire services down`` stops them) so a restart takes seconds.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import subprocess
import sys
import time
from types import FrameType

from tokenwire.settings import Settings
from tokenwire.topics import ensure_core_topics

log = logging.getLogger(__name__)

STOP_TIMEOUT_S = 15.0


def _spawn(command: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "tokenwire.cli", command])


def _stop(children: list[tuple[str, subprocess.Popen[bytes]]]) -> None:
    for name, child in reversed(children):
        if child.poll() is None:
            log.info("stopping %s pid=%s", name, child.pid)
            child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    for name, child in reversed(children):
        try:
            child.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.warning("%s did not stop in time; killing pid=%s", name, child.pid)
            child.kill()
            child.wait()


def run_stack(settings: Settings) -> int:
    from tokenwire.services import cli as services_cli

    if services_cli.run("up", settings) != 0:
        return 1
    asyncio.run(ensure_core_topics(settings))
    children: list[tuple[str, subprocess.Popen[bytes]]] = []
    stopping = False

    def on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        if settings.openai_api_key is None:
            children.append(("simulator", _spawn("sim")))
        children.append(("worker", _spawn("worker")))
        children.append(("edge", _spawn("edge")))
        print(_banner(settings), flush=True)
        while not stopping:
            for name, child in children:
                if child.poll() is not None:
                    log.error("%s exited with code %s; stopping the stack", name, child.returncode)
                    return 1
            time.sleep(0.5)
        return 0
    finally:
        _stop(children)


def _banner(settings: Settings) -> str:
    base = f"http://{settings.edge_host}:{settings.edge_port}"
    lines = ["", f"  tokenwire is up: open {base}/"]
    if settings.development:
        from api.auth.development import mint_dev_jwt

        token = mint_dev_jwt("alice", ttl_s=settings.auth.dev_jwt_ttl_s)
        lines += [
            "  development mode: a development JWT for user 'alice' (1 h), try:",
            f"    curl -s {base}/v1/chat -H 'authorization: Bearer {token}' \\",
            "      -H 'content-type: application/json' \\",
            """      -d '{"messages": [{"role": "user", "content": "Hello"}]}'""",
        ]
    lines += ["  (Ctrl-C stops the simulator, worker and edge)", ""]
    return "\n".join(lines)
