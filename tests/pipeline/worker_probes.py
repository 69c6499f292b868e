"""Looking at a running worker from outside: its group's committed offsets, its metrics, its
session topics. Polls, because the state belongs to another process."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from aiokafka import TopicPartition

from tests.fixtures.kafka_reading import read_session_records
from tokenwire.kafka_clients import new_admin
from tokenwire.kafka_settings import KafkaConnection
from tokenwire.settings import Settings

POLL_S = 0.2


async def eventually_async(
    check: Callable[[], Awaitable[bool]], timeout_s: float, what: str
) -> None:
    """Return once ``await check()`` holds; ``TimeoutError`` naming ``what`` otherwise."""
    deadline = time.monotonic() + timeout_s
    while not await check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout_s}s")
        await asyncio.sleep(POLL_S)


async def committed_offset(bootstrap: str, group: str, tp: TopicPartition) -> int:
    """The group's committed offset of ``tp`` (the next record it would read); -1 if none."""
    admin = new_admin(KafkaConnection.plaintext(bootstrap), client_id="tests-offsets")
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group, partitions=[tp])
    finally:
        await admin.close()
    meta = offsets.get(tp)
    return -1 if meta is None else int(meta.offset)


async def wait_until_committed_past(
    bootstrap: str, group: str, tp: TopicPartition, offset: int, timeout_s: float = 60.0
) -> None:
    async def past() -> bool:
        return await committed_offset(bootstrap, group, tp) > offset

    await eventually_async(past, timeout_s, f"the commit of {tp} passing offset {offset}")


async def session_events(settings: Settings, session_id: str) -> list[dict[str, Any]]:
    """The session's events on the log, in either session layout."""
    return [json.loads(r.value) for r in await read_session_records(settings, session_id)]


async def wait_for_terminal(
    settings: Settings, session_id: str, request_id: str, timeout_s: float = 60.0
) -> dict[str, Any]:
    """The request's ``done``/``error`` event on its session's log, once it is there."""
    found: list[dict[str, Any]] = []

    async def ended() -> bool:
        found[:] = [e for e in await session_events(settings, session_id)
                    if e["request_id"] == request_id and e["type"] in ("done", "error")]
        return bool(found)

    await eventually_async(ended, timeout_s, f"a terminal event of {request_id} in {session_id}")
    return found[0]


async def metric_value(web_url: str, name: str, labels: str = "") -> float:
    """One sample of the worker's /metrics (0 when absent), e.g. ``labels='what="x"'``."""
    async with httpx.AsyncClient(timeout=10) as client:
        text = (await client.get(f"{web_url}/metrics")).text
    wanted = f"{name}{{{labels}}}" if labels else name
    for line in text.splitlines():
        if line.startswith(wanted + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0
