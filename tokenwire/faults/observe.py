"""What a fault did, seen from outside: token gaps at the clients, the worker group's state.

- Gap: the time between two tokens of one request as its client received them. The simulator
  sends a token every ``1 / tokens_per_s``; anything longer is the pipeline holding the stream.
- Group stable again: the worker group is watched (DescribeGroups every ``POLL_S``); after a
  fault, the time until it is ``Stable`` with all its workers after the last moment it was not
  (rebalancing, a member short, or its coordinator not answering). A fault the group never
  noticed counts as 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from tokenwire.faults.chats import ChatRecord
from tokenwire.kafka_clients import new_admin
from tokenwire.settings import Settings

log = logging.getLogger(__name__)

POLL_S = 0.1
DESCRIBE_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class GroupSample:
    at: float
    state: str
    members: int


@dataclass
class GroupWatch:
    settings: Settings
    members: int
    samples: list[GroupSample] = field(default_factory=list)
    _task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        group = self.settings.worker_id
        admin = new_admin(self.settings.kafka_connection, client_id=f"{group}-watch")
        await admin.start()
        try:
            while True:
                self.samples.append(await self._sample(admin, group))
                await asyncio.sleep(POLL_S)
        finally:
            await admin.close()

    @staticmethod
    async def _sample(admin: object, group: str) -> GroupSample:
        try:
            async with asyncio.timeout(DESCRIBE_TIMEOUT_S):
                described = await admin.describe_consumer_groups([group])  # type: ignore[attr-defined]
            entry = described[0].to_object()["groups"][0]
            return GroupSample(time.time(), entry["state"], len(entry["members"]))
        except Exception as exc:  # the coordinator moving: the group is not usable meanwhile
            return GroupSample(time.time(), f"unanswered ({type(exc).__name__})", 0)

    def stable_again_s(self, since: float) -> float | None:
        """Seconds from ``since`` until the group was whole again; None if it never was."""
        after = [s for s in self.samples if s.at >= since]
        last_unstable = None
        for sample in after:
            if not self._whole(sample):
                last_unstable = sample.at
        if last_unstable is None:
            return 0.0
        for sample in after:
            if sample.at > last_unstable and self._whole(sample):
                return sample.at - since
        return None

    def _whole(self, sample: GroupSample) -> bool:
        return sample.state == "Stable" and sample.members == self.members


@dataclass(frozen=True)
class Gaps:
    """Token gaps of the requests that were streaming while the fault happened."""

    requests: int
    longest_ms: float
    p50_of_longest_ms: float
    p99_of_longest_ms: float


def gaps_across(records: Iterable[ChatRecord], since: float, until: float) -> Gaps:
    """For every request with tokens on both sides of ``since`` or inside [since, until]."""
    longest: list[float] = []
    for record in records:
        times = sorted(record.token_times)
        if len(times) < 2 or times[-1] < since or times[0] > until:
            continue
        longest.append(max(b - a for a, b in itertools.pairwise(times)) * 1000.0)
    if not longest:
        return Gaps(0, 0.0, 0.0, 0.0)
    longest.sort()
    return Gaps(
        len(longest),
        round(longest[-1], 1),
        round(_quantile(longest, 0.5), 1),
        round(_quantile(longest, 0.99), 1),
    )


def _quantile(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]
