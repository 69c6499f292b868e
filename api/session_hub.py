"""One Kafka consumer per edge process, shared by every SSE connection.

The hub owns a single ``AIOKafkaConsumer`` (no group, manual ``assign()``) and one task, the
loop, that is the only caller of ``getmany``/``assign``/``seek``/``pause``. The assignment is
exactly the session topics that have readers. Records go into each session's ``SessionFeed``;
readers (``Subscription``) follow it at their own cursor.

- Resume: a reader that wants an offset below the cache's base rewinds the feed (the loop seeks
  the partition back); readers ahead of it wait for the re-read and filter by cursor.
- Flow control: a full cache whose oldest entry a reader still wants pauses the partition instead
  of evicting; a reader that holds such a pause longer than ``sse_send_timeout_s`` is closed.
- Slow readers: a live reader with more than ``sse_client_buffer`` events unread when new ones
  arrive is closed; its client resumes with Last-Event-ID, losing nothing.
- Release: when a session's last reader leaves, its partition is unassigned and its feed dropped.
- Deletion: a followed session topic gone from the metadata ends its readers' streams. Metadata is
  asked for the followed topics only (``TopicMetadata``), never for the whole cluster.
- Generations: the metadata names each topic's id, whose epoch (``api.event_ids``) is in every SSE
  id the feed sends. A followed topic found with another id (deleted and created again between
  two checks, or told by a position lookup) is a new generation: the feed, its cached events and
  its terminal offsets are dropped and its readers' streams end; they resume with their old ids,
  which then restart at the new beginning. A partition whose records come back below the feed's
  position (the consumer reset because the log got shorter) is checked at once.
- Supervision: the consumer is replaced (exponential backoff) when it is closed, its fetcher task
  has died (aiokafka then answers ``getmany`` with nothing, forever) or steps keep failing. The new
  one is assigned the followed sessions and sought to each feed's position, so readers lose
  nothing and see nothing twice; ``ready`` is False meanwhile (``/readyz`` answers 503).
- Long polls: the consumer is a follower (``kafka_clients.new_follower``, 1 s fetch waits), so an
  edge whose streams are quiet costs next to nothing. A new assignment, a rewind or a resume is
  followed by ``wake_fetch`` (a seek or resume by assigning again first), and new sessions' leaders
  are learnt before they are assigned: a reader's first event never waits behind a poll.
- Positions: ``end_offset`` tells where a session ends, from what the feed has read when that
  suffices, else asked of the partition's leader; streams refuse a resume position beyond it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from api.consumer_supervision import Supervision
from api.event_ids import epoch_of
from api.metrics import EdgeMetrics
from api.session_entries import decode_entry
from api.session_feed import (
    CLOSED_DELETED,
    CLOSED_RECREATED,
    CLOSED_SHUTDOWN,
    CLOSED_SLOW,
    Entry,
    SessionFeed,
    Subscription,
)
from api.terminal_index import TerminalIndex
from schemas.session_events import TERMINAL_TYPES
from tokenwire.kafka_clients import learn_leaders, new_follower, stop_consumer, wake_fetch
from tokenwire.settings import Settings
from tokenwire.topic_metadata import TopicMetadata

log = logging.getLogger(__name__)

# Kafka offsets are signed 64-bit; a seek beyond this cannot even be encoded in a fetch request.
MAX_OFFSET = 2**63 - 1

POLL_MS = 50
MAX_RECORDS = 2_000
METADATA_TIMEOUT_S = 5.0
LEARN_LEADERS_TIMEOUT_S = 1.0
# A topic not there yet is looked for often; an assigned one is checked for deletion less often.
PENDING_RECHECK_S = 0.5
ASSIGNED_RECHECK_S = 2.0
LOOKUP_IDLE_S = 1.0
CLOSE_TIMEOUT_S = 5.0


@dataclass(frozen=True, slots=True)
class Generation:
    """A session topic as it is now: its epoch (None: no such topic) and its end offset."""

    epoch: str | None
    end: int


class SessionHub:
    def __init__(
        self,
        settings: Settings,
        metrics: EdgeMetrics,
        *,
        client_id: str = "tokenwire-edge",
        on_topic_deleted: Callable[[str], None] | None = None,
    ) -> None:
        self._settings = settings
        self._metrics = metrics
        self._client_id = client_id
        self._on_topic_deleted = on_topic_deleted
        self._consumer: AIOKafkaConsumer | None = None
        self._metadata = TopicMetadata(settings.kafka_connection, client_id=f"{client_id}-metadata")
        self._task: asyncio.Task[None] | None = None
        self._feeds: dict[str, SessionFeed] = {}
        self._assigned: set[TopicPartition] = set()
        self._paused: set[TopicPartition] = set()
        self._changed = asyncio.Event()
        self._next_metadata_check = 0.0
        self._terminals = TerminalIndex(settings.sse_terminal_index_size)
        # One broker lookup per topic at a time, however many streams ask (bounded by them).
        self._end_lookups: dict[str, asyncio.Task[Generation]] = {}
        self._closed = False
        self._supervision = Supervision("session hub")
        self.consumers_created = 0

    # --- lifecycle ----------------------------------------------------------------------
    async def start(self) -> None:
        try:
            await self._metadata.start()
            await self._start_consumer()
        except BaseException:
            await self._metadata.close()
            raise
        self._task = asyncio.create_task(self._run(), name="tokenwire-session-hub")
        log.info("session hub started client_id=%s", self._client_id)

    async def stop(self) -> None:
        self._closed = True
        self.drain()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for lookup in list(self._end_lookups.values()):
            lookup.cancel()
        if self._consumer is not None:
            await _close_consumer(self._consumer)
            self._consumer = None
        await self._metadata.close()
        log.info("session hub stopped client_id=%s", self._client_id)

    async def _start_consumer(self) -> None:
        consumer = new_follower(self._settings.kafka_connection, client_id=self._client_id)
        self.consumers_created += 1
        try:
            await consumer.start()
        except BaseException:
            await _close_consumer(consumer)
            raise
        self._consumer = consumer
        self._supervision.started()

    def drain(self) -> None:
        """End every stream now and refuse new ones (server shutdown); clients reconnect with
        Last-Event-ID to another edge or to this one restarted."""
        self._closed = True
        for feed in self._feeds.values():
            feed.close_all(CLOSED_SHUTDOWN)
        self._changed.set()

    # --- readers ------------------------------------------------------------------------
    def subscribe(self, session_id: str, start: int, *, epoch: str | None = None) -> Subscription:
        """A reader of ``session_id`` from offset ``start``; call ``leave()`` when done.

        With ``epoch`` the reader takes events of that generation only: met by another one, its
        stream ends (``CLOSED_RECREATED``) so that its client resumes against the current one.
        """
        if not 0 <= start <= MAX_OFFSET:
            # A feed's position is what the consumer is sought to: it must be a Kafka offset.
            raise ValueError(f"start must be an offset in [0, {MAX_OFFSET}]")
        sub = Subscription(session_id, start, self._leave, epoch=epoch)
        if self._closed:
            sub.close(CLOSED_SHUTDOWN)
            return sub
        topic = self._settings.session_topic(session_id)
        feed = self._feeds.get(topic)
        if feed is not None and epoch is not None and feed.epoch not in (None, epoch):
            # Resolved against a generation the feed does not hold (the topic changed while the
            # stream was being opened): look again now; this client resumes afresh.
            sub.close(CLOSED_RECREATED)
            self._next_metadata_check = 0.0
            self._changed.set()
            return sub
        if feed is None:
            feed = self._feeds[topic] = SessionFeed(
                topic, self._settings.session_cache_events, start
            )
            self._next_metadata_check = 0.0
        elif start < feed.base:
            log.info("rewinding session feed topic=%s from=%d to=%d", topic, feed.base, start)
            feed.rewind(start)
        sub.feed = feed
        feed.subscribers.add(sub)
        self._changed.set()
        return sub

    def _leave(self, sub: Subscription) -> None:
        feed = sub.feed
        if feed is not None:
            feed.subscribers.discard(sub)
            if not feed.subscribers:
                self._changed.set()

    def known_terminal(self, session_id: str, request_id: str, epoch: str) -> int | None:
        return self._terminals.get(self._settings.session_topic(session_id), request_id, epoch)

    async def beginning(self, session_id: str, *, timeout_s: float = 0.0) -> int:
        """Where a session's history begins: offset 0 of its own topic (its oldest retained
        event, for the consumer)."""
        return 0

    async def find_terminal(
        self, session_id: str, request_id: str, *, upto: int, epoch: str | None, timeout_s: float
    ) -> int | None:
        """The offset of ``request_id``'s done/error event if it is at or before ``upto`` in
        generation ``epoch`` (None: the current one, whichever).

        Read through the shared feed from offset 0. A lookup that makes no progress for
        ``LOOKUP_IDLE_S`` (``upto`` past the end of the topic) or runs out of time answers None.
        """
        known = None if epoch is None else self.known_terminal(session_id, request_id, epoch)
        if known is not None:
            return known if known <= upto else None
        sub = self.subscribe(session_id, 0, epoch=epoch)
        try:
            async with asyncio.timeout(timeout_s):
                while sub.cursor <= upto:
                    async with asyncio.timeout(LOOKUP_IDLE_S):
                        entry = await sub.next(give_up_if_missing=True)
                    if entry is None or entry.offset > upto:
                        return None
                    if entry.request_id == request_id and entry.type in TERMINAL_TYPES:
                        return entry.offset
        except TimeoutError:
            log.info("terminal lookup gave up session=%s upto=%d", session_id, upto)
        finally:
            sub.leave()
        return None

    async def generation(
        self, session_id: str, *, at_least: int, epoch: str | None, timeout_s: float
    ) -> Generation:
        """The session topic's current generation and where it ends (the offset its next event
        gets; ``Generation(None, 0)`` if it has no topic now).

        What the feed has read already proves the end is at least there: when that reaches
        ``at_least`` and the feed holds generation ``epoch`` (or any, for None), it is the
        answer without a broker round trip; a feed that is stale by then is found out by the
        loop, which ends its streams. Else the partition's leader is asked, and a feed of
        another generation than it names is dropped at once. Raises ``TimeoutError`` when the
        broker does not answer within ``timeout_s``.
        """
        topic = self._settings.session_topic(session_id)
        feed = self._feeds.get(topic)
        if (
            feed is not None
            and feed.active
            and feed.epoch is not None
            and epoch in (None, feed.epoch)
            and feed.next_offset >= at_least
        ):
            return Generation(feed.epoch, feed.next_offset)
        lookup = self._end_lookups.get(topic)
        if lookup is None:
            lookup = asyncio.create_task(
                self._look_up(topic, timeout_s), name="tokenwire-end-offset"
            )
            self._end_lookups[topic] = lookup
            lookup.add_done_callback(lambda done: self._end_lookup_done(topic, done))
        return await asyncio.shield(lookup)

    async def _look_up(self, topic: str, timeout_s: float) -> Generation:
        found = await self._metadata.end(topic, timeout_s=timeout_s)
        current = Generation(None, 0) if found is None else Generation(
            epoch_of(found.topic_id), found.end
        )
        feed = self._feeds.get(topic)
        if feed is not None and feed.active and feed.epoch != current.epoch:
            self._drop_feed(feed, CLOSED_DELETED if current.epoch is None else CLOSED_RECREATED)
        return current

    def _end_lookup_done(self, topic: str, lookup: asyncio.Task[Generation]) -> None:
        if self._end_lookups.get(topic) is lookup:
            del self._end_lookups[topic]
        if not lookup.cancelled():
            lookup.exception()  # retrieved: the askers (if any are left) got it already

    # --- introspection (readiness, tests) -----------------------------------------------
    def assigned_topics(self) -> set[str]:
        if self._consumer is None:
            return set()
        return {tp.topic for tp in self._consumer.assignment()}

    @property
    def ready(self) -> bool:
        """The loop runs and its consumer is whole: streams are being fed."""
        return self.running and self._consumer_broken() is None

    def session_topics(self) -> set[str]:
        return set(self._feeds)

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def existing_topics(self, topics: list[str], timeout_s: float) -> set[str]:
        """Which of ``topics`` exist, asked of the broker now: proves the broker answers."""
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
        # The new consumer starts unassigned: every feed is sought to its own position again.
        self._assigned, self._paused = set(), set()
        for feed in self._feeds.values():
            feed.needs_seek = True
        delay = self._supervision.next_restart_delay()
        self._metrics.hub_consumer_restarts.inc()
        log.warning(
            "replacing the session hub consumer why=%s in_s=%.2f sessions=%d",
            why, delay, len(self._feeds),
        )
        if old is not None:
            await _close_consumer(old)
        await asyncio.sleep(delay)
        await self._start_consumer()
        log.info("session hub consumer replaced sessions=%d", len(self._feeds))

    async def _step(self) -> None:
        assert self._consumer is not None
        self._changed.clear()
        await self._refresh_metadata()
        await self._learn_new_partitions()
        self._sync_assignment()
        if not self._assigned:
            await self._idle()
            return
        batch = await self._consumer.getmany(timeout_ms=POLL_MS, max_records=MAX_RECORDS)
        for tp, records in batch.items():
            self._deliver(tp, records)

    async def _idle(self) -> None:
        # Woken now and then even with nothing to do, so that supervision sees a broken consumer.
        timeout = ASSIGNED_RECHECK_S
        if any(not feed.active for feed in self._feeds.values()):
            timeout = max(0.0, self._next_metadata_check - time.monotonic())
        # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a cancellation that
        # comes as the wait ends (drain() sets _changed, then stop() cancels), and stop() hangs.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._changed.wait()

    async def _refresh_metadata(self) -> None:
        now = time.monotonic()
        if not self._feeds or now < self._next_metadata_check:
            return
        assert self._consumer is not None
        topic_ids = await self._metadata.topic_ids(self._feeds, timeout_s=METADATA_TIMEOUT_S)
        for feed in list(self._feeds.values()):
            topic_id = topic_ids.get(feed.topic)
            if topic_id is None:
                if feed.active:
                    self._drop_feed(feed, CLOSED_DELETED)
                elif not feed.missing:
                    feed.missing = True
                    feed.wake_all()
                continue
            epoch = epoch_of(topic_id)
            if feed.epoch is None:
                for sub in feed.activate(epoch):
                    log.info("closing reader of another generation topic=%s epoch=%s reader=%s",
                             feed.topic, epoch, sub.epoch)
                feed.wake_all()
            elif feed.epoch != epoch:
                self._drop_feed(feed, CLOSED_RECREATED)
        pending = any(not feed.active for feed in self._feeds.values())
        self._next_metadata_check = now + (PENDING_RECHECK_S if pending else ASSIGNED_RECHECK_S)

    def _drop_feed(self, feed: SessionFeed, reason: str) -> None:
        """The followed topic is gone (deleted) or another generation of it is there
        (recreated): what the feed holds belongs to no current position."""
        log.warning(
            "session topic %s while followed topic=%s epoch=%s", reason, feed.topic, feed.epoch
        )
        feed.close_all(reason)
        if self._feeds.get(feed.topic) is feed:
            del self._feeds[feed.topic]
        self._changed.set()
        self._terminals.forget_topic(feed.topic)
        if self._on_topic_deleted is not None:
            self._on_topic_deleted(feed.topic)

    async def _learn_new_partitions(self) -> None:
        """The consumer learns where the sessions about to be assigned live first, so that their
        first fetch goes out at once (``learn_leaders``)."""
        assert self._consumer is not None
        new = [
            tp
            for feed in self._feeds.values()
            if feed.active and feed.subscribers
            and (tp := TopicPartition(feed.topic, 0)) not in self._assigned
        ]
        if new:
            await learn_leaders(self._consumer, new, timeout_s=LEARN_LEADERS_TIMEOUT_S)

    def _sync_assignment(self) -> None:
        assert self._consumer is not None
        for topic in [topic for topic, feed in self._feeds.items() if not feed.subscribers]:
            del self._feeds[topic]
        active = [feed for feed in self._feeds.values() if feed.active]
        desired = {TopicPartition(feed.topic, 0) for feed in active}
        changed = desired != self._assigned
        if changed:
            self._assign(desired, active)
            log.info("session hub assignment sessions=%d", len(desired))
        now = time.monotonic()
        fetch_owed = [self._sync_partition(feed, now) for feed in active]
        if any(fetch_owed) and not changed:
            # A seek (rewind) or resume while the consumer's long poll is in flight: aiokafka
            # fetches it only once that poll ends. Assigned again, it drops the poll at once.
            self._assign(desired, active)
            for feed in active:
                self._sync_partition(feed, now)
        if desired and any(fetch_owed):
            wake_fetch(self._consumer)

    def _assign(self, desired: set[TopicPartition], active: list[SessionFeed]) -> None:
        assert self._consumer is not None
        if desired:
            self._consumer.assign(sorted(desired))
        else:
            self._consumer.unsubscribe()
        # A new assignment forgets every position and pause: re-apply them all.
        self._assigned, self._paused = desired, set()
        for feed in active:
            feed.needs_seek = True
        self._metrics.hub_sessions.set(len(desired))

    def _sync_partition(self, feed: SessionFeed, now: float) -> bool:
        """Apply the feed's seek and pause; True when its partition now wants a fetch that the
        one in flight (if any) does not make: it was sought or resumed, and is not paused."""
        assert self._consumer is not None
        tp = TopicPartition(feed.topic, 0)
        sought = feed.needs_seek
        if sought:
            self._consumer.seek(tp, feed.next_offset)
            feed.needs_seek = False
        if feed.paused_since is not None:
            if not feed.head_needed():
                feed.paused_since = None
            elif now - feed.paused_since >= self._settings.sse_send_timeout_s:
                for sub in feed.readers_at_head():
                    self._close_slow(feed, sub, why="stalled at cache head")
                feed.paused_since = None
        want_paused = feed.paused_since is not None
        resumed = False
        if want_paused and tp not in self._paused:
            self._consumer.pause(tp)
            self._paused.add(tp)
        elif not want_paused and tp in self._paused:
            self._consumer.resume(tp)
            self._paused.discard(tp)
            resumed = True
        return (sought or resumed) and not want_paused

    def _deliver(self, tp: TopicPartition, records: list[ConsumerRecord]) -> None:
        feed = self._feeds.get(tp.topic)
        if feed is None or not feed.active or feed.needs_seek:
            return  # fetched before a seek or a release: not from the position we want
        assert feed.epoch is not None  # an active feed knows its generation
        if records and records[0].offset < feed.next_offset:
            # Reset below where the feed is: the log got shorter, i.e. the topic is likely
            # another generation now. Check at once rather than at the next scheduled check.
            log.info("session records below the feed position topic=%s offset=%d next=%d",
                     tp.topic, records[0].offset, feed.next_offset)
            self._next_metadata_check = 0.0
        pending_before = feed.next_offset
        decoded = [(record.offset, self._entry(feed.epoch, tp.topic, record)) for record in records]
        stopped_at = feed.append(decoded)
        if stopped_at is not None:
            feed.needs_seek = True
            feed.paused_since = time.monotonic()
        self._terminals.remember(tp.topic, feed.epoch, (entry for _, entry in decoded))
        for sub in feed.slow_readers(pending_before, self._settings.sse_client_buffer):
            self._close_slow(feed, sub, why="backlog over sse_client_buffer")
        feed.wake_all()

    def _close_slow(self, feed: SessionFeed, sub: Subscription, *, why: str) -> None:
        feed.subscribers.discard(sub)
        sub.close(CLOSED_SLOW)
        self._metrics.slow_client_closes.inc()
        log.info(
            "closing slow client topic=%s cursor=%d next_offset=%d why=%s",
            feed.topic, sub.cursor, feed.next_offset, why,
        )

    @staticmethod
    def _entry(epoch: str, topic: str, record: ConsumerRecord) -> Entry | None:
        return decode_entry(
            epoch, record.offset, record.value, where=f"topic={topic}",
            headers=record.headers, timestamp_ms=record.timestamp,
        )  # fmt: skip


async def _close_consumer(consumer: AIOKafkaConsumer) -> None:
    """Stop ``consumer`` and close its connections, whatever state it is in (a dead broker's
    fetch, a dead fetcher): each replacement would leak them otherwise."""
    await stop_consumer(consumer, timeout_s=CLOSE_TIMEOUT_S)
