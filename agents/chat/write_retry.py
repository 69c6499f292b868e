"""Writes a record's outcome must not lose: a dead letter, a request's terminal error.

Such a write runs in the record's own task, so while it waits the agent goes on taking records
and other partitions (and other records of the same partition) are answered. Each attempt is
bounded; failures back off exponentially up to a cap. The record is not acked meanwhile: the
partition's commit waits behind it and a crash delivers it again, so nothing is lost.

Past ``give_up_s`` the caller logs the record's coordinates at ERROR, counts it
(``tokenwire_worker_writes_given_up_total``) and acks it. Holding the commit hostage for longer
would turn one broken topic (a deleted DLQ, a refused name) into an ever-growing re-delivery
debt; the record itself stays on ``chat.requests`` for its retention, so an operator can re-drive
it from the coordinates (``tokenwire replay verify`` also reports a rejected record missing
from the DLQ).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from tokenwire.settings import Settings

log = logging.getLogger(__name__)

BASE_DELAY_S = 0.5
_MAX_EXPONENT = 30


@dataclass(frozen=True)
class WriteRetry:
    attempt_timeout_s: float
    max_delay_s: float
    give_up_s: float

    @classmethod
    def from_settings(cls, settings: Settings) -> WriteRetry:
        return cls(
            settings.worker_write_attempt_timeout_s,
            settings.worker_write_retry_max_delay_s,
            settings.worker_write_give_up_s,
        )

    def delay_s(self, failures: int) -> float:
        return min(self.max_delay_s, BASE_DELAY_S * 2 ** min(failures - 1, _MAX_EXPONENT))

    async def run(
        self,
        write: Callable[[], Awaitable[object]],
        *,
        what: str,
        on_failure: Callable[[], object] | None = None,
    ) -> bool:
        """Run ``write`` until it succeeds (True) or the give-up bound passes (False).

        Cancellation (revocation, shutdown) is not a failure: it propagates at once.
        """
        deadline = time.monotonic() + self.give_up_s
        failures = 0
        while True:
            try:
                async with asyncio.timeout(self.attempt_timeout_s):
                    await write()
            except Exception as exc:
                failures += 1
                delay = self.delay_s(failures)
                log.error(
                    "write failed what=%s failures=%s retry_in_s=%.1f error=%r",
                    what, failures, delay, exc,
                )
                if on_failure is not None:
                    on_failure()
                if time.monotonic() + delay > deadline:
                    return False
                await asyncio.sleep(delay)
                continue
            if failures:
                log.warning("write landed after failures what=%s failures=%s", what, failures)
            return True
