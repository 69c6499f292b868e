"""The edge's hub for the ``shared`` session layout (tokenwire/session_log.py).

Every session lives in a partition of ``chat.sessions``, keyed by its id; an SSE id is
``<epoch>-<offset>``, the topic's generation and the event's offset in that partition. The hub has
the interface of ``SessionHub`` (api/session_hub.py), so streams and resume are the same code in
both layouts; what differs is how records reach a session's feed:

- Live: one follower consumer (long polls) is assigned the partitions that have (had) readers,
  always at their head; each keeps its newest records (``sse_shared_recent_records``), which
  fill a new stream of a session active a moment ago (a stream opened just after its POST).
  Each fetched record is routed by key to its session's feed, and one fetch serves
  every session of a partition. The live position never moves back, so no reader can hold up
  another session's stream: a reader whose events fall out of its feed's cache is closed as slow
  (it resumes with Last-Event-ID) instead of pausing the partition.
- History: a reader that starts below the live position (a new stream of an old session, a
  resume) has its feed filled by a backfill of its own: a short-lived consumer that reads the
  partition from the reader's position up to where live delivery began for that feed, keeping
  the session's records. Live records that arrive meanwhile wait in the feed (bounded), so the
  feed is exact: every record of the session, once, in order. Backfills run a few at a time
  (``BACKFILL_SLOTS``) and between the session's requests seek straight to the next request's
  start, which ``chat.sessions.index`` tells (tokenwire/session_index.py): an old session is
  read near its own events, not from its partition's start.
- Beginning: a session's history begins at its first request's start in the index. The index is
  read up to its end first, and the worker writes a request's start (acknowledged) before the
  request's first event, so a session the index does not name has no event yet: its stream
  starts at the partition's end.
- Generations: the topic's id gives the epoch; a re-created ``chat.sessions`` ends every stream
  (its readers resume from the new beginning), as a re-created session topic does in ``topic``.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import time
from collections import deque
from operator import attrgetter

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from api.consumer_supervision import Supervision
from api.event_ids import epoch_of
from api.metrics import EdgeMetrics
from api.session_entries import decode_entry
from api.session_feed import (
    CLOSED_RECREATED,
    CLOSED_SHUTDOWN,
    CLOSED_SLOW,
    Entry,
    SessionFeed,
    Subscription,
)
from api.session_hub import (
    ASSIGNED_RECHECK_S,
    CLOSE_TIMEOUT_S,
    LEARN_LEADERS_TIMEOUT_S,
    LOOKUP_IDLE_S,
    MAX_OFFSET,
    MAX_RECORDS,
    METADATA_TIMEOUT_S,
    PENDING_RECHECK_S,
    POLL_MS,
    Generation,
)
from api.terminal_index import TerminalIndex
from schemas.session_events import TERMINAL_TYPES
from tokenwire.kafka_clients import (
    learn_leaders,
    new_consumer,
    new_follower,
    stop_consumer,
    wake_fetch,
)
from tokenwire.session_index import IndexReader, IndexTable
from tokenwire.session_log import partition_of
from tokenwire.settings import Settings
from tokenwire.topic_metadata import TopicMetadata

log = logging.getLogger(__name__)

BACKFILL_SLOTS = 4
BACKFILL_FETCH_MS = 500
# Fetches of a history read are smaller than a consumer's default (1 MiB): between a session's
# requests it seeks over other sessions' records rather than fetching them.
BACKFILL_FETCH_BYTES = 256 * 1024
# A backfill whose feed is full waits for its readers this often, up to sse_send_timeout_s.
BACKFILL_FULL_WAIT_S = 0.05
INDEX_TIMEOUT_S = 15.0


class PartitionState:
    """One followed partition: its live position (None until the loop has sought it), the feeds
    of its sessions by key, and its newest records (every session's, from ``recent_from`` on),
    from which a new stream of a session active a moment ago is filled without a backfill."""

    def __init__(self, tp: TopicPartition, recent: int) -> None:
        self.tp = tp
        self.live_next: int | None = None
        self.feeds: dict[bytes, SharedFeed] = {}
        self.recent: deque[ConsumerRecord] = deque()
        self.recent_capacity = recent
        self.recent_from: int | None = None

    def seek_to(self, offset: int) -> None:
        self.live_next = self.recent_from = offset
        self.recent.clear()

    def remember(self, record: ConsumerRecord) -> None:
        self.recent.append(record)
        if len(self.recent) > self.recent_capacity:
            self.recent_from = self.recent.popleft().offset + 1

    def recent_of(self, key: bytes, start: int) -> list[ConsumerRecord] | None:
        """The session's records from ``start`` up to the live position, if all are at hand."""
        if self.recent_from is None or start < self.recent_from:
            return None
        return [r for r in self.recent if r.offset >= start and r.key == key]


class SharedFeed(SessionFeed):
    """A session's feed in a shared partition: complete from ``base`` to ``next_offset`` for the
    session's key. Live once its history reached ``join``; until then filled by its backfill,
    live records past ``join`` waiting in ``ahead``."""

    def __init__(self, session_id: str, capacity: int, start: int, part: PartitionState) -> None:
        self._next = start
        super().__init__(session_id, capacity, start)
        self.session_id = session_id
        self.part = part
        self.live = False
        self.join: int | None = None
        self.ahead: list[Entry] = []
        self.backfill: asyncio.Task[None] | None = None

    @property  # type: ignore[override]
    def next_offset(self) -> int:
        if self.live and self.part.live_next is not None:
            return max(self._next, self.part.live_next)
        return self._next

    @next_offset.setter
    def next_offset(self, value: int) -> None:
        self._next = value

    def unread(self, sub: Subscription) -> int:
        """Entries at or after the reader's cursor (offsets are sparse in a shared partition)."""
        behind = bisect.bisect_left(self.entries, sub.cursor, key=attrgetter("offset"))
        return len(self.entries) - behind


class SharedSessionHub:
    def __init__(self, settings: Settings, metrics: EdgeMetrics, *, client_id: str) -> None:
        self._settings = settings
        self._metrics = metrics
        self._client_id = client_id
        self._topic = settings.sessions_topic
        self._partitions_total = settings.requests_partitions
        self._consumer: AIOKafkaConsumer | None = None
        self._metadata = TopicMetadata(settings.kafka_connection, client_id=f"{client_id}-metadata")
        self.index = IndexTable(settings.session_index_remembered)
        self._index = IndexReader(
            settings.kafka_connection, settings.sessions_index_topic, self.index,
            client_id=f"{client_id}-index",
        )  # fmt: skip
        self._task: asyncio.Task[None] | None = None
        self._feeds: dict[str, SharedFeed] = {}
        self._unread: set[SharedFeed] = set()
        self._parts: dict[int, PartitionState] = {}
        self._assigned: set[TopicPartition] = set()
        self._epoch: str | None = None
        self._changed = asyncio.Event()
        self._next_metadata_check = 0.0
        self._terminals = TerminalIndex(settings.sse_terminal_index_size)
        self._backfill_slots = asyncio.Semaphore(BACKFILL_SLOTS)
        self._closed = False
        self._supervision = Supervision("shared session hub")
        self.consumers_created = 0
        self.backfills_run = 0
        self.recent_fills = 0
        # Records history reads fetched (every session's): how near to its events they seek.
        self.history_records_read = 0

    # --- lifecycle ----------------------------------------------------------------------
    async def start(self) -> None:
        try:
            await self._metadata.start()
            await self._start_consumer()
        except BaseException:
            await self._metadata.close()
            raise
        self._task = asyncio.create_task(self._run(), name="tokenwire-shared-session-hub")
        log.info("shared session hub started client_id=%s topic=%s", self._client_id, self._topic)

    async def stop(self) -> None:
        self.drain()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for feed in list(self._feeds.values()):
            self._cancel_backfill(feed)
        if self._consumer is not None:
            await stop_consumer(self._consumer, timeout_s=CLOSE_TIMEOUT_S)
            self._consumer = None
        await self._index.close()
        await self._metadata.close()
        log.info("shared session hub stopped client_id=%s", self._client_id)

    async def _start_consumer(self) -> None:
        consumer = new_follower(self._settings.kafka_connection, client_id=self._client_id)
        self.consumers_created += 1
        try:
            await consumer.start()
        except BaseException:
            await stop_consumer(consumer, timeout_s=CLOSE_TIMEOUT_S)
            raise
        self._consumer = consumer
        self._supervision.started()

    def drain(self) -> None:
        self._closed = True
        for feed in self._feeds.values():
            feed.close_all(CLOSED_SHUTDOWN)
        self._changed.set()

    # --- readers ------------------------------------------------------------------------
    def subscribe(self, session_id: str, start: int, *, epoch: str | None = None) -> Subscription:
        """A reader of ``session_id`` from partition offset ``start``; ``leave()`` when done."""
        if not 0 <= start <= MAX_OFFSET:
            raise ValueError(f"start must be an offset in [0, {MAX_OFFSET}]")
        sub = Subscription(session_id, start, self._leave, epoch=epoch)
        if self._closed:
            sub.close(CLOSED_SHUTDOWN)
            return sub
        if epoch is not None and self._epoch not in (None, epoch):
            sub.close(CLOSED_RECREATED)
            return sub
        feed = self._feeds.get(session_id)
        if feed is None:
            partition = partition_of(session_id, self._partitions_total)
            part = self._parts.get(partition)
            if part is None:
                part = PartitionState(
                    TopicPartition(self._topic, partition), self._settings.sse_shared_recent_records
                )
                self._parts[partition] = part
            feed = self._feeds[session_id] = SharedFeed(
                session_id, self._settings.session_cache_events, start, part
            )
            part.feeds[session_id.encode()] = feed
            self._activate(feed)
            if part.live_next is not None:
                self._join(feed)
        elif start < feed.base:
            log.info("rewinding shared feed session=%s from=%d to=%d", session_id, feed.base, start)
            self._rewind(feed, start)
        sub.feed = feed
        feed.subscribers.add(sub)
        self._changed.set()
        return sub

    def _leave(self, sub: Subscription) -> None:
        feed = sub.feed
        if feed is not None:
            feed.subscribers.discard(sub)
            if not feed.subscribers:
                self._unread.add(feed)
                self._changed.set()

    def _activate(self, feed: SharedFeed) -> None:
        if self._epoch is not None and not feed.active:
            for sub in feed.activate(self._epoch):
                log.info("closing reader of another generation session=%s", sub.session_id)
            feed.wake_all()

    def _join(self, feed: SharedFeed) -> None:
        """Live delivery to ``feed`` starts at its partition's live position; below that, its
        history is backfilled."""
        part = feed.part
        assert part.live_next is not None
        feed.join = part.live_next
        if feed.next_offset < feed.join and not self._fill_from_recent(feed):
            self._start_backfill(feed)
            return
        feed.live = True

    def _fill_from_recent(self, feed: SharedFeed) -> bool:
        """Fill ``feed`` up to its join point from the partition's newest records, if they
        reach back to where it starts (the common case: a stream opened just after its POST)."""
        assert feed.join is not None and self._epoch is not None
        records = feed.part.recent_of(feed.session_id.encode(), feed.next_offset)
        if records is None:
            return False
        where = f"session={feed.session_id}"
        entries = [e for r in records
                   if (e := decode_entry(self._epoch, r.offset, r.value, where=where,
                                         headers=r.headers, timestamp_ms=r.timestamp))]
        self._terminals.remember(feed.session_id, self._epoch, entries)
        self._append(feed, entries)  # before the position moves: appends go by it
        feed.next_offset = max(feed.next_offset, feed.join)
        self.recent_fills += 1
        return True

    def _rewind(self, feed: SharedFeed, start: int) -> None:
        self._cancel_backfill(feed)
        feed.entries.clear()
        feed.base = start
        feed.next_offset = start
        if feed.join is None:
            return  # not joined yet: it will be from ``start``
        if feed.live:
            feed.live = False
            feed.join = feed.part.live_next
            feed.ahead = []
            if self._fill_from_recent(feed):
                feed.live = True
                return
        self._start_backfill(feed)

    def known_terminal(self, session_id: str, request_id: str, epoch: str) -> int | None:
        return self._terminals.get(session_id, request_id, epoch)

    async def beginning(self, session_id: str, *, timeout_s: float = INDEX_TIMEOUT_S) -> int:
        """Where ``session_id``'s history begins: its first request's start in the index, else
        the partition's end (the session has no event yet), else the partition's start when the
        index forgot sessions.

        The end is read before the index: a session with an event below that end had its
        request's start on the index before that event, so before the end was read, and the
        index read that follows finds it. (Read the other way round, a request that starts in
        between would be missed: its first events lie below the end.)
        """
        partition = partition_of(session_id, self._partitions_total)
        found = await self._metadata.end(self._topic, partition=partition, timeout_s=timeout_s)
        await self._index.catch_up([partition], timeout_s=timeout_s)
        first = self.index.session_start(session_id)
        if first is not None:
            return first
        if not self.index.complete:
            return 0
        return 0 if found is None else found.end

    async def find_terminal(
        self, session_id: str, request_id: str, *, upto: int, epoch: str | None, timeout_s: float
    ) -> int | None:
        """The offset of ``request_id``'s done/error event if it is at or before ``upto``."""
        known = None if epoch is None else self.known_terminal(session_id, request_id, epoch)
        if known is not None:
            return known if known <= upto else None
        start = self.index.request_start(request_id)
        if start is None:
            start = await self.beginning(session_id, timeout_s=timeout_s)
            start = self.index.request_start(request_id) or start
        if start > upto:
            return None
        sub = self.subscribe(session_id, start, epoch=epoch)
        try:
            async with asyncio.timeout(timeout_s):
                while sub.cursor <= upto:
                    async with asyncio.timeout(LOOKUP_IDLE_S):
                        entry = await sub.next(give_up_if_missing=True)
                    if entry is None or entry.offset > upto:
                        return None
                    if entry.request_id == request_id and entry.type in TERMINAL_TYPES:
                        return entry.offset
                    if sub.caught_up and sub.cursor > upto:
                        return None
        except TimeoutError:
            log.info("terminal lookup gave up session=%s upto=%d", session_id, upto)
        finally:
            sub.leave()
        return None

    async def generation(
        self, session_id: str, *, at_least: int, epoch: str | None, timeout_s: float
    ) -> Generation:
        """The shared topic's generation and where the session's partition ends."""
        partition = partition_of(session_id, self._partitions_total)
        part = self._parts.get(partition)
        if (
            part is not None
            and part.live_next is not None
            and self._epoch is not None
            and epoch in (None, self._epoch)
            and part.live_next >= at_least
        ):
            return Generation(self._epoch, part.live_next)
        found = await self._metadata.end(self._topic, partition=partition, timeout_s=timeout_s)
        if found is None:
            return Generation(None, 0)
        current = epoch_of(found.topic_id)
        if self._epoch is not None and current != self._epoch:
            self._new_generation(current)
        return Generation(current, found.end)

    # --- introspection ------------------------------------------------------------------
    def assigned_topics(self) -> set[str]:
        if self._consumer is None:
            return set()
        return {tp.topic for tp in self._consumer.assignment()}

    def session_topics(self) -> set[str]:
        """The sessions followed (their feeds), for readiness and tests."""
        return set(self._feeds)

    @property
    def ready(self) -> bool:
        return self.running and self._consumer_broken() is None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def existing_topics(self, topics: list[str], timeout_s: float) -> set[str]:
        if not self.running:
            raise RuntimeError("session hub is not running")
        return await self._metadata.existing(topics, timeout_s=timeout_s)

    # --- the loop -----------------------------------------------------------------------
    async def _run(self) -> None:
        await self._supervision.run(self._step, self._replace_consumer, lambda: self._consumer)

    def _consumer_broken(self) -> str | None:
        return self._supervision.broken(self._consumer)

    async def _replace_consumer(self, why: str) -> None:
        old, self._consumer = self._consumer, None
        self._assigned = set()
        delay = self._supervision.next_restart_delay()
        self._metrics.hub_consumer_restarts.inc()
        log.warning("replacing the shared session hub consumer why=%s in_s=%.2f", why, delay)
        if old is not None:
            await stop_consumer(old, timeout_s=CLOSE_TIMEOUT_S)
        await asyncio.sleep(delay)
        await self._start_consumer()

    async def _step(self) -> None:
        assert self._consumer is not None
        self._changed.clear()
        await self._refresh_epoch()
        self._release_unread()
        await self._seek_new_partitions()
        if not self._assigned:
            await self._idle()
            return
        batch = await self._consumer.getmany(timeout_ms=POLL_MS, max_records=MAX_RECORDS)
        for tp, records in batch.items():
            self._deliver(tp, records)

    async def _idle(self) -> None:
        timeout = ASSIGNED_RECHECK_S if self._epoch is not None else PENDING_RECHECK_S
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._changed.wait()

    async def _refresh_epoch(self) -> None:
        now = time.monotonic()
        if now < self._next_metadata_check or (not self._feeds and self._epoch is not None):
            return
        ids = await self._metadata.topic_ids([self._topic], timeout_s=METADATA_TIMEOUT_S)
        topic_id = ids.get(self._topic)
        current = None if topic_id is None else epoch_of(topic_id)
        if current is not None and current != self._epoch:
            if self._epoch is not None:
                self._new_generation(current)
            self._epoch = current
            for feed in self._feeds.values():
                self._activate(feed)
        self._next_metadata_check = now + (
            ASSIGNED_RECHECK_S if self._epoch is not None else PENDING_RECHECK_S
        )

    def _new_generation(self, epoch: str) -> None:
        """``chat.sessions`` was deleted and made again: no position of the old one is one in
        the new; every stream ends and its client resumes from the new beginning."""
        log.warning("shared sessions topic re-created topic=%s epoch=%s", self._topic, epoch)
        for feed in list(self._feeds.values()):
            feed.close_all(CLOSED_RECREATED)
            self._drop(feed)
        self._epoch = epoch
        self._parts.clear()  # positions of the old topic: partitions are sought afresh
        self._terminals = TerminalIndex(self._settings.sse_terminal_index_size)
        self._changed.set()

    def _release_unread(self) -> None:
        """Drop feeds whose last reader left (only those: a step costs nothing per session)."""
        unread, self._unread = self._unread, set()
        for feed in unread:
            if not feed.subscribers:
                self._drop(feed)

    def _drop(self, feed: SharedFeed) -> None:
        self._cancel_backfill(feed)
        if self._feeds.get(feed.session_id) is feed:
            del self._feeds[feed.session_id]
        # The partition stays followed (at most N of them): its newest records are what the
        # next new stream of one of its sessions is filled from.
        feed.part.feeds.pop(feed.session_id.encode(), None)

    async def _seek_new_partitions(self) -> None:
        """Assign the partitions that have feeds; a new one starts at its end, and its feeds join
        there (backfilling what they want below it)."""
        assert self._consumer is not None
        if self._epoch is None:
            return
        new = [part for part in self._parts.values() if part.live_next is None]
        if new:
            tps = [part.tp for part in new]
            await learn_leaders(self._consumer, tps, timeout_s=LEARN_LEADERS_TIMEOUT_S)
            ends = await self._metadata_ends(tps)
            for part in new:
                part.seek_to(ends[part.tp])
        # Partitions that got feeds during the awaits above are sought at the next step.
        ready = [part for part in self._parts.values() if part.live_next is not None]
        desired = {part.tp for part in ready}
        if desired != self._assigned:
            if desired:
                self._consumer.assign(sorted(desired))
                # assign() forgets positions: each partition goes on from where it was delivered.
                for part in ready:
                    assert part.live_next is not None
                    self._consumer.seek(part.tp, part.live_next)
                wake_fetch(self._consumer)
            else:
                self._consumer.unsubscribe()
            self._assigned = desired
            log.info("shared session hub assignment partitions=%d sessions=%d",
                     len(desired), len(self._feeds))
        self._metrics.hub_sessions.set(len(self._feeds))
        for part in new:
            for feed in list(part.feeds.values()):
                if feed.join is None and part.live_next is not None:
                    self._join(feed)

    async def _metadata_ends(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        ends = {}
        for tp in tps:
            found = await self._metadata.end(
                tp.topic, partition=tp.partition, timeout_s=METADATA_TIMEOUT_S
            )
            ends[tp] = 0 if found is None else found.end
        return ends

    def _deliver(self, tp: TopicPartition, records: list[ConsumerRecord]) -> None:
        part = self._parts.get(tp.partition)
        if part is None or part.live_next is None or self._epoch is None or not records:
            return
        touched: set[SharedFeed] = set()
        for record in records:
            if record.offset < part.live_next:
                continue  # fetched before a seek
            part.remember(record)
            feed = part.feeds.get(record.key) if record.key is not None else None
            if feed is None:
                continue
            entry = decode_entry(
                self._epoch, record.offset, record.value, where=f"session={feed.session_id}",
                headers=record.headers, timestamp_ms=record.timestamp,
            )  # fmt: skip
            if entry is None:
                continue
            self._terminals.remember(feed.session_id, self._epoch, (entry,))
            if feed.live:
                self._append(feed, [entry])
                touched.add(feed)
            elif len(feed.ahead) < feed.capacity:
                feed.ahead.append(entry)
            else:
                # History is taking longer than the cache lasts: start again from a resume.
                for sub in list(feed.subscribers):
                    self._close_slow(feed, sub, why="history backfill fell behind live")
        part.live_next = max(part.live_next, records[-1].offset + 1)
        for feed in touched:
            for sub in [s for s in feed.subscribers if s.caught_up]:
                if feed.unread(sub) > self._settings.sse_client_buffer:
                    self._close_slow(feed, sub, why="backlog over sse_client_buffer")
            feed.wake_all()

    def _append(self, feed: SharedFeed, entries: list[Entry]) -> None:
        pending = [(entry.offset, entry) for entry in entries]
        stopped_at = feed.append(pending)
        if stopped_at is not None:
            # Full, and its oldest entry still wanted: the live partition does not wait for one
            # reader; the readers holding the head are closed and resume with Last-Event-ID.
            for sub in feed.readers_at_head():
                self._close_slow(feed, sub, why="cache full at its head")
            feed.append([(o, e) for o, e in pending if o >= stopped_at])

    def _close_slow(self, feed: SharedFeed, sub: Subscription, *, why: str) -> None:
        feed.subscribers.discard(sub)
        sub.close(CLOSED_SLOW)
        self._metrics.slow_client_closes.inc()
        log.info(
            "closing slow client session=%s cursor=%d why=%s", feed.session_id, sub.cursor, why
        )

    # --- backfills ----------------------------------------------------------------------
    def _start_backfill(self, feed: SharedFeed) -> None:
        self._cancel_backfill(feed)
        feed.backfill = asyncio.create_task(self._backfill(feed), name="tokenwire-backfill")

    def _cancel_backfill(self, feed: SharedFeed) -> None:
        task, feed.backfill = feed.backfill, None
        if task is not None and not task.done():
            task.cancel()

    async def _backfill(self, feed: SharedFeed) -> None:
        try:
            async with self._backfill_slots:
                self.backfills_run += 1
                await self._read_history(feed)
            self._go_live(feed)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("session history backfill failed session=%s error=%r", feed.session_id, exc)
            for sub in list(feed.subscribers):
                self._close_slow(feed, sub, why="history backfill failed")

    async def _read_history(self, feed: SharedFeed) -> None:
        assert feed.join is not None and self._epoch is not None
        tp, key, join = feed.part.tp, feed.session_id.encode(), feed.join
        await self._index.catch_up([tp.partition], timeout_s=INDEX_TIMEOUT_S)
        starts = self.index.starts(feed.session_id) if self.index.complete else None
        consumer = new_consumer(
            self._settings.kafka_connection, client_id=f"{self._client_id}-history",
            max_partition_fetch_bytes=BACKFILL_FETCH_BYTES,
        )
        await consumer.start()
        try:
            consumer.assign([tp])
            first = (await consumer.beginning_offsets([tp]))[tp]
            position = max(feed.next_offset, first)
            ended: set[str] = set()
            position = _next_useful(starts, ended, position, join)
            feed.next_offset = max(feed.next_offset, position)
            consumer.seek(tp, min(position, MAX_OFFSET))
            while position < join:
                batch = await consumer.getmany(tp, timeout_ms=BACKFILL_FETCH_MS)
                fetched = batch.get(tp, [])
                self.history_records_read += len(fetched)
                records = [r for r in fetched if position <= r.offset < join]
                if not records:
                    position = max(position, min(await consumer.position(tp), join))
                    feed.next_offset = max(feed.next_offset, position)
                    continue
                entries = []
                for record in records:
                    if record.key != key:
                        continue
                    entry = decode_entry(self._epoch, record.offset, record.value,
                                         where=f"session={feed.session_id}",
                                         headers=record.headers, timestamp_ms=record.timestamp)
                    if entry is not None:
                        entries.append(entry)
                        if entry.type in TERMINAL_TYPES:
                            ended.add(entry.request_id)
                await self._append_history(feed, entries)
                position = records[-1].offset + 1
                feed.next_offset = max(feed.next_offset, position)
                feed.wake_all()
                skip_to = _next_useful(starts, ended, position, join)
                if skip_to > position:
                    position = skip_to
                    feed.next_offset = max(feed.next_offset, position)
                    consumer.seek(tp, position)
        finally:
            await stop_consumer(consumer)

    async def _append_history(self, feed: SharedFeed, entries: list[Entry]) -> None:
        self._terminals.remember(feed.session_id, feed.epoch or "", entries)
        pending = [(e.offset, e) for e in entries]
        waited = 0.0
        while pending:
            stopped_at = feed.append(pending)
            if stopped_at is None:
                return
            pending = [(o, e) for o, e in pending if o >= stopped_at]
            feed.wake_all()
            if waited >= self._settings.sse_send_timeout_s:
                for sub in feed.readers_at_head():
                    self._close_slow(feed, sub, why="stalled at cache head")
                waited = 0.0
                continue
            await asyncio.sleep(BACKFILL_FULL_WAIT_S)
            waited += BACKFILL_FULL_WAIT_S

    def _go_live(self, feed: SharedFeed) -> None:
        """History reached ``join``: the live records that waited follow it, then live ones."""
        assert feed.join is not None
        feed.next_offset = max(feed.next_offset, feed.join)
        ahead, feed.ahead = feed.ahead, []
        self._append(feed, ahead)  # before going live: appends go by the feed's own position
        feed.live = True
        feed.backfill = None
        feed.wake_all()


def _next_useful(
    starts: list[tuple[int, str]] | None, ended: set[str], position: int, join: int
) -> int:
    """Where the session's next record below ``join`` can be, from ``position`` on.

    ``starts``: the session's requests from the index, by offset (None: the index may have
    forgotten some, read everything). A request started at or before ``position`` whose terminal
    event was not read may have records right here; when none is, nothing of the session lies
    before the next request's start.
    """
    if starts is None:
        return position
    for offset, request_id in starts:
        if request_id in ended:
            continue
        return position if offset <= position else min(offset, join)
    return join
