"""Where recent requests ended: bounded, newest kept, a deleted topic forgotten on its own,
each offset answering only for the topic generation (epoch) it was read in."""

from __future__ import annotations

from api.session_feed import Entry
from api.terminal_index import TerminalIndex

EPOCH = "00000000000000aa"
LATER_EPOCH = "00000000000000bb"


def done(offset: int, request_id: str) -> Entry:
    return Entry(offset, "done", request_id, b"")


def test_the_index_is_bounded_and_forgets_the_oldest_first() -> None:
    index = TerminalIndex(capacity=3)
    index.remember("t", EPOCH, [done(n, f"r{n}") for n in range(5)] + [None])
    assert len(index) == 3
    assert [index.get("t", f"r{n}", EPOCH) for n in range(5)] == [None, None, 2, 3, 4]


def test_forgetting_a_topic_keeps_the_others() -> None:
    index = TerminalIndex(capacity=10)
    index.remember("a", EPOCH, [done(1, "r1"), done(2, "r2")])
    index.remember("b", EPOCH, [done(7, "r1"), Entry(8, "token", "r9", b"")])
    index.forget_topic("a")
    found = (index.get("a", "r1", EPOCH), index.get("b", "r1", EPOCH), index.get("b", "r9", EPOCH))
    assert found == (None, 7, None)
    assert len(index) == 1
    index.remember("b", EPOCH, [done(n, f"x{n}") for n in range(20)])
    index.forget_topic("b")
    assert len(index) == 0


def test_an_offset_answers_only_for_its_own_generation() -> None:
    index = TerminalIndex(capacity=10)
    index.remember("t", EPOCH, [done(4, "r1")])
    assert index.get("t", "r1", EPOCH) == 4
    assert index.get("t", "r1", LATER_EPOCH) is None
