"""Where recent requests ended: bounded, newest kept, a deleted topic forgotten on its own."""

from __future__ import annotations

from api.session_feed import Entry
from api.terminal_index import TerminalIndex


def done(offset: int, request_id: str) -> Entry:
    return Entry(offset, "done", request_id, b"")


def test_the_index_is_bounded_and_forgets_the_oldest_first() -> None:
    index = TerminalIndex(capacity=3)
    index.remember("t", [done(n, f"r{n}") for n in range(5)] + [None])
    assert len(index) == 3
    assert [index.get("t", f"r{n}") for n in range(5)] == [None, None, 2, 3, 4]


def test_forgetting_a_topic_keeps_the_others() -> None:
    index = TerminalIndex(capacity=10)
    index.remember("a", [done(1, "r1"), done(2, "r2")])
    index.remember("b", [done(7, "r1"), Entry(8, "token", "r9", b"")])
    index.forget_topic("a")
    assert (index.get("a", "r1"), index.get("b", "r1"), index.get("b", "r9")) == (None, 7, None)
    assert len(index) == 1
    index.remember("b", [done(n, f"x{n}") for n in range(20)])
    index.forget_topic("b")
    assert len(index) == 0
