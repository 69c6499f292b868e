"""``tokenwire edge`` (api.server.serve): a real process that stops cleanly on a signal."""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from asyncio.subprocess import Process
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from api.stream_tokens import issue_token
from tests.api.conftest import SseStream, edge_settings
from tests.fixtures.asgi_server import free_port
from tests.fixtures.pipeline import settings_env
from tests.fixtures.services import make_unique_name
from tokenwire.settings import Settings
from tokenwire.topics import ensure_core_topics

START_TIMEOUT_S = 30.0


@dataclass
class EdgeProcess:
    process: Process
    url: str
    settings: Settings
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def edge_env(settings: Settings, port: int) -> dict[str, str]:
    env = settings_env(settings)
    env.update(
        TOKENWIRE_EDGE_HOST="127.0.0.1",
        TOKENWIRE_EDGE_PORT=str(port),
        TOKENWIRE_SSE_PING_S="60",
    )
    return env


@pytest.fixture
async def edge_process(kafka_bootstrap: str, tmp_path: Path) -> AsyncIterator[EdgeProcess]:
    settings = edge_settings(kafka_bootstrap, make_unique_name("api"))
    await ensure_core_topics(settings)
    port, log_path = free_port(), tmp_path / "edge.log"
    with open(log_path, "wb") as log_file:  # noqa: ASYNC230 - a local file, opened once
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tokenwire.cli", "edge",
            env=edge_env(settings, port), stdout=log_file, stderr=asyncio.subprocess.STDOUT,
        )
    edge = EdgeProcess(process, f"http://127.0.0.1:{port}", settings, log_path)
    try:
        await wait_until_ready(edge)
        yield edge
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def wait_until_ready(edge: EdgeProcess) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    async with httpx.AsyncClient(timeout=2) as client:
        while time.monotonic() < deadline:
            if edge.process.returncode is not None:
                raise RuntimeError(f"edge exited early:\n{edge.log()}")
            try:
                if (await client.get(f"{edge.url}/readyz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError(f"edge not ready in {START_TIMEOUT_S}s:\n{edge.log()}")


async def test_sigterm_ends_open_streams_and_the_process_promptly(
    edge_process: EdgeProcess,
) -> None:
    token = issue_token(edge_process.settings, session_id="s-shutdown", user_id="u")
    url = f"{edge_process.url}/v1/sessions/s-shutdown/events"
    async with SseStream(url, token=token) as stream:
        assert stream.status == 200
        started = time.monotonic()
        edge_process.process.send_signal(signal.SIGTERM)
        assert await stream.rest(timeout_s=10) == []
    assert stream.closed
    returncode = await asyncio.wait_for(edge_process.process.wait(), 15)
    assert time.monotonic() - started < 5
    assert returncode in (0, -signal.SIGTERM)
    log = edge_process.log()
    assert "Traceback" not in log
    assert "reason=shutdown" in log and "without completing response" not in log


async def test_stream_tokens_in_the_query_never_reach_the_access_log(
    edge_process: EdgeProcess,
) -> None:
    secret = "eyJzaWQiOiJzLWxvZyJ9.c2VjcmV0LXNpZ25hdHVyZQ"
    async with httpx.AsyncClient(timeout=5) as client:
        response = await client.get(
            f"{edge_process.url}/v1/sessions/s-log/events", params={"token": secret, "from": 0}
        )
        # Starlette decodes the name, so an encoded one is the token too (found in review).
        encoded = await client.get(
            f"{edge_process.url}/v1/sessions/s-log/events?%74oken={secret}x&from=0"
        )
    assert response.status_code == 401 and encoded.status_code == 401
    log = edge_process.log()
    assert "/v1/sessions/s-log/events?token=***&from=0" in log
    assert secret not in log
