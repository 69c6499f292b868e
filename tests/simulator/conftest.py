"""A real uvicorn serving the simulator in-process, and the real openai client against it."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import openai
import pytest_asyncio
import uvicorn

from tokenwire.simulator.server import create_app


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def sim_url() -> AsyncIterator[str]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    app = create_app(ttft_ms=0, tokens_per_s=5000)
    config = uvicorn.Config(app, log_config=None, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        assert not task.done(), "simulator exited before it started"
        await asyncio.sleep(0.01)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    await asyncio.wait_for(task, timeout=10)
    sock.close()


@pytest_asyncio.fixture(loop_scope="session")
async def client(sim_url: str) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(base_url=f"{sim_url}/v1", api_key="x", max_retries=0) as c:
        yield c
