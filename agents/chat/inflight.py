"""The generations a worker is running: bounded, owned, and cancellable by source partition.

The agent waits for a free slot before it takes the next record, so a busy worker stops pulling
from Kafka (backpressure) instead of queueing without bound. Requests of one session run one at a
time, in offset order, so a conversation's answers never interleave.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from typing import Any

from aiokafka import TopicPartition

log = logging.getLogger(__name__)


class InflightRequests:
    def __init__(self, limit: int) -> None:
        self._slots = asyncio.Semaphore(limit)
        self._by_partition: dict[TopicPartition, set[asyncio.Task[None]]] = {}
        self._session_locks: dict[str, tuple[asyncio.Lock, int]] = {}

    def __len__(self) -> int:
        return sum(len(tasks) for tasks in self._by_partition.values())

    async def wait_for_slot(self) -> None:
        await self._slots.acquire()

    def start(
        self, tp: TopicPartition, session_id: str, work: Coroutine[Any, Any, None]
    ) -> asyncio.Task[None]:
        """Run ``work`` in the slot taken by ``wait_for_slot``; the slot frees when it ends."""
        lock = self._lock_for(session_id)
        task = asyncio.create_task(self._serialised(lock, work))
        tasks = self._by_partition.setdefault(tp, set())
        tasks.add(task)

        def finished(done: asyncio.Task[None]) -> None:
            tasks.discard(done)
            self._release_lock(session_id)
            self._slots.release()
            if not done.cancelled() and done.exception() is not None:
                log.error("generation task failed", exc_info=done.exception())

        task.add_done_callback(finished)
        return task

    async def cancel(self, partitions: set[TopicPartition] | None = None) -> None:
        """Cancel the generations of these partitions (all when None) and wait for them."""
        targets = [
            task
            for tp, tasks in self._by_partition.items()
            if partitions is None or tp in partitions
            for task in tasks
        ]
        for task in targets:
            task.cancel()
        for task in targets:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    @staticmethod
    async def _serialised(lock: asyncio.Lock, work: Coroutine[Any, Any, None]) -> None:
        async with lock:
            await work

    def _lock_for(self, session_id: str) -> asyncio.Lock:
        lock, users = self._session_locks.get(session_id, (asyncio.Lock(), 0))
        self._session_locks[session_id] = (lock, users + 1)
        return lock

    def _release_lock(self, session_id: str) -> None:
        lock, users = self._session_locks[session_id]
        if users <= 1:
            del self._session_locks[session_id]
        else:
            self._session_locks[session_id] = (lock, users - 1)
