"""``tokenwire replay transcript|verify|aggregates``: audit the log without touching the pipeline.

Every command reads with a consumer that has no group id, so no live group's committed offsets
move. Exit codes: 0 fine, 1 a finding (verify failed, nothing to show), 2 the command could not
run (bad arguments, broker unreachable, aggregates replay not installed).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import inspect
import re
import sys
import uuid
from typing import TextIO

from tokenwire.replay.log_reader import ReplayError, TimeRange, parse_time
from tokenwire.replay.progress import Progress
from tokenwire.settings import Settings

AGGREGATES_MODULE = "agents.aggregates.replay"
_DURATION_RE = re.compile(r"^(?P<value>\d+(?:\.\d+)?)(?P<unit>ms|s|m|h|d)?$")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def _time(text: str) -> float:
    try:
        return parse_time(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def parse_duration(text: str) -> float:
    """``90``, ``30s``, ``5m``, ``1h``, ``1d``, ``250ms`` -> seconds."""
    match = _DURATION_RE.match(text.strip())
    if not match or float(match["value"]) <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration like 30s, 5m, 1h or 1d")
    return float(match["value"]) * _UNIT_S[match["unit"] or "s"]


def _window_arguments(parser: argparse.ArgumentParser, *, required: bool = False) -> None:
    when = "ISO-8601 (2025-01-31T12:00:00Z; no zone = UTC) or epoch seconds"
    parser.add_argument("--since", type=_time, required=required, help=f"from (inclusive): {when}")
    parser.add_argument("--until", type=_time, required=required, help=f"to (exclusive): {when}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    commands = parser.add_subparsers(dest="replay_command", required=True)

    transcript = commands.add_parser(
        "transcript", help="a session's prompts, final answers, discarded attempts, timings"
    )
    transcript.add_argument("--session", required=True, help="session id")
    transcript.add_argument("--request", help="only this request id")
    transcript.add_argument("--format", choices=["text", "jsonl"], default="text")
    _window_arguments(transcript)

    verify = commands.add_parser(
        "verify", help="integrity: one terminal per request, gap-free seq, nothing unknown"
    )
    verify.add_argument(
        "--session", action="append", help="only this session (repeatable); default: all"
    )
    verify.add_argument("--format", choices=["text", "jsonl"], default="text")
    _window_arguments(verify)

    aggregates = commands.add_parser("aggregates", help="rebuild windowed aggregates from the log")
    _window_arguments(aggregates, required=True)
    aggregates.add_argument(
        "--bucket",
        help="the InfluxDB bucket to write the rebuilt points into (default: the live one, "
        "TOKENWIRE_INFLUX_BUCKET; points of the same series and time are overwritten)",
    )
    aggregates.add_argument(
        "--group-id", help="consumer group for the rebuild (default: a fresh, unique one)"
    )


def run(args: argparse.Namespace, settings: Settings, *, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    try:
        window = TimeRange(args.since, args.until)
    except ValueError as exc:
        return _fail(str(exc), 2)
    try:
        if args.replay_command == "transcript":
            return _transcript(args, settings, window, out)
        if args.replay_command == "verify":
            return _verify(args, settings, window, out)
        return _aggregates(args, settings, window)
    except ReplayError as exc:
        return _fail(str(exc), 2)


def _fail(message: str, code: int) -> int:
    print(f"tokenwire replay: {message}", file=sys.stderr)
    return code


def _transcript(
    args: argparse.Namespace, settings: Settings, window: TimeRange, out: TextIO
) -> int:
    from tokenwire.replay.transcript import load_transcript, render_jsonl, render_text

    transcript = asyncio.run(
        load_transcript(
            settings, args.session, request_id=args.request, window=window, progress=Progress()
        )
    )
    if not transcript.exchanges and not transcript.dead_letters:
        scope = f"session {args.session}, {window.describe()}"
        if args.request:
            return _fail(f"request {args.request} not found ({scope})", 1)
        return _fail(f"no request found ({scope})", 1)
    if args.format == "jsonl":
        out.writelines(line + "\n" for line in render_jsonl(transcript))
    else:
        out.write(render_text(transcript))
    return 0


def _verify(args: argparse.Namespace, settings: Settings, window: TimeRange, out: TextIO) -> int:
    from tokenwire.replay.verify import render_jsonl, render_text, verify_log

    sessions = set(args.session) if args.session else None
    report = asyncio.run(
        verify_log(settings, window=window, sessions=sessions, progress=Progress())
    )
    if args.format == "jsonl":
        out.writelines(line + "\n" for line in render_jsonl(report))
    else:
        out.write(render_text(report))
    return 0 if report.ok else 1


def _aggregates(args: argparse.Namespace, settings: Settings, window: TimeRange) -> int:
    """Hand over to ``agents.aggregates.replay.replay_aggregates`` (since/until/bucket in s)."""
    if window.since is None or window.until is None:
        raise ReplayError("aggregates needs both --since and --until")
    group_id = args.group_id or f"tokenwire-replay-aggregates-{uuid.uuid4().hex[:12]}"
    if group_id == settings.worker_id:
        raise ReplayError(f"refusing to replay with the live worker group {group_id!r}")
    try:
        module = importlib.import_module(AGGREGATES_MODULE)
        replay_aggregates = module.replay_aggregates
    except ModuleNotFoundError as exc:
        if exc.name not in (AGGREGATES_MODULE, "agents"):
            raise
        return _fail(f"aggregates replay is not available ({AGGREGATES_MODULE} is missing)", 2)
    except AttributeError:
        return _fail(f"{AGGREGATES_MODULE} has no replay_aggregates()", 2)
    result = replay_aggregates(settings, window.since, window.until, args.bucket, group_id=group_id)
    if inspect.isawaitable(result):
        result = asyncio.run(result)  # type: ignore[arg-type]
    # The count is news, not a status: the exit code says whether the replay ran.
    print(f"points written: {int(result)}")
    return 0
