"""Fixtures for the replay specifications: a producer, an admin client, fresh scripted logs, and
``replay(settings, *argv)`` running the real ``tokenwire replay`` argument parsing and command."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from tests.fixtures.credentials import caller_headers
from tests.fixtures.sse_client import Received, read_session
from tests.replay.scripted_log import ScriptedLog, replay_settings
from tokenwire.cli import build_parser
from tokenwire.replay.cli import run
from tokenwire.settings import Settings


@dataclass(frozen=True)
class CliResult:
    code: int
    out: str

    def jsonl(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.out.splitlines()]


Replay = Callable[..., Awaitable[CliResult]]
# A scripted test marked so runs in both session layouts (tokenwire/session_log.py).
both_layouts = pytest.mark.parametrize("layout", ["topic", "shared"])


@pytest.fixture(scope="session")
def producer(kafka_producer: AIOKafkaProducer) -> AIOKafkaProducer:
    return kafka_producer


@pytest.fixture(scope="session")
def admin(kafka_admin: AIOKafkaAdminClient) -> AIOKafkaAdminClient:
    return kafka_admin


@pytest.fixture
def layout() -> str:
    """The session layout of ``scripted`` (``both_layouts`` parametrizes it)."""
    return "topic"


@pytest.fixture
async def scripted(
    kafka_bootstrap: str, producer: AIOKafkaProducer, admin: AIOKafkaAdminClient,
    unique_name: Any, layout: str,
) -> AsyncIterator[ScriptedLog]:
    """A log on topics no other test uses (session topics included), deleted afterwards."""
    tag = unique_name("rp")
    settings = replay_settings(kafka_bootstrap, tag, session_layout=layout)
    yield ScriptedLog(settings, producer, admin)
    ours = [t for t in await admin.list_topics() if t.startswith(f"{tag}.")]
    if ours:
        await admin.delete_topics(ours)


@pytest.fixture
def replay() -> Replay:
    async def invoke(settings: Settings, *argv: str) -> CliResult:
        args = build_parser().parse_args(["replay", *argv])
        out = io.StringIO()
        # The command runs its own event loop (asyncio.run), as from the console script.
        code = await asyncio.to_thread(run, args, settings, out=out)
        return CliResult(code, out.getvalue())

    return invoke


@dataclass(frozen=True)
class Chat:
    session_id: str
    request_id: str
    token: str
    write_token: str
    received: list[Received]


async def chat(edge_url: str, text: str, session: Chat | None = None, user_id: str = "auditee"
               ) -> Chat:
    """POST /v1/chat (into ``session``'s session if given) and read the answer as a client."""
    body: dict[str, Any] = {"user_id": user_id, "messages": [{"role": "user", "content": text}]}
    headers = caller_headers(user_id)
    if session is not None:
        body["session_id"] = session.session_id
        headers["X-Stream-Token"] = session.write_token
    async with httpx.AsyncClient(timeout=30) as client:
        response = await client.post(f"{edge_url}/v1/chat", json=body, headers=headers)
    assert response.status_code == 202, response.text
    posted = response.json()
    token = posted["stream_token"]
    received = await read_session(edge_url, posted["session_id"], token,
                                  request_id=posted["request_id"])
    return Chat(posted["session_id"], posted["request_id"], token, posted["write_token"], received)
