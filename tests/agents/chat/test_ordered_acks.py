"""Records are acked to Faust in offset order per partition, whatever order they finish in."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import faust
from aiokafka import TopicPartition

from agents.chat.ordered_acks import OrderedAcks

P0, P1 = TopicPartition("requests", 0), TopicPartition("requests", 1)


class AckLog:
    """The one call OrderedAcks makes on a Faust stream, recorded in order."""

    def __init__(self) -> None:
        self.acked: list[str] = []

    async def ack(self, event: str) -> bool:
        self.acked.append(event)
        return True


def tracked(*records: tuple[TopicPartition, int]) -> OrderedAcks:
    acks = OrderedAcks()
    for tp, offset in records:
        acks.track(tp, offset, cast(faust.EventT, f"{tp.partition}:{offset}"))
    return acks


async def test_a_record_finished_early_waits_for_the_ones_before_it() -> None:
    acks, log = tracked((P0, 0), (P0, 1), (P0, 2), (P0, 3)), AckLog()
    stream = cast(Any, log)

    await acks.finish(P0, 3, stream)
    await acks.finish(P0, 1, stream)
    assert log.acked == []  # 0 is still running: nothing may be committed yet

    await acks.finish(P0, 0, stream)
    assert log.acked == ["0:0", "0:1"]  # 2 still running holds 3 back

    await acks.finish(P0, 2, stream)
    assert log.acked == ["0:0", "0:1", "0:2", "0:3"]


async def test_partitions_do_not_hold_each_other_back() -> None:
    acks, log = tracked((P0, 5), (P1, 7)), AckLog()
    await acks.finish(P1, 7, cast(Any, log))
    assert log.acked == ["1:7"]


async def test_records_of_a_revoked_partition_are_never_acked() -> None:
    acks, log = tracked((P0, 0), (P0, 1)), AckLog()
    acks.forget({P0})
    await acks.finish(P0, 0, cast(Any, log))
    await acks.finish(P0, 1, cast(Any, log))
    assert log.acked == []


async def test_the_agent_waits_while_the_worker_holds_its_limit_of_unacked_records() -> None:
    acks, log = OrderedAcks(limit=2), AckLog()
    acks.track(P0, 0, cast(faust.EventT, "0:0"))
    acks.track(P0, 1, cast(faust.EventT, "0:1"))
    await acks.finish(P0, 1, cast(Any, log))  # finished, but held behind 0: still counted

    waiting = asyncio.create_task(acks.wait_for_room())
    await asyncio.sleep(0)
    assert not waiting.done() and len(acks) == 2

    await acks.finish(P0, 0, cast(Any, log))
    await asyncio.wait_for(waiting, 5)
    assert len(acks) == 0


async def test_forgetting_a_partition_frees_its_room() -> None:
    acks = tracked((P0, 0), (P0, 1), (P1, 0))
    acks.forget({P0})
    assert len(acks) == 1
