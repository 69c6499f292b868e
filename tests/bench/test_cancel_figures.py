"""The cancel scenario's bookkeeping: which simulator close belongs to which cancel, the counts,
the worker histogram's delta, and how ``--only cancel`` / ``--cancel-streams`` configure a run."""

from __future__ import annotations

import argparse

from tokenwire.bench.cancel_figures import cancel_figures, closed_at, histogram_delta
from tokenwire.bench.cancels import marker, tokens_before_cancel
from tokenwire.bench.config import BenchConfig, add_arguments, from_args


def _stream(index: int, posted_at: float, **extra: object) -> dict[str, object]:
    return {"index": index, "marker": marker("bench-x", "cancel", index), "posted_at": posted_at,
            "answered_at": posted_at + 0.004, "done_at": posted_at + 0.01, "status": 202,
            "finish_reason": "cancelled", "prefix_ok": True, "tokens_before_cancel": 5,
            "error": None} | extra


def _close(index: int, at: float) -> dict[str, object]:
    return {"prompt": f"{marker('bench-x', 'cancel', index)} cancel me [[sim: tokens=400]]",
            "closed_at": at}


def test_a_marker_is_never_found_inside_a_longer_one() -> None:
    assert closed_at(_stream(1, 100.0), [_close(10, 100.5)]) is None
    assert closed_at(_stream(1, 100.0), [_close(10, 100.5), _close(1, 100.2)]) == 100.2


def test_a_close_before_the_cancel_post_is_not_the_cancels() -> None:
    assert closed_at(_stream(2, 100.0), [_close(2, 99.0)]) is None
    assert closed_at(_stream(2, 100.0), [_close(2, 99.0), _close(2, 100.03)]) == 100.03


def test_counts_each_way_a_cancel_can_fail() -> None:
    streams = [
        _stream(0, 100.0),
        _stream(1, 100.0),  # no close recorded
        _stream(2, 100.0, finish_reason="stop"),
        _stream(3, 100.0, status=409, finish_reason="stop"),
    ]
    closes = [_close(0, 100.02), _close(2, 100.05), _close(3, 100.05)]
    figures = cancel_figures(streams, closes, None)
    assert figures["cancelled_ok"] == 1
    assert figures["missing_close"] == 1
    assert figures["wrong_finish"] == 2
    assert figures["not_accepted"] == 1
    assert not figures["clean"]
    assert figures["post_to_upstream_closed_ms"]["count"] == 3
    assert figures["post_to_202_ms"]["count"] == 4


def test_cancel_points_are_spread_over_3_to_20_tokens() -> None:
    points = [tokens_before_cancel(i) for i in range(25)]
    assert min(points) == 3 and max(points) == 20
    assert len(set(points[:18])) == 18


def test_worker_histogram_delta_gives_count_mean_and_bucket_bounds() -> None:
    before = {"buckets": {0.01: 1.0, 0.1: 1.0, float("inf"): 1.0}, "sum": 0.005, "count": 1.0}
    after = {"buckets": {0.01: 3.0, 0.1: 5.0, float("inf"): 5.0}, "sum": 0.125, "count": 5.0}
    delta = histogram_delta(before, after)
    assert delta["count"] == 4
    assert delta["mean_ms"] == 30.0
    assert delta["p50_at_most_ms"] == 10.0
    assert delta["p99_at_most_ms"] == 100.0


def _config(*argv: str) -> BenchConfig:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return from_args(parser.parse_args(list(argv)))


def test_only_cancel_runs_the_cancel_part_alone() -> None:
    config = _config("--only", "cancel")
    assert config.runs_cancel and config.needs_stack
    assert not config.streaming and not config.idle_enabled
    assert config.cancel_streams == 25
    assert _config("--quick").cancel_streams == 3
    assert not _config("--only", "streaming").runs_cancel
    assert not _config("--only", "idle").needs_stack
    assert not _config("--cancel-streams", "0").runs_cancel
