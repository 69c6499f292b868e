"""``tokenwire replay`` arguments: times, durations, and the hand-over to the aggregates replay."""

from __future__ import annotations

import argparse
import io

import pytest

from tokenwire.cli import build_parser
from tokenwire.replay.cli import parse_duration, run
from tokenwire.replay.log_reader import TimeRange, parse_time
from tokenwire.replay.progress import Progress
from tokenwire.settings import Settings


def test_times_are_iso_8601_or_epoch_seconds_and_a_time_without_zone_is_utc() -> None:
    assert parse_time("1735689600") == 1735689600.0
    assert parse_time("1735689600.25") == 1735689600.25
    assert parse_time("2025-01-01T00:00:00Z") == 1735689600.0
    assert parse_time("2025-01-01T01:00:00+01:00") == 1735689600.0
    assert parse_time("2025-01-01") == 1735689600.0
    with pytest.raises(ValueError, match="neither epoch seconds nor ISO-8601"):
        parse_time("yesterday")


def test_a_range_is_half_open_and_must_not_be_empty() -> None:
    window = TimeRange(10.0, 20.0)
    assert window.contains_ms(10_000) and not window.contains_ms(20_000)
    with pytest.raises(ValueError, match="must be before"):
        TimeRange(20.0, 10.0)


def test_bad_arguments_are_refused_by_the_parser(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["replay", "verify", "--since", "last tuesday"])
    assert "neither epoch seconds nor ISO-8601" in capsys.readouterr().err
    assert [parse_duration(d) for d in ("90", "30s", "5m", "1h", "1d", "250ms")] == [
        90.0, 30.0, 300.0, 3600.0, 86400.0, 0.25]
    with pytest.raises(argparse.ArgumentTypeError):
        parse_duration("0s")


def test_aggregates_refuses_the_live_worker_group() -> None:
    settings = Settings(worker_id="live-worker")
    argv = ["replay", "aggregates", "--since", "2025-01-01T00:00:00Z", "--until", "1735693200",
            "--group-id", "live-worker"]
    assert run(build_parser().parse_args(argv), settings) == 2, "never the live worker group"


def test_the_progress_bar_is_drawn_only_on_a_terminal() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal, pipe = Terminal(), io.StringIO()
    for stream in (terminal, pipe):
        progress = Progress(stream)
        progress.expect(10, "chat.requests")
        progress.advance(10)
        progress.close()

    assert "[" + "#" * 30 + "] 10/10 records  chat.requests" in terminal.getvalue()
    assert terminal.getvalue().endswith("\r") and pipe.getvalue() == ""
