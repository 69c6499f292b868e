"""Chats as a browser behind a load balancer makes them, through two edges.

Each chat is one session: requests one after another (``POST /v1/chat``, the next one with the
session's write token), read over one SSE stream. When the stream ends without being asked to
(its edge died), the client reconnects with ``Last-Event-ID`` to the next edge, as EventSource
does behind a balancer that dropped the dead edge; a POST that cannot reach an edge goes to the
next one. What the client saw is kept per request: token texts of the last attempt (for the
exact-answer check) and the arrival time of every token (for the gaps).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass, field
from typing import Any

from tokenwire.bench.records import TokenCheck, check_tokens
from tokenwire.bench.sessions import ResumingStream
from tokenwire.bench.wire import HttpError, open_sse, post_json
from tokenwire.simulator.script import expected_tokens

RECONNECT_DELAY_S = 0.25
POST_TIMEOUT_S = 30.0

Edge = tuple[str, int]


@dataclass
class ChatRecord:
    """One request as its client saw it."""

    chat: int
    request_id: str
    # Filled once the POST is answered: its events may come first (the stream is already open).
    expected: list[str] = field(default_factory=list)
    posted_at: float = 0.0
    arrivals: list[tuple[int, str]] = field(default_factory=list)
    token_times: list[float] = field(default_factory=list)
    attempt: int = 1
    retries: int = 0
    terminal: str | None = None
    error: str | None = None
    finished: asyncio.Event = field(default_factory=asyncio.Event)

    def add(self, kind: str, data: dict[str, Any], at: float) -> None:
        if kind == "token":
            self.token_times.append(at)
            if data.get("attempt", 1) == self.attempt:
                self.arrivals.append((int(data["seq"]), data["text"]))
        elif kind == "retry":
            # A new attempt starts the answer again; the client shows only the last one.
            self.attempt, self.retries = int(data["attempt"]), self.retries + 1
            self.arrivals.clear()
        elif kind in ("done", "error"):
            self.terminal = kind
            if kind == "error":
                self.error = f"error event: {data.get('code')}: {data.get('message')}"
            self.finished.set()

    def check(self) -> TokenCheck:
        return check_tokens(self.arrivals, self.expected)

    @property
    def exact(self) -> bool:
        return self.terminal == "done" and self.check().clean


class FailoverStream(ResumingStream):
    """One session's SSE stream that moves to the next edge when its connection ends."""

    def __init__(
        self, chat: int, edges: list[Edge], first: int, session_id: str, token: str
    ) -> None:
        super().__init__(session_id, token)
        self.chat = chat
        self.edges = edges
        self.edge_index = first
        self.records: dict[str, ChatRecord] = {}

    def record(self, request_id: str) -> ChatRecord:
        """The request's record, made by whichever comes first: its POST's answer or its first
        event (a worker can be streaming it before the edge has answered the POST)."""
        record = self.records.get(request_id)
        if record is None:
            record = self.records[request_id] = ChatRecord(self.chat, request_id)
        return record

    async def _run(self) -> None:
        while not self._stopping:
            host, port = self.edges[self.edge_index]
            try:
                self._conn = await open_sse(host, port, self.path, self, headers=self._headers())
            except (OSError, HttpError) as exc:
                self.errors.append(f"connect {port}: {exc!r}"[:200])
                self._next_edge()
                await asyncio.sleep(RECONNECT_DELAY_S)
                continue
            self.connected.set()
            await self._conn.closed
            if not self._stopping:
                self.reconnects += 1
                self._next_edge()
                await asyncio.sleep(RECONNECT_DELAY_S)

    def _next_edge(self) -> None:
        self.edge_index = (self.edge_index + 1) % len(self.edges)


@dataclass
class ChatOutcome:
    records: list[ChatRecord] = field(default_factory=list)
    session_ids: list[str] = field(default_factory=list)
    reconnects: int = 0
    id_violations: int = 0
    errors: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ChatPlan:
    """What every chat asks the simulator for, and for how long chats keep going."""

    tokens: int = 120
    tokens_per_s: float = 40.0
    ttft_ms: float = 100.0
    request_timeout_s: float = 120.0

    def messages(self, chat: int, index: int) -> list[dict[str, str]]:
        directive = (
            f"[[sim: tokens={self.tokens} tps={self.tokens_per_s:g} ttft_ms={self.ttft_ms:g}]]"
        )
        return [{"role": "user", "content": f"fault chat {chat} request {index} {directive}"}]


async def run_chat(
    chat: int,
    edges: list[Edge],
    credential: str,
    user_id: str,
    plan: ChatPlan,
    keep_going: asyncio.Event,
    out: ChatOutcome,
) -> None:
    """Requests one after another in one session until ``keep_going`` is cleared."""
    first = chat % len(edges)
    session_id: str | None = None
    write_token: str | None = None
    stream: FailoverStream | None = None
    index = 0
    try:
        while keep_going.is_set():
            messages = plan.messages(chat, index)
            body: dict[str, Any] = {"user_id": user_id, "messages": messages}
            headers = {"authorization": f"Bearer {credential}"}
            if session_id is not None:
                body["session_id"] = session_id
                headers["x-stream-token"] = write_token or ""
            posted_at = time.time()
            try:
                answer = await _post(edges, first + index, body, headers)
            except (OSError, HttpError, TimeoutError) as exc:
                out.errors.append(f"chat {chat} request {index}: post: {exc!r}"[:300])
                await asyncio.sleep(RECONNECT_DELAY_S)
                index += 1
                continue
            session_id, write_token = answer["session_id"], answer["write_token"]
            if stream is None:
                stream = FailoverStream(chat, edges, first, session_id, answer["stream_token"])
                out.session_ids.append(session_id)
                stream.start()
            record = stream.record(answer["request_id"])
            record.expected, record.posted_at = expected_tokens(messages), posted_at
            out.records.append(record)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(record.finished.wait(), plan.request_timeout_s)
            if not record.finished.is_set():
                record.error = "no terminal event in time"
            index += 1
    finally:
        if stream is not None:
            await stream.stop()
            out.reconnects += stream.reconnects
            out.id_violations += stream.id_violations
            out.errors.extend(stream.errors[:5])


async def _post(
    edges: list[Edge], start: int, body: dict[str, Any], headers: dict[str, str]
) -> dict[str, Any]:
    """POST to the edges in turn from ``start`` until one accepts; the last failure raises."""
    failure: Exception | None = None
    for step in range(len(edges)):
        host, port = edges[(start + step) % len(edges)]
        try:
            status, answer = await asyncio.wait_for(
                post_json(host, port, "/v1/chat", body, headers=headers), POST_TIMEOUT_S
            )
        except (OSError, TimeoutError) as exc:
            failure = exc
            continue
        if status == 202:
            return answer
        failure = HttpError(status, json.dumps(answer).encode())
        if status < 500:
            break  # refused on its merits: another edge would say the same
    assert failure is not None
    raise failure
