"""One request's events as typed models, read from the edge's session hub, for the adapters.

The adapters speak other wire formats than ``/v1/sessions/{id}/events``, but read the same
durable session with the same guarantees: each event once, in order, from any position the edge
once sent (``Delivered.event_id``). What they add is a view of one request:

- ``latest_request`` finds a session's newest request and whether it has ended (the AI SDK's
  resume asks "is anything active?" without a position);
- ``request_events`` yields one request's events from a start position until its terminal
  event, with ``None`` after every quiet ``ping_s`` so the caller can keep its connection alive.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass

from pydantic import ValidationError

from api.event_ids import format_event_id
from api.runtime import EdgeRuntime
from api.session_feed import Entry, Subscription
from schemas.session_events import TERMINAL_TYPES, SessionEvent, parse_session_event

log = logging.getLogger(__name__)

# How long ``latest_request`` waits for the hub to read up to the session's end before it
# answers with what it has (a session partition that stalls must not hang a resume).
SCAN_TIMEOUT_S = 10.0
# How often the scan looks at the feed's position while no event of the session arrives (a
# shared partition advances on other sessions' records, which wake nobody here).
SCAN_POLL_S = 0.05
SCAN_BATCH = 256


@dataclass(frozen=True, slots=True)
class Delivered:
    """A session event and the SSE id it has on the session stream (a resume position)."""

    event_id: str
    offset: int
    event: SessionEvent
    # The hub's entry it was read from (its trace context, when tracing is on).
    entry: Entry | None = None


@dataclass(frozen=True, slots=True)
class LatestRequest:
    request_id: str
    # The offset of the request's first event: reading from here replays it whole.
    start_offset: int
    epoch: str | None
    finished: bool


def delivered(entry: Entry) -> Delivered | None:
    """The typed event behind a hub entry (its SSE bytes are the stored JSON on ``data:``
    lines); None, logged, for a record that is not a valid event of this schema."""
    event_id, data = _id_and_data(entry.sse)
    try:
        event = parse_session_event(data)
    except ValidationError:
        log.warning("skipping invalid session event offset=%d", entry.offset)
        return None
    return Delivered(event_id, entry.offset, event, entry)


def entries_of(items: Iterable[Delivered]) -> list[Entry]:
    return [item.entry for item in items if item.entry is not None]


def _id_and_data(sse: bytes) -> tuple[str, bytes]:
    event_id, data = "", []
    for line in sse.split(b"\n"):
        if line.startswith(b"id: "):
            event_id = line[4:].decode()
        elif line.startswith(b"data: "):
            data.append(line[6:])
    return event_id, b"\n".join(data)


async def request_events(
    sub: Subscription, request_id: str, *, ping_s: float
) -> AsyncIterator[Delivered | None]:
    """``request_id``'s events read by ``sub`` (other requests' are passed over), ending after
    its ``done``/``error``, or when the subscription closes (the caller can tell by
    ``sub.closed_reason``). ``None`` every ``ping_s`` without an event."""
    async for batch in request_batches(sub, request_id, ping_s=ping_s, limit=1):
        if batch is None:
            yield None
            continue
        for item in batch:
            yield item


async def request_batches(
    sub: Subscription, request_id: str, *, ping_s: float, limit: int
) -> AsyncIterator[list[Delivered] | None]:
    """``request_events`` in batches: each holds the events that were ready together (at most
    ``limit`` entries read), so a caller can tell a backlog read at once (a resume) from events
    that come live. Ends after the request's done/error or when ``sub`` closes; ``None`` every
    ``ping_s`` without an event."""
    while True:
        try:
            async with asyncio.timeout(ping_s):
                entry = await sub.next()
        except TimeoutError:
            yield None
            continue
        if entry is None:
            return
        batch: list[Delivered] = []
        ended = False
        for item in (entry, *sub.ready(limit - 1)):
            if item.request_id != request_id:
                continue
            found = delivered(item)
            if found is not None:
                batch.append(found)
            if item.type in TERMINAL_TYPES:
                ended = True
                break
        if batch:
            yield batch
        if ended:
            return


async def latest_request(
    runtime: EdgeRuntime, session_id: str, *, timeout_s: float = SCAN_TIMEOUT_S
) -> LatestRequest | None:
    """The session's newest request (by its first event) and whether it has ended; None for a
    session without events. Reads the session from its beginning up to its current end."""
    hub = runtime.hub
    floor = await hub.beginning(session_id, timeout_s=timeout_s)
    current = await hub.generation(session_id, at_least=0, epoch=None, timeout_s=timeout_s)
    if current.epoch is None or current.end <= floor:
        return None
    sub = hub.subscribe(session_id, floor, epoch=current.epoch)
    # request id -> [first offset, ended], in order of first appearance (requests may overlap).
    seen: dict[str, list[int | bool]] = {}
    try:
        async with asyncio.timeout(timeout_s):
            async for entry in _entries_until(sub, current.end):
                state = seen.setdefault(entry.request_id, [entry.offset, False])
                if entry.type in TERMINAL_TYPES:
                    state[1] = True
    except TimeoutError:
        log.warning("latest request scan gave up session=%s end=%d", session_id, current.end)
    finally:
        sub.leave()
    if not seen:
        return None
    request_id, (start, ended) = next(reversed(seen.items()))
    return LatestRequest(request_id, int(start), current.epoch, bool(ended))


async def _entries_until(sub: Subscription, end: int) -> AsyncIterator[Entry]:
    """Entries ``sub`` reads below ``end``; stops once the feed is complete past ``end - 1``
    (a feed holds every record of the session below its ``next_offset``)."""
    while sub.closed_reason is None:
        batch = sub.ready(SCAN_BATCH)
        for entry in batch:
            if entry.offset >= end:
                return
            yield entry
        if len(batch) == SCAN_BATCH:
            continue
        feed = sub.feed
        if feed is not None and feed.active and feed.next_offset >= end:
            return
        try:
            async with asyncio.timeout(SCAN_POLL_S):
                entry = await sub.next()
        except TimeoutError:
            continue
        if entry is None or entry.offset >= end:
            return
        yield entry


def position_of(item: LatestRequest) -> str:
    return format_event_id(item.epoch, item.start_offset)
