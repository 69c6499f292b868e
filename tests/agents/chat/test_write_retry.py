"""Writes that must land are retried with backoff and given up only past their bound."""

from __future__ import annotations

import asyncio

import pytest

from agents.chat.write_retry import WriteRetry

FAST = WriteRetry(attempt_timeout_s=0.2, max_delay_s=0.01, give_up_s=5.0)


class FlakyWrite:
    """Fails its first ``failures`` calls the way a refused send does, then lands."""

    def __init__(self, failures: int) -> None:
        self.failures, self.calls = failures, 0

    async def __call__(self) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            raise ConnectionError("broker said no")


async def test_a_failing_write_is_retried_until_it_lands() -> None:
    write, noticed = FlakyWrite(failures=3), []

    assert await FAST.run(write, what="test", on_failure=lambda: noticed.append(1))
    assert write.calls == 4 and len(noticed) == 3


async def test_a_write_that_never_lands_is_given_up_after_the_bound() -> None:
    bounded = WriteRetry(attempt_timeout_s=0.2, max_delay_s=0.01, give_up_s=0.1)
    write = FlakyWrite(failures=10**6)

    assert not await bounded.run(write, what="test")
    assert write.calls > 1


async def test_an_attempt_that_hangs_counts_as_a_failure() -> None:
    calls = 0

    async def hangs_once() -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            await asyncio.Event().wait()

    assert await FAST.run(hangs_once, what="test")
    assert calls == 2


async def test_the_backoff_doubles_up_to_its_cap() -> None:
    policy = WriteRetry(attempt_timeout_s=1, max_delay_s=3, give_up_s=60)
    assert [policy.delay_s(n) for n in (1, 2, 3, 4, 100)] == [0.5, 1.0, 2.0, 3.0, 3.0]


async def test_cancellation_is_not_a_failure() -> None:
    task = asyncio.create_task(FAST.run(asyncio.Event().wait, what="test"))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
