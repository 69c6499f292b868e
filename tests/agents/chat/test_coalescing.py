"""Token coalescing: per chunk, or bounded by size and latency."""

from agents.chat.coalescing import Coalescer


def test_chunk_mode_emits_every_chunk() -> None:
    c = Coalescer(mode="chunk", max_chars=100, max_delay_s=1.0)
    c.add("Hel", 10.0)
    assert c.due(10.0)
    assert c.drain() == ("Hel", 10.0)
    assert c.empty


def test_bounded_mode_flushes_at_the_size_bound() -> None:
    c = Coalescer(mode="bounded", max_chars=5, max_delay_s=1.0)
    c.add("ab", 1.0)
    assert not c.due(1.0)
    c.add("cde", 1.1)
    assert c.due(1.1)
    assert c.drain() == ("abcde", 1.1)


def test_bounded_mode_flushes_at_the_latency_bound_of_the_oldest_chunk() -> None:
    c = Coalescer(mode="bounded", max_chars=1000, max_delay_s=0.015)
    c.add("a", 1.000)
    c.add("b", 1.010)
    assert c.deadline() == 1.015
    assert not c.due(1.014)
    assert c.due(1.015)


def test_empty_chunks_do_not_open_a_batch() -> None:
    c = Coalescer(mode="bounded", max_chars=10, max_delay_s=0.01)
    c.add("", 1.0)
    assert c.empty and not c.due(99.0)


def test_adaptive_writes_each_chunk_while_caught_up_and_joins_them_while_behind() -> None:
    c = Coalescer(mode="adaptive", max_chars=100, max_delay_s=0.015)
    c.add("a", 0.0)
    assert c.due(0.0)  # caught up: one event per chunk, no added latency
    c.drain()
    c.add("b", 1.0)
    c.add("c", 1.005)
    assert not c.due(1.005, behind=True)  # behind: joined...
    assert c.due(1.015, behind=True)  # ...within the latency bound
    assert c.drain() == ("bc", 1.005)
    c.add("x" * 100, 2.0)
    assert c.due(2.0, behind=True)  # a full buffer leaves at once
