"""The PNG: per-token latency percentiles vs concurrency, pipeline vs relay (plus TTFT and RSS).

matplotlib is an optional dependency (``pip install tokenwire[bench]``); without it the report is
still written and the chart is skipped with a warning.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

STYLES = {"pipeline": ("tab:blue", "-"), "relay": ("tab:orange", "--")}
MARKERS = {"p50": "o", "p90": "s", "p99": "^", "max": "x"}


def _num(value: float | None) -> float:
    return float("nan") if value is None else float(value)


def draw(report: dict[str, Any], path: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.warning("matplotlib is not installed: no chart (pip install matplotlib)")
        return None
    streaming = report["streaming"]
    idle = report.get("idle")
    has_idle = bool(idle and idle["levels"])
    panels = (2 if streaming else 0) + (1 if has_idle else 0)
    if panels == 0:
        return None
    fig, axes = plt.subplots(1, panels, figsize=(6 * panels, 4.8), squeeze=False)
    row = list(axes[0])
    if streaming:
        _latency(row.pop(0), row.pop(0), streaming, report["config"]["tps"])
    if has_idle and idle:
        _idle(row.pop(0), idle, report["config"]["ping_s"])
    m = report["machine"]
    fig.suptitle(f"tokenwire vs direct relay — {m['nproc']} cores, {m['mem_total_gib']} GiB, "
                 f"Python {m['python']}", fontsize=11)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _latency(lat: Any, ttft: Any, streaming: list[dict[str, Any]], tps: float) -> None:
    xs = [s["concurrency"] for s in streaming]
    for mode, (color, line) in STYLES.items():
        for p in ("p50", "p90", "p99"):
            ys = [_num(s[mode]["latency_ms"][p]) for s in streaming]
            lat.plot(xs, ys, color=color, linestyle=line, marker=MARKERS[p], label=f"{mode} {p}")
            if p != "p90":
                firsts = [_num(s[mode]["ttft_added_ms"][p]) for s in streaming]
                ttft.plot(xs, firsts, color=color, linestyle=line, marker=MARKERS[p],
                          label=f"{mode} {p}")
    lat.set_title(f"Per-token latency (chunk received → client parsed), {tps:g} tok/s each",
                  fontsize=10)
    ttft.set_title("Added time to first token (over the simulator's TTFT)", fontsize=10)
    for ax in (lat, ttft):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("concurrent streams")
        ax.set_ylabel("ms (log)")
        ax.set_xticks(xs)
        ax.set_xticklabels([str(x) for x in xs])
        ax.minorticks_off()
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize=8)


def _idle(ax: Any, idle: dict[str, Any], ping_s: float) -> None:
    levels = idle["levels"]
    ax.bar([f"{lvl['connections']:,}" for lvl in levels],
           [lvl["per_connection_kib"] for lvl in levels], color="tab:blue")
    ax.axhline(30, color="tab:red", linestyle=":", label="target 30 KiB")
    ax.set_title(f"Edge RSS per idle SSE connection (heartbeat every {ping_s:g} s)", fontsize=10)
    ax.set_xlabel("open idle connections")
    ax.set_ylabel("KiB per connection")
    ax.legend(fontsize=8)
