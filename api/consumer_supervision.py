"""Keeping a hub's one long-lived consumer alive, whatever Kafka does (both session hubs).

The hub's loop calls its ``step`` forever. A step that fails is retried after a short backoff;
the consumer is replaced (by the hub's own ``replace``, which re-applies its positions) when it is
closed, its fetcher task has died (aiokafka then answers ``getmany`` with nothing, forever) or
``RESTART_AFTER_FAILURES`` steps failed in a row, waiting ``RESTART_BACKOFF_S * 2**n`` (at most
``RESTART_BACKOFF_MAX_S``) before the n-th replacement in a row; a consumer that stayed up
``STABLE_S`` resets n.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from aiokafka import AIOKafkaConsumer

log = logging.getLogger(__name__)

ERROR_BACKOFF_S = 0.5
RESTART_AFTER_FAILURES = 3
RESTART_BACKOFF_S = 0.1
RESTART_BACKOFF_MAX_S = 5.0
STABLE_S = 30.0


class Supervision:
    def __init__(self, name: str) -> None:
        self.name = name
        self.failures = 0
        self.restarts_in_a_row = 0
        self.up_since = 0.0

    def started(self) -> None:
        """A new consumer is up."""
        self.up_since = time.monotonic()

    def broken(self, consumer: AIOKafkaConsumer | None) -> str | None:
        """Why ``consumer`` cannot feed streams any more, or None while it can."""
        if consumer is None:
            return "no consumer"
        if self.failures >= RESTART_AFTER_FAILURES:
            return f"{self.failures} steps failed in a row"
        if consumer._closed:
            return "consumer closed"
        # aiokafka's fetcher task dying (an unexpected error, e.g. a request it cannot encode)
        # leaves getmany() answering "no records" forever: only the task itself tells.
        fetch_task: asyncio.Future[None] = consumer._fetcher.error_future
        if fetch_task.done():
            error = None if fetch_task.cancelled() else fetch_task.exception()
            return f"fetcher stopped error={error!r}"
        return None

    def next_restart_delay(self) -> float:
        """How long to wait before this replacement; counts it."""
        delay = min(RESTART_BACKOFF_MAX_S, RESTART_BACKOFF_S * 2**self.restarts_in_a_row)
        self.restarts_in_a_row += 1
        self.failures = 0
        return delay

    async def run(
        self,
        step: Callable[[], Awaitable[None]],
        replace: Callable[[str], Awaitable[None]],
        consumer: Callable[[], AIOKafkaConsumer | None],
    ) -> None:
        """Run ``step`` forever; only a cancellation of this task ends it."""
        while True:
            try:
                why = self.broken(consumer())
                if why is not None:
                    await replace(why)
                await step()
                self.failures = 0
                if self.restarts_in_a_row and time.monotonic() - self.up_since >= STABLE_S:
                    self.restarts_in_a_row = 0
            except asyncio.CancelledError as exc:
                task = asyncio.current_task()
                if task is None or task.cancelling():
                    raise
                # A library's own cancelled task leaking out (see stop_consumer): not a stop.
                self.failures += 1
                log.warning("%s step cancelled from inside error=%r", self.name, exc)
            except Exception as exc:  # the loop must outlive any Kafka failure
                self.failures += 1
                log.warning("%s step failed failures=%d error=%r", self.name, self.failures, exc)
                if self.failures < RESTART_AFTER_FAILURES:
                    await asyncio.sleep(ERROR_BACKOFF_S)
