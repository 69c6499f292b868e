"""The report's verdicts on runs that leave parts out (``--only``)."""

from __future__ import annotations

import argparse
from typing import Any

from tokenwire.bench.config import BenchConfig, add_arguments, from_args
from tokenwire.bench.report import targets


def _config(*argv: str) -> BenchConfig:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return from_args(parser.parse_args(list(argv)))


def _idle(dropped: int) -> dict[str, Any]:
    level = {"connections": 40, "open": 40 - dropped, "failed": 0, "dropped": dropped,
             "errors": [], "open_s": 0.1, "edge_alive": True, "edge_rss_mib": 70.0,
             "per_connection_kib": 8.0}
    beats = {"connections": 40, "hold_s": 1.6, "ping_s": 1.0, "dropped": dropped,
             "min_heartbeats_per_connection": 1, "max_heartbeats_per_connection": 2}
    return {"sessions": 4, "base_rss_mib": 60.0, "levels": [level], "heartbeats": beats}


def _integrity(found: list[dict[str, Any]]) -> dict[str, Any]:
    return next(t for t in found if "lost/" in t["name"])


def test_an_idle_only_run_with_every_connection_held_is_clean() -> None:
    config = _config("--quick", "--only", "idle")
    assert _integrity(targets([], _idle(0), config))["met"] is True
    assert _integrity(targets([], _idle(1), config))["met"] is False


def test_a_run_with_neither_streams_nor_idle_connections_measured_no_integrity() -> None:
    assert _integrity(targets([], None, _config("--quick", "--only", "cancel")))["met"] is None
