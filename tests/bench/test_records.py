"""The bench's own check of what a client received: lost, duplicated, reordered, joined."""

from __future__ import annotations

from tokenwire.bench.records import check_tokens

EXPECTED = ["Hel", "lo", " wo", "rld"]


def test_one_event_per_chunk_must_be_exactly_the_chunks() -> None:
    assert check_tokens(list(enumerate(EXPECTED)), EXPECTED).clean
    joined = [(0, "Hello"), (1, " world")]
    assert check_tokens(joined, EXPECTED).mismatched


def test_coalesced_events_must_join_into_the_answer_and_count_tokens_covered() -> None:
    whole = check_tokens([(0, "Hello"), (1, " world")], EXPECTED, joined=True)
    assert whole.clean and whole.delivered == 4
    short = check_tokens([(0, "Hello")], EXPECTED, joined=True)
    assert short.lost == 2 and short.mismatched
    wrong = check_tokens([(0, "Help")], EXPECTED, joined=True)
    assert wrong.mismatched and wrong.lost == 4
    repeated = check_tokens([(0, "Hello"), (0, "Hello"), (1, " world")], EXPECTED, joined=True)
    assert repeated.duplicated == 1 and not repeated.clean
