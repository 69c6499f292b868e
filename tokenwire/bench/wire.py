"""A minimal HTTP/1.1 client for the benchmark's readers: one ``asyncio.Protocol`` per connection.

The clients share the machine's cores with the system under test, so an event must cost as
little as possible: the protocol decodes the chunked body and the SSE fields inside
``data_received``, with no coroutine switch per event (httpx + httpx-sse costs several times
more per event). Every event is stamped with ``time.time()`` when it is parsed: that is the
"client parsed the event" end of the latency.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any, Protocol, cast
from urllib.parse import urlencode


@dataclass(slots=True)
class SseEvent:
    id: str | None
    event: str
    data: str
    at: float


class SseHandler(Protocol):
    def on_event(self, event: SseEvent) -> None: ...

    def on_comment(self, at: float) -> None: ...


class HttpError(Exception):
    def __init__(self, status: int, body: bytes) -> None:
        super().__init__(f"HTTP {status}: {body[:200]!r}")
        self.status = status
        self.body = body


def request_bytes(
    method: str, host: str, port: int, path: str, *,
    headers: dict[str, str] | None = None, body: bytes = b"", close: bool = False,
) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"host: {host}:{port}"]
    for name, value in (headers or {}).items():
        lines.append(f"{name}: {value}")
    if body or method == "POST":
        lines.append(f"content-length: {len(body)}")
    if close:
        lines.append("connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def path_with(path: str, params: dict[str, str]) -> str:
    return f"{path}?{urlencode(params)}" if params else path


class SseConnection(asyncio.Protocol):
    """One GET whose response is read as an SSE stream; ``opened`` resolves with the status."""

    def __init__(self, handler: SseHandler, request: bytes) -> None:
        loop = asyncio.get_running_loop()
        self.handler = handler
        self.opened: asyncio.Future[int] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()
        self.transport: asyncio.Transport | None = None
        self.status = 0
        self.body_error: bytes = b""
        self._request = request
        self._head = bytearray()
        self._in_body = False
        self._chunked = False
        self._raw = bytearray()  # chunked framing not decoded yet
        self._chunk_left = -1  # -1: expecting a size line; -2: expecting the CRLF after data
        self._text = bytearray()  # SSE bytes not yet split into complete lines
        self._data: list[bytes] = []
        self._event = b""
        self._id: bytes | None = None

    # --- asyncio.Protocol ---------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCP transport is not an asyncio.Transport subclass, but it is one in kind.
        self.transport = cast("asyncio.Transport", transport)
        transport.write(self._request)

    def data_received(self, data: bytes) -> None:
        if not self._in_body:
            self._head += data
            end = self._head.find(b"\r\n\r\n")
            if end < 0:
                return
            rest = bytes(self._head[end + 4 :])
            self._parse_head(bytes(self._head[:end]))
            self._head.clear()
            self._in_body = True
            if not rest:
                return
            data = rest
        if self.status != 200:
            self.body_error += data
            return
        if self._chunked:
            self._raw += data
            self._dechunk()
        else:
            self._feed(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_exception(ConnectionError(f"closed before a response: {exc!r}"))
        if not self.closed.done():
            self.closed.set_result(None)

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    # --- HTTP framing -------------------------------------------------------------------
    def _parse_head(self, head: bytes) -> None:
        lines = head.split(b"\r\n")
        self.status = int(lines[0].split(b" ", 2)[1])
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"transfer-encoding" and b"chunked" in value.lower():
                self._chunked = True
        if not self.opened.done():
            self.opened.set_result(self.status)

    def _dechunk(self) -> None:
        raw, pos = self._raw, 0
        while True:
            if self._chunk_left == -1:
                end = raw.find(b"\r\n", pos)
                if end < 0:
                    break
                size = int(bytes(raw[pos:end]).split(b";", 1)[0], 16)
                pos = end + 2
                if size == 0:
                    self.close()
                    break
                self._chunk_left = size
            elif self._chunk_left == -2:
                if len(raw) - pos < 2:
                    break
                pos += 2
                self._chunk_left = -1
            else:
                take = min(self._chunk_left, len(raw) - pos)
                if take == 0:
                    break
                self._feed(bytes(raw[pos : pos + take]))
                pos += take
                self._chunk_left -= take
                if self._chunk_left == 0:
                    self._chunk_left = -2
        del raw[:pos]

    # --- SSE fields ---------------------------------------------------------------------
    def _feed(self, data: bytes) -> None:
        self._text += data
        if b"\n" not in data:
            return
        *lines, rest = self._text.split(b"\n")
        self._text = bytearray(rest)
        at = time.time()
        for line in lines:
            if line.endswith(b"\r"):
                line = line[:-1]
            if not line:
                self._dispatch(at)
            elif line[0] == 0x3A:  # ':' a comment: the heartbeat
                self.handler.on_comment(at)
            else:
                name, _, value = line.partition(b":")
                if value.startswith(b" "):
                    value = value[1:]
                if name == b"data":
                    self._data.append(value)
                elif name == b"event":
                    self._event = value
                elif name == b"id":
                    self._id = value

    def _dispatch(self, at: float) -> None:
        if self._data:
            event = SseEvent(
                None if self._id is None else self._id.decode(),
                self._event.decode() or "message",
                b"\n".join(self._data).decode("utf-8"),
                at,
            )
            self.handler.on_event(event)
        self._data, self._event, self._id = [], b"", None


async def open_sse(
    host: str, port: int, path: str, handler: SseHandler, *, headers: dict[str, str] | None = None,
) -> SseConnection:
    """Connect, send the GET and wait for the status line; non-200 raises ``HttpError``."""
    loop = asyncio.get_running_loop()
    request = request_bytes("GET", host, port, path, headers={"accept": "text/event-stream",
                                                               **(headers or {})})
    _, conn = await loop.create_connection(lambda: SseConnection(handler, request), host, port)
    status = await conn.opened
    if status != 200:
        await asyncio.wait([conn.closed], timeout=0.5)
        conn.close()
        raise HttpError(status, bytes(conn.body_error))
    return conn


async def post_json(
    host: str, port: int, path: str, body: dict[str, Any], *, headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, Any]]:
    """A one-shot POST on its own connection (``connection: close``); the JSON answer."""
    payload = json.dumps(body).encode()
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(request_bytes(
            "POST", host, port, path, body=payload, close=True,
            headers={"content-type": "application/json", **(headers or {})},
        ))
        raw = await reader.read(-1)
    finally:
        writer.close()
    head, _, rest = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    if b"transfer-encoding: chunked" in head.lower():
        rest = _dechunk_all(rest)
    try:
        answer = json.loads(rest) if rest else {}
    except ValueError:
        answer = {"raw": rest[:200].decode("utf-8", "replace")}
    return status, answer if isinstance(answer, dict) else {"value": answer}


def _dechunk_all(raw: bytes) -> bytes:
    out, pos = bytearray(), 0
    while True:
        end = raw.find(b"\r\n", pos)
        if end < 0:
            return bytes(out)
        size = int(raw[pos:end].split(b";", 1)[0], 16)
        if size == 0:
            return bytes(out)
        out += raw[end + 2 : end + 2 + size]
        pos = end + 2 + size + 2
