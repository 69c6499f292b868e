"""The in-memory session feed: shared cache, per-reader cursors, rewind and flow control."""

from __future__ import annotations

import asyncio

from api.session_feed import CLOSED_LEFT, Entry, SessionFeed, Subscription


def entry(offset: int, kind: str = "token", request_id: str = "r") -> Entry:
    return Entry(offset, kind, request_id, f'{{"offset": {offset}}}'.encode())


def records(offsets: range) -> list[tuple[int, Entry | None]]:
    return [(offset, entry(offset)) for offset in offsets]


def reader(feed: SessionFeed, cursor: int) -> Subscription:
    sub = Subscription("s", cursor, lambda s: feed.subscribers.discard(s))
    sub.feed = feed
    feed.subscribers.add(sub)
    return sub


def active_feed(capacity: int = 100, start: int = 0) -> SessionFeed:
    feed = SessionFeed("chat.session.s", capacity, start)
    feed.active, feed.needs_seek = True, False
    return feed


async def drain(sub: Subscription) -> list[int]:
    offsets = []
    while (found := sub.feed.entry_for(sub)) is not None:  # type: ignore[union-attr]
        offsets.append((await sub.next()).offset)  # type: ignore[union-attr]
        assert offsets[-1] == found.offset
    return offsets


async def test_readers_share_the_cache_each_at_its_own_cursor() -> None:
    feed = active_feed()
    early, late = reader(feed, 0), reader(feed, 3)
    assert feed.append(records(range(5))) is None
    assert await drain(early) == [0, 1, 2, 3, 4]
    assert await drain(late) == [3, 4]
    assert early.caught_up and late.caught_up


async def test_gaps_and_invalid_records_are_skipped_without_losing_order() -> None:
    feed = active_feed()
    sub = reader(feed, 0)
    feed.append([(0, entry(0)), (1, None), (4, entry(4))])
    assert await drain(sub) == [0, 4]
    assert feed.next_offset == 5


async def test_records_before_the_position_are_never_cached_twice() -> None:
    feed = active_feed()
    sub = reader(feed, 0)
    feed.append(records(range(3)))
    feed.append(records(range(5)))
    assert await drain(sub) == [0, 1, 2, 3, 4]


async def test_a_full_cache_evicts_entries_no_reader_wants() -> None:
    feed = active_feed(capacity=3)
    sub = reader(feed, 4)
    assert feed.append(records(range(6))) is None
    assert [e.offset for e in feed.entries] == [3, 4, 5]
    assert feed.base == 3
    assert await drain(sub) == [4, 5]


async def test_a_full_cache_stops_where_a_reader_still_needs_its_head() -> None:
    feed = active_feed(capacity=3)
    sub = reader(feed, 0)
    assert feed.append(records(range(6))) == 3
    assert feed.next_offset == 3 and feed.head_needed()
    assert await drain(sub) == [0, 1, 2]
    assert not feed.head_needed()
    assert feed.append(records(range(3, 6))) is None
    assert await drain(sub) == [3, 4, 5]


async def test_rewind_restarts_the_cache_and_readers_ahead_wait_for_their_cursor() -> None:
    feed = active_feed(capacity=3)
    ahead = reader(feed, 5)
    feed.append(records(range(6)))
    assert await drain(ahead) == [5]
    behind = reader(feed, 1)
    feed.rewind(1)
    assert feed.needs_seek and feed.entry_for(behind) is None
    feed.needs_seek = False
    assert feed.append(records(range(1, 4))) is None
    assert await drain(behind) == [1, 2, 3]
    assert feed.entry_for(ahead) is None
    assert feed.append(records(range(4, 8))) == 7  # `behind` still needs offset 4
    assert await drain(ahead) == [6]
    assert await drain(behind) == [4, 5, 6]
    feed.append(records(range(7, 8)))
    assert await drain(ahead) == [7]


async def test_only_live_readers_that_fell_behind_count_as_slow() -> None:
    feed = active_feed()
    live, catching_up = reader(feed, 0), reader(feed, 0)
    feed.append(records(range(2)))
    await drain(live)
    feed.entry_for(live)
    pending_before = feed.next_offset
    feed.append(records(range(2, 10)))
    assert feed.slow_readers(pending_before, limit=4) == []
    pending_before = feed.next_offset
    feed.append(records(range(10, 12)))
    assert feed.slow_readers(pending_before, limit=4) == [live]
    assert not catching_up.caught_up


async def test_a_waiting_reader_wakes_on_new_entries_and_ends_when_closed() -> None:
    feed = active_feed()
    sub = reader(feed, 0)
    waiting = asyncio.create_task(sub.next())
    await asyncio.sleep(0)
    feed.append(records(range(1)))
    feed.wake_all()
    assert (await asyncio.wait_for(waiting, 1)).offset == 0  # type: ignore[union-attr]
    waiting = asyncio.create_task(sub.next())
    await asyncio.sleep(0)
    sub.leave()
    assert await asyncio.wait_for(waiting, 1) is None
    assert sub.closed_reason == CLOSED_LEFT and sub not in feed.subscribers
