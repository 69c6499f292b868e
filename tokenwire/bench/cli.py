"""``tokenwire bench``: the arguments, the run, and what is written (report, chart, table).

Exit code 0 when every scenario was clean (no lost, duplicated or reordered token, no error;
every cancel accepted, ended ``cancelled`` and closed its upstream stream); missed latency or
memory targets are reported, not turned into a failure.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from types import FrameType
from typing import Any

from tokenwire.bench import chart, report
from tokenwire.bench.config import BenchConfig, from_args
from tokenwire.bench.config import add_arguments as _add_arguments
from tokenwire.bench.runner import run_bench
from tokenwire.settings import Settings

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    _add_arguments(parser)


def _interrupt_on_sigterm() -> None:
    """SIGTERM unwinds like Ctrl-C, so the stack stops its children instead of orphaning them."""

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


def run(args: argparse.Namespace, settings: Settings) -> int:
    config = from_args(args)
    _interrupt_on_sigterm()
    try:
        result = asyncio.run(run_bench(settings, config))
    except KeyboardInterrupt:
        print("benchmark interrupted; its processes are stopped")
        return 130
    path = report.write(result, config.out)
    png = chart.draw(result, config.out / "latency.png")
    table = report.markdown(result)
    (config.out / "results.md").write_text(table)
    print(table)
    print(f"report: {path}\nchart:  {png or 'not drawn (matplotlib missing)'}")
    return 0 if _clean(result, config) else 1


def _clean(result: dict[str, Any], config: BenchConfig) -> bool:
    clean = True
    if config.streaming or config.idle_enabled:
        clean = next(t for t in result["targets"] if "lost/" in t["name"])["met"] is not False
    cancel = result.get("cancel")
    return clean and (cancel is None or bool(cancel["clean"]))
