"""The PNG: per-token latency and TTFT percentiles vs concurrency and CPU per 1k tokens, for the
relay, each session layout and the shared layout on 2 workers + 2 edges (plus idle RSS).

matplotlib is an optional dependency (``pip install tokenwire[bench]``); without it the report is
still written and the chart is skipped with a warning.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from tokenwire.bench.report import layout_added, layout_figures

log = logging.getLogger(__name__)

RELAY = "relay"
SCALE_OUT = "shared, 2 workers + 2 edges"
STYLES = {
    RELAY: ("tab:orange", "--"),
    "topic": ("tab:blue", "-"),
    "shared": ("tab:green", "-"),
    SCALE_OUT: ("tab:purple", ":"),
}
MARKERS = {"p50": "o", "p99": "^"}


def _num(value: float | None) -> float:
    return float("nan") if value is None else float(value)


def series(report: dict[str, Any]) -> dict[str, list[tuple[int, dict[str, Any], Any]]]:
    """Per path, (concurrency, figures, CPU per 1k tokens summary) at each concurrency run."""
    out: dict[str, list[tuple[int, dict[str, Any], Any]]] = {RELAY: []}
    for s in report["streaming"]:
        relay = s["relay"]
        out[RELAY].append((s["concurrency"], relay, relay["cpu_s_per_1k_tokens"].get("relay")))
        added = layout_added(s)
        for layout, figures in layout_figures(s).items():
            cpu = (added[layout].get("cpu_s_per_1k_tokens") or {}).get("total")
            out.setdefault(layout, []).append((s["concurrency"], figures, cpu))
    for s in report.get("scale_out") or []:
        out.setdefault(SCALE_OUT, []).append(
            (s["concurrency"], s["pipeline"], s["added"]["cpu_s_per_1k_tokens"]["total"]))
    return out


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
    panels = (3 if streaming else 0) + (1 if has_idle else 0)
    if panels == 0:
        return None
    columns = 2 if panels == 4 else panels
    rows = (panels + columns - 1) // columns
    fig, axes = plt.subplots(rows, columns, figsize=(6.5 * columns, 4.8 * rows), squeeze=False)
    free = [ax for line in axes for ax in line]
    if streaming:
        paths = series(report)
        xs = sorted({n for points in paths.values() for n, _, _ in points})
        latency, ttft, cpu = free.pop(0), free.pop(0), free.pop(0)
        _percentiles(latency, paths, "latency_ms", xs)
        latency.set_title(f"Per-token latency (chunk received → client parsed), "
                          f"{report['config']['tps']:g} tok/s each", fontsize=10)
        _percentiles(ttft, paths, "ttft_added_ms", xs)
        ttft.set_title("Time to first token over the simulator's TTFT", fontsize=10)
        _cpu(cpu, paths, xs)
    if has_idle and idle:
        _idle(free.pop(0), idle, report["config"]["ping_s"])
    for ax in free:  # a 2 x 2 grid with three panels
        ax.set_visible(False)
    m = report["machine"]
    fig.suptitle(f"tokenwire vs direct relay — {m['nproc']} cores, {m['mem_total_gib']} GiB, "
                 f"Python {m['python']}", fontsize=11)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _style(path: str) -> tuple[str, str]:
    return STYLES.get(path, ("tab:gray", "-."))


def _percentiles(ax: Any, paths: dict[str, list[tuple[int, dict[str, Any], Any]]], key: str,
                 xs: list[int]) -> None:
    for path, points in paths.items():
        color, line = _style(path)
        for p, marker in MARKERS.items():
            ax.plot([n for n, _, _ in points], [_num(f[key][p]) for _, f, _ in points],
                    color=color, linestyle=line, marker=marker, label=f"{path} {p}")
    _log_axes(ax, xs, "ms (log)")


def _cpu(ax: Any, paths: dict[str, list[tuple[int, dict[str, Any], Any]]], xs: list[int]
         ) -> None:
    for path, points in paths.items():
        color, line = _style(path)
        ax.plot([n for n, _, _ in points], [_num(cpu) for _, _, cpu in points], color=color,
                linestyle=line, marker="o", label=path)
    ax.set_title("CPU s per 1k tokens: relay process vs worker(s) + edge(s) + broker (net)",
                 fontsize=10)
    _log_axes(ax, xs, "CPU s / 1k tokens (log)")


def _log_axes(ax: Any, xs: list[int], ylabel: str) -> None:
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("concurrent streams")
    ax.set_ylabel(ylabel)
    ax.set_xticks(xs)
    ax.set_xticklabels([str(x) for x in xs])
    ax.minorticks_off()
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=7)


def _idle(ax: Any, idle: dict[str, Any], ping_s: float) -> None:
    levels = idle["levels"]
    ax.bar([f"{lvl['connections']:,}" for lvl in levels],
           [lvl["per_connection_kib"] for lvl in levels], color="tab:blue")
    ax.axhline(30, color="tab:red", linestyle=":", label="target 30 KiB")
    ax.set_title(f"Edge RSS per idle SSE connection (heartbeat every {ping_s:g} s)", fontsize=10)
    ax.set_xlabel("open idle connections")
    ax.set_ylabel("KiB per connection")
    ax.legend(fontsize=8)
