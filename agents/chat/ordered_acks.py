"""Acks records to Faust strictly in offset order, per partition.

Faust commits "the first run of consecutive acked offsets". When a group has no committed offset
yet, it does not check that this run starts at the first delivered record, so acking offset 3
while 0-2 are still being generated commits 4 and a crash loses 0-2 (the failure behind
faust-streaming #606). Holding a finished record back until every earlier record of its
partition has finished means Faust only ever sees a gap-free prefix.
"""

from __future__ import annotations

from collections import OrderedDict

import faust
from aiokafka import TopicPartition


class OrderedAcks:
    def __init__(self) -> None:
        # Per partition, in delivery order: offset -> (event, finished?)
        self._open: dict[TopicPartition, OrderedDict[int, tuple[faust.EventT, bool]]] = {}

    def track(self, tp: TopicPartition, offset: int, event: faust.EventT) -> None:
        """Call for every record as it is taken, in the order the stream delivers them."""
        self._open.setdefault(tp, OrderedDict())[offset] = (event, False)

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
            await stream.ack(event)

    def forget(self, partitions: set[TopicPartition]) -> None:
        for tp in partitions:
            self._open.pop(tp, None)
