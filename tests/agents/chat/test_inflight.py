"""The worker's pending work: session order, slots only for the running one, bounded, owned."""

from __future__ import annotations

import asyncio

from aiokafka import TopicPartition

from agents.chat.inflight import InflightRequests
from tests.fixtures.waiting import eventually

P0, P1 = TopicPartition("requests", 0), TopicPartition("requests", 1)


class Script:
    """Works that note when they run and hold their slot until told to finish."""

    def __init__(self, inflight: InflightRequests) -> None:
        self.inflight = inflight
        self.ran: list[str] = []
        self.release: dict[str, asyncio.Event] = {}

    async def start(self, name: str, session: str, tp: TopicPartition = P0) -> asyncio.Task[None]:
        release = self.release[name] = asyncio.Event()

        async def work() -> None:
            async with self.inflight.slot():
                self.ran.append(name)
                await release.wait()

        await self.inflight.admit()
        return self.inflight.start(tp, work, session_id=session)


async def test_a_session_waiting_for_its_turn_holds_no_slot() -> None:
    script = Script(InflightRequests(concurrency=2, max_pending=10))
    for i in range(3):
        await script.start(f"a{i}", "busy")
    await script.start("b", "other")

    await eventually(lambda: "b" in script.ran)
    assert script.ran == ["a0", "b"]  # a1 and a2 wait for a0 without a slot
    await script.inflight.cancel()


async def test_requests_of_one_session_run_one_at_a_time_in_order() -> None:
    script = Script(InflightRequests(concurrency=4, max_pending=10))
    tasks = [await script.start(f"a{i}", "s") for i in range(3)]
    for i in range(3):
        await eventually(lambda i=i: script.ran == [f"a{j}" for j in range(i + 1)])
        script.release[f"a{i}"].set()
    await asyncio.gather(*tasks)
    assert script.inflight.backlog("s") == 0 and len(script.inflight) == 0


async def test_the_agent_is_held_at_the_pending_cap_until_a_work_finishes() -> None:
    inflight = InflightRequests(concurrency=1, max_pending=2)
    script = Script(inflight)
    await script.start("a", "s1")
    await script.start("b", "s2")

    third = asyncio.create_task(inflight.admit())
    await asyncio.sleep(0)
    assert not third.done()
    script.release["a"].set()
    await asyncio.wait_for(third, 5)
    await inflight.cancel()


async def test_cancelling_a_partition_cancels_its_queued_and_running_works_only() -> None:
    script = Script(InflightRequests(concurrency=2, max_pending=10))
    running = await script.start("a0", "s", P0)
    queued = await script.start("a1", "s", P0)
    elsewhere = await script.start("b", "t", P1)
    await eventually(lambda: "b" in script.ran)

    await script.inflight.cancel({P0})

    assert running.cancelled() and queued.cancelled() and not elsewhere.done()
    assert script.inflight.backlog("s") == 0
    script.release["b"].set()
    await elsewhere
    assert len(script.inflight) == 0
