"""Acks records to Faust strictly in offset order, per partition.

Faust commits "the first run of consecutive acked offsets". When a group has no committed offset
yet, it does not check that this run starts at the first delivered record, so acking offset 3
while 0-2 are still being generated commits 4 and a crash loses 0-2 (the failure behind
faust-streaming #606). Holding a finished record back until every earlier record of its
partition has finished means Faust only ever sees a gap-free prefix.

Finished records held back this way are not pending work, so ``inflight``'s cap does not count
them; ``limit`` bounds them (with everything else not yet acked), for a head that takes long
(a request up to its timeout, a dead letter waiting for the DLQ).
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict

import faust
from aiokafka import TopicPartition

DEFAULT_LIMIT = 4096


class OrderedAcks:
    def __init__(self, limit: int = DEFAULT_LIMIT) -> None:
        self._limit = limit
        # Per partition, in delivery order: offset -> (event, finished?)
        self._open: dict[TopicPartition, OrderedDict[int, tuple[faust.EventT, bool]]] = {}
        self._count = 0
        self._room = asyncio.Event()
        self._room.set()

    def __len__(self) -> int:
        return self._count

    async def wait_for_room(self) -> None:
        """Wait while the worker holds ``limit`` records not acked yet."""
        while self._count >= self._limit:
            self._room.clear()
            await self._room.wait()

    def track(self, tp: TopicPartition, offset: int, event: faust.EventT) -> None:
        """Call for every record as it is taken, in the order the stream delivers them."""
        records = self._open.setdefault(tp, OrderedDict())
        if offset not in records:
            self._count += 1
        records[offset] = (event, False)

    async def finish(
        self, tp: TopicPartition, offset: int, stream: faust.StreamT
    ) -> None:
        """Mark a record finished; ack it and every finished record it was holding back."""
        records = self._open.get(tp)
        if records is None or offset not in records:
            return  # the partition was revoked meanwhile: the record will be delivered again
        records[offset] = (records[offset][0], True)
        while records:
            head, (event, finished) = next(iter(records.items()))
            if not finished:
                break
            del records[head]
            self._released(1)
            await stream.ack(event)

    def forget(self, partitions: set[TopicPartition]) -> None:
        for tp in partitions:
            self._released(len(self._open.pop(tp, ())))

    def _released(self, records: int) -> None:
        self._count -= records
        if self._count < self._limit:
            self._room.set()
