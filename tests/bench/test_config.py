"""``tokenwire bench`` flags for session layouts and the 2 workers + 2 edges scenario."""

from __future__ import annotations

import argparse

import pytest

from tokenwire.bench.config import BenchConfig, add_arguments, from_args


def _config(*argv: str) -> BenchConfig:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return from_args(parser.parse_args(list(argv)))


def test_both_layouts_and_the_scale_out_run_by_default() -> None:
    config = _config("--concurrency", "10,100")
    assert config.layouts == ("topic", "shared")
    assert config.primary_layout == "topic"
    assert config.scale_concurrency == (10, 100)
    assert _config("--quick").layouts == ("topic", "shared")


def test_the_first_layout_listed_is_the_primary_one() -> None:
    config = _config("--layouts", "shared,topic")
    assert config.layouts == ("shared", "topic")
    assert config.primary_layout == "shared"


def test_the_scale_out_needs_the_shared_layout_and_streaming() -> None:
    assert _config("--layouts", "topic").scale_concurrency == ()
    assert _config("--scale-out", "off").scale_concurrency == ()
    assert _config("--only", "cancel").scale_concurrency == ()
    assert _config("--concurrency", "10,500,100", "--scale-out", "largest"
                   ).scale_concurrency == (500,)


@pytest.mark.parametrize("bad", ["", "topic,topic", "topics", "topic,,partitioned"])
def test_unknown_or_repeated_layouts_are_refused(bad: str) -> None:
    with pytest.raises(SystemExit):
        _config("--layouts", bad)
