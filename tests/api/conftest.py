"""Fixtures for the edge's tests: a real edge on a free port, a real broker, a real SSE client.

The worker is someone else's: these tests play its part by producing session events (built
with the schemas models) straight into session topics.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from httpx_sse import EventSource, aconnect_sse
from pydantic import BaseModel
from starlette.applications import Starlette

from api.app import create_app
from api.event_ids import format_event_id, parse_position
from api.runtime import EdgeRuntime
from api.stream_tokens import issue_token
from schemas.session_events import DoneEvent, ErrorEvent, StartEvent, Timings, TokenEvent, Usage
from tests.fixtures.asgi_server import serve_edge
from tests.fixtures.credentials import auth_for_tests
from tests.fixtures.services import make_unique_name
from tests.fixtures.waiting import eventually as wait_until
from tokenwire.kafka_settings import KafkaSettings
from tokenwire.settings import Settings
from tokenwire.topics import UNREPLICATED, create_topics, ensure_core_topics, session_topic_spec

WAIT_S = 20.0


def edge_settings(kafka_bootstrap: str, tag: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "kafka_bootstrap": kafka_bootstrap,
        "requests_topic": f"{tag}.requests",
        "events_topic": f"{tag}.events",
        "alerts_topic": f"{tag}.alerts",
        "dead_letter_topic": f"{tag}.dlq",
        "control_topic": f"{tag}.control",
        "requests_partitions": 1,
        "sse_ping_s": 1.0,
        "sse_retry_ms": 250,
        "auth": auth_for_tests(),
        # Production mode on the tests' loopback broker, plaintext on purpose.
        "kafka": KafkaSettings(allow_plaintext=True),
    }
    values.update(overrides)
    return Settings(**values)


@dataclass
class Edge:
    url: str
    app: Starlette
    settings: Settings

    @property
    def runtime(self) -> EdgeRuntime:
        runtime: EdgeRuntime = self.app.state.runtime
        return runtime

    def token(
        self, session_id: str, user_id: str = "u-test", scope: Literal["read", "write"] = "read"
    ) -> str:
        return issue_token(self.settings, session_id=session_id, user_id=user_id, scope=scope)

    def events_url(self, session_id: str) -> str:
        return f"{self.url}/v1/sessions/{session_id}/events"


@contextlib.asynccontextmanager
async def running_edge(settings: Settings, *, core_topics: bool = True) -> AsyncIterator[Edge]:
    if core_topics:
        await ensure_core_topics(settings)
    app = create_app(settings)
    async with serve_edge(app) as url:
        yield Edge(url, app, settings)


EdgeFactory = Callable[..., contextlib.AbstractAsyncContextManager[Edge]]


@pytest.fixture(scope="session")
async def edge(kafka_bootstrap: str) -> AsyncIterator[Edge]:
    """The shared edge for tests that need no special settings."""
    async with running_edge(edge_settings(kafka_bootstrap, make_unique_name("api"))) as running:
        yield running


@pytest.fixture
def make_edge(kafka_bootstrap: str, unique_name: Callable[..., str]) -> EdgeFactory:
    """``async with make_edge(sse_client_buffer=4) as edge``: an edge with its own settings."""

    def factory(*, core_topics: bool = True, **overrides: Any) -> Any:
        settings = edge_settings(kafka_bootstrap, unique_name("api"), **overrides)
        return running_edge(settings, core_topics=core_topics)

    return factory


# --- playing the worker --------------------------------------------------------------------


CreateSession = Callable[[Settings, str], Awaitable[str]]
Produce = Callable[[Settings, str, list[BaseModel]], Awaitable[list[int]]]


@pytest.fixture
def create_session_topic(kafka_admin: AIOKafkaAdminClient) -> CreateSession:
    async def create(settings: Settings, session_id: str) -> str:
        spec = session_topic_spec(settings, session_id)
        await create_topics(kafka_admin, [spec], UNREPLICATED)
        return spec.name

    return create


@pytest.fixture
def produce(kafka_producer: AIOKafkaProducer) -> Produce:
    """Write events to a session topic in order; returns their offsets."""

    async def send(settings: Settings, session_id: str, events: list[BaseModel]) -> list[int]:
        topic = settings.session_topic(session_id)
        futures = [
            await kafka_producer.send(
                topic, value=event.model_dump_json().encode(), key=session_id.encode()
            )
            for event in events
        ]
        return [(await future).offset for future in futures]

    return send


def answer_events(
    session_id: str, request_id: str, tokens: list[str], *, terminal: str = "done"
) -> list[BaseModel]:
    """One request's events as the worker writes them: start, tokens, done (or error)."""
    now = time.time()
    ids = {"request_id": request_id, "session_id": session_id, "attempt": 1}
    events: list[BaseModel] = [StartEvent(**ids, seq=0, model="sim", accepted_at=now)]
    events += [
        TokenEvent(**ids, seq=i + 1, text=text, received_at=now) for i, text in enumerate(tokens)
    ]
    last = len(tokens) + 1
    if terminal == "done":
        timings = Timings(accepted_at=now, finished_at=now, duration_s=0.0)
        events.append(
            DoneEvent(**ids, seq=last, finish_reason="stop", usage=Usage(), timings=timings)
        )
    else:
        events.append(ErrorEvent(**ids, seq=last, code="upstream", message="boom", retryable=False))
    return events


# --- a real SSE client ---------------------------------------------------------------------


@dataclass(frozen=True)
class Sse:
    id: int  # the event's offset: the id's ``<offset>`` part
    event: str
    data: str
    epoch: str | None = None  # the id's ``<epoch>`` part: the session topic's generation

    @property
    def last_event_id(self) -> str:
        """The id as sent, what EventSource resends in ``Last-Event-ID``."""
        return format_event_id(self.epoch, self.id)


class SseStream:
    """An open SSE connection read a few events at a time; leaving the block disconnects."""

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        transport: httpx.AsyncHTTPTransport | None = None,
    ) -> None:
        self._url = url
        self._params = dict(params or {})
        if token is not None:
            self._params["token"] = token
        self._headers = dict(headers or {})
        self._transport = transport
        self._stack = contextlib.AsyncExitStack()
        self._events: AsyncIterator[Any] | None = None
        self.source: EventSource | None = None
        self.retry: int | None = None
        self.closed = False

    @property
    def status(self) -> int:
        assert self.source is not None
        return self.source.response.status_code

    async def __aenter__(self) -> SseStream:
        client = await self._stack.enter_async_context(
            httpx.AsyncClient(timeout=httpx.Timeout(WAIT_S, connect=5.0), transport=self._transport)
        )
        self.source = await self._stack.enter_async_context(
            aconnect_sse(client, "GET", self._url, params=self._params, headers=self._headers)
        )
        if self.status == 200:
            self._events = self.source.aiter_sse()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.aclose()

    async def _next(self) -> Sse | None:
        assert self._events is not None
        while True:
            try:
                sse = await anext(self._events)
            except (StopAsyncIteration, httpx.RemoteProtocolError, httpx.ReadError):
                self.closed = True
                return None
            if sse.retry is not None:
                self.retry = sse.retry
            if sse.data:
                position = parse_position(sse.id)
                assert position is not None, f"not an event id: {sse.id!r}"
                return Sse(position.offset, sse.event, sse.data, position.epoch)

    async def take(self, count: int, timeout_s: float = WAIT_S) -> list[Sse]:
        """The next ``count`` events (fewer only if the server closed the stream)."""
        received: list[Sse] = []

        async def read() -> None:
            while len(received) < count and (sse := await self._next()) is not None:
                received.append(sse)

        await asyncio.wait_for(read(), timeout_s)
        return received

    async def rest(self, timeout_s: float = WAIT_S) -> list[Sse]:
        """Every event until the server closes the stream."""
        return await self.take(10**9, timeout_s)


async def eventually(check: Callable[[], bool], timeout_s: float = WAIT_S) -> None:
    await wait_until(check, timeout_s)


def metric_value(edge: Edge, name: str, labels: dict[str, str] | None = None) -> float:
    value = edge.runtime.metrics.registry.get_sample_value(name, labels or {})
    return 0.0 if value is None else value
