"""Where requests' events begin in the shared session layout, read from ``chat.sessions.index``.

``IndexTable`` holds request starts (schemas/session_index.py) by session, bounded: the sessions
least recently written are forgotten first, and once any is forgotten a miss no longer proves
that a session has no events (``IndexTable.complete`` says which). ``IndexReader`` brings a table
up to the end of the index partitions it is asked about, with one consumer of its own: a lookup
made after a request's start was acknowledged always finds it, because the worker has it
acknowledged before the request's first event is written.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
from collections import OrderedDict

from aiokafka import AIOKafkaConsumer, TopicPartition
from pydantic import ValidationError

from schemas.session_index import RequestStart, parse_index_record
from tokenwire.kafka_clients import new_consumer, stop_consumer
from tokenwire.kafka_settings import KafkaConnection

log = logging.getLogger(__name__)

READ_TIMEOUT_MS = 200


class IndexTable:
    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self._capacity = capacity
        # session → [(offset, request_id)] sorted by offset; request → (session, offset).
        self._sessions: OrderedDict[str, list[tuple[int, str]]] = OrderedDict()
        self._requests: dict[str, tuple[str, int]] = {}
        self.forgot_any = False

    def __len__(self) -> int:
        return len(self._sessions)

    def add(self, start: RequestStart) -> None:
        """Remember a request's start; a request seen twice keeps its lowest offset."""
        known = self._requests.get(start.request_id)
        if known is not None and known[1] <= start.offset:
            return
        starts = self._sessions.setdefault(start.session_id, [])
        if known is not None:
            with contextlib.suppress(ValueError):
                starts.remove((known[1], start.request_id))
        bisect.insort(starts, (start.offset, start.request_id))
        self._requests[start.request_id] = (start.session_id, start.offset)
        self._sessions.move_to_end(start.session_id)
        while len(self._sessions) > self._capacity:
            _, dropped = self._sessions.popitem(last=False)
            for _, request_id in dropped:
                self._requests.pop(request_id, None)
            self.forgot_any = True

    def session_start(self, session_id: str) -> int | None:
        starts = self._sessions.get(session_id)
        return starts[0][0] if starts else None

    def request_start(self, request_id: str) -> int | None:
        known = self._requests.get(request_id)
        return None if known is None else known[1]

    def starts(self, session_id: str) -> list[tuple[int, str]]:
        """The session's requests as (lower bound of first event, request id), in log order."""
        return list(self._sessions.get(session_id, ()))

    @property
    def complete(self) -> bool:
        """True while nothing was forgotten: a session the table does not know has no event."""
        return not self.forgot_any


class IndexReader:
    """Reads index partitions into ``table``, each from its beginning, up to its end on demand."""

    def __init__(
        self, kafka: KafkaConnection, topic: str, table: IndexTable, *, client_id: str
    ) -> None:
        self._kafka = kafka
        self._topic = topic
        self.table = table
        self._client_id = client_id
        self._consumer: AIOKafkaConsumer | None = None
        self._positions: dict[TopicPartition, int] = {}
        self._lock = asyncio.Lock()
        self._wanted: set[int] = set()
        self._round: asyncio.Task[None] | None = None
        self._rounds_started = 0
        self._rounds_done = 0

    async def close(self) -> None:
        if self._round is not None:
            self._round.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._round
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await stop_consumer(consumer)

    async def catch_up(self, partitions: list[int], *, timeout_s: float) -> None:
        """Read ``partitions`` up to their end as of now. Raises ``TimeoutError`` past
        ``timeout_s``; what was read stays in the table, and the next call goes on from there.

        Each caller needs a read that begins after its call; callers that arrive while a read
        runs share the next one, so a burst of new streams costs a few reads, not one each.
        """
        self._wanted.update(partitions)
        needed = self._rounds_started + 1
        async with asyncio.timeout(timeout_s):
            while self._rounds_done < needed:
                if self._round is None or self._round.done():
                    self._rounds_started += 1
                    self._round = asyncio.create_task(
                        self._read_round(self._rounds_started), name="tokenwire-index-read"
                    )
                await asyncio.shield(self._round)

    @property
    def reads(self) -> int:
        """How many reads up to the end were made (shared by the callers that waited for them)."""
        return self._rounds_started

    async def _read_round(self, number: int) -> None:
        async with self._lock:
            consumer = await self._started()
            wanted = [TopicPartition(self._topic, p) for p in sorted(self._wanted)]
            if not set(wanted) <= set(self._positions):
                for tp in wanted:
                    self._positions.setdefault(tp, 0)
                # assign() forgets positions: every partition is sought to where it was read to.
                consumer.assign(sorted(self._positions))
                for tp, position in self._positions.items():
                    consumer.seek(tp, position)
            ends = await consumer.end_offsets(wanted)
            behind = {tp for tp in wanted if self._positions[tp] < ends[tp]}
            while behind:
                batch = await consumer.getmany(*behind, timeout_ms=READ_TIMEOUT_MS)
                for records in batch.values():
                    for record in records:
                        self._take(record.value)
                for tp in list(behind):
                    self._positions[tp] = await consumer.position(tp)
                    if self._positions[tp] >= ends[tp]:
                        behind.discard(tp)
            self._rounds_done = max(self._rounds_done, number)

    async def _started(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            consumer = new_consumer(self._kafka, client_id=self._client_id)
            await consumer.start()
            self._consumer = consumer
        return self._consumer

    def _take(self, raw: bytes | None) -> None:
        if raw is None:
            return  # a tombstone: nothing to index
        try:
            self.table.add(parse_index_record(raw))
        except (ValidationError, ValueError):
            log.warning("skipping a record that is not a request start topic=%s", self._topic)
