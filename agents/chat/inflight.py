"""The work a worker holds for taken records: bounded, owned, cancellable by source partition.

Three limits, each for its own reason:

- ``max_pending`` records may be in the worker's hands at once (queued behind their session,
  generating, or waiting for a write to land). ``admit`` waits at the cap, so a busy worker
  stops pulling from Kafka (backpressure) instead of queueing without bound.
- ``concurrency`` generation slots (``slot()``). A request takes its slot only once its turn in
  the session has come, so a session with a queue holds at most one slot and cannot starve
  other sessions (issue #11: slots used to be taken before the session lock).
- ``backlog(session)`` lets the caller refuse work beyond a per-session share of the queue.

Requests of one session run one at a time, in the order they were started (asyncio's lock
wakes waiters first come, first served), so a conversation's answers never interleave.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from aiokafka import TopicPartition

log = logging.getLogger(__name__)

Work = Callable[[], Awaitable[None]]


class InflightRequests:
    def __init__(self, concurrency: int, max_pending: int) -> None:
        self._slots = asyncio.Semaphore(concurrency)
        self._room = asyncio.Semaphore(max_pending)
        self._by_partition: dict[TopicPartition, set[asyncio.Task[None]]] = {}
        # session id -> (its lock, how many started works still hold or wait for it)
        self._sessions: dict[str, tuple[asyncio.Lock, int]] = {}

    def __len__(self) -> int:
        return sum(len(tasks) for tasks in self._by_partition.values())

    async def admit(self) -> None:
        """Wait for room for one more record; every ``admit`` must be followed by ``start``."""
        await self._room.acquire()

    def slot(self) -> asyncio.Semaphore:
        """``async with inflight.slot():`` around the part of a work that generates."""
        return self._slots

    def backlog(self, session_id: str) -> int:
        """Works of this session started and not finished (the running one included)."""
        return self._sessions.get(session_id, (None, 0))[1]

    def start(
        self, tp: TopicPartition, work: Work, *, session_id: str | None = None
    ) -> asyncio.Task[None]:
        """Run ``work`` in the room taken by ``admit``; with a session, after its earlier works."""
        lock = None if session_id is None else self._enter(session_id)
        task = asyncio.create_task(self._run(lock, work))
        tasks = self._by_partition.setdefault(tp, set())
        tasks.add(task)

        def finished(done: asyncio.Task[None]) -> None:
            tasks.discard(done)
            if not tasks and self._by_partition.get(tp) is tasks:
                del self._by_partition[tp]
            if session_id is not None:
                self._leave(session_id)
            self._room.release()
            if not done.cancelled() and done.exception() is not None:
                log.error("request task failed", exc_info=done.exception())

        task.add_done_callback(finished)
        return task

    async def cancel(self, partitions: set[TopicPartition] | None = None) -> None:
        """Cancel the works of these partitions (all when None) and wait for them."""
        targets = [
            task
            for tp, tasks in self._by_partition.items()
            if partitions is None or tp in partitions
            for task in tasks
        ]
        for task in targets:
            task.cancel()
        if targets:
            # wait(), not awaiting each task: it returns after their done callbacks have run, so
            # the bookkeeping (room, session backlog) is settled when cancel returns.
            await asyncio.wait(targets)

    @staticmethod
    async def _run(lock: asyncio.Lock | None, work: Work) -> None:
        if lock is None:
            await work()
            return
        async with lock:
            await work()

    def _enter(self, session_id: str) -> asyncio.Lock:
        lock, users = self._sessions.get(session_id, (asyncio.Lock(), 0))
        self._sessions[session_id] = (lock, users + 1)
        return lock

    def _leave(self, session_id: str) -> None:
        lock, users = self._sessions[session_id]
        if users <= 1:
            del self._sessions[session_id]
        else:
            self._sessions[session_id] = (lock, users - 1)
