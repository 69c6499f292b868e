"""The JSON report: the machine, the configuration, every figure, and each target met or not."""

from __future__ import annotations

import json
import os
import platform
import sys
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tokenwire.bench.config import BenchConfig

SCHEMA = "tokenwire-bench/1"
TARGET_CONCURRENCY = 100
TARGET_TPS = 30.0
TARGET_IDLE = 10_000
TARGET_CANCEL_STREAMS = 25
TARGET_CANCEL_P99_MS = 100.0
TARGET_IDLE_STACK_CORES = 0.01


def machine() -> dict[str, Any]:
    cpu_model = ""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    mem_kib = 0
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    return {
        "nproc": os.cpu_count(),
        "cpu_model": cpu_model,
        "mem_total_gib": round(mem_kib / 2**20, 1),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "event_loop": "asyncio (uvloop not installed)" if not _has("uvloop") else "uvloop",
        "http_parser": "httptools" if _has("httptools") else "h11",
    }


def source_state() -> dict[str, Any]:
    """The commit measured, and whether the work tree had changes on top of it."""
    import subprocess

    root = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                                text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=root, capture_output=True,
                               text=True, timeout=10).stdout.strip() != ""
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    return {"commit": commit or None, "dirty": dirty}


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def _target(name: str, target: str, measured: Any, met: bool | None, note: str = ""
            ) -> dict[str, Any]:
    return {"name": name, "target": target, "measured": measured, "met": met, "note": note}


def targets(streaming: list[dict[str, Any]], idle: dict[str, Any] | None,
            config: BenchConfig, cancel: dict[str, Any] | None = None,
            idle_stack: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Each target of the issue with its measured value; ``met`` is None when not measured."""
    out = []
    at = next((s for s in streaming if s["concurrency"] == TARGET_CONCURRENCY), None)
    where = f"{TARGET_CONCURRENCY} streams x {TARGET_TPS:g} tok/s"
    if at is not None and config.tps == TARGET_TPS:
        lat, ttft = at["added"]["latency_ms"], at["pipeline"]["ttft_added_ms"]
        out += [
            _target("added per-token latency p50", "<= 5 ms", lat["p50"],
                    lat["p50"] is not None and lat["p50"] <= 5, where),
            _target("added per-token latency p99", "<= 25 ms", lat["p99"],
                    lat["p99"] is not None and lat["p99"] <= 25, where),
            _target("added TTFT p50 (over the simulator's TTFT)", "<= 30 ms", ttft["p50"],
                    ttft["p50"] is not None and ttft["p50"] <= 30, where),
        ]
    else:
        note = f"not measured: needs --concurrency including {TARGET_CONCURRENCY} and --tps 30"
        out += [_target(n, t, None, None, note) for n, t in (
            ("added per-token latency p50", "<= 5 ms"), ("added per-token latency p99", "<= 25 ms"),
            ("added TTFT p50 (over the simulator's TTFT)", "<= 30 ms"))]
    out += _idle_targets(idle)
    out.append(_idle_stack_target(idle_stack))
    clean = all(s["pipeline"]["clean"] for s in streaming)
    totals = {k: sum(s["pipeline"][k] for s in streaming)
              for k in ("lost", "duplicated", "reordered", "errors", "unfinished_requests",
                        "missing_requests")}
    idle_clean = idle is None or all(
        lvl["failed"] == 0 and lvl["dropped"] == 0 for lvl in idle["levels"])
    relay_errors = sum(s["relay"]["errors"] + s["relay"]["lost"] for s in streaming)
    note = f"the baseline relay had {relay_errors} errors/lost tokens" if relay_errors else ""
    out.append(_target("pipeline: lost/duplicated/reordered tokens, errors", "0 in every scenario",
                       totals, clean and idle_clean and bool(streaming), note))
    out.append(_cancel_target(cancel))
    return out


def _cancel_target(cancel: dict[str, Any] | None) -> dict[str, Any]:
    """Met when p99 is under the target at 25 streams and every cancel closed its upstream call
    (one that did not has no latency at all, so a p99 of the others would flatter)."""
    name = "cancel POST → upstream connection closed p99"
    target = f"< {TARGET_CANCEL_P99_MS:g} ms at {TARGET_CANCEL_STREAMS} streams"
    if cancel is None:
        return _target(name, target, None, None, "not measured")
    closed = cancel["post_to_upstream_closed_ms"]
    measured = {"p50": closed["p50"], "p99": closed["p99"], "max": closed["max"],
                "cancelled_ok": f"{cancel['cancelled_ok']}/{cancel['streams']}"}
    if cancel["streams"] != TARGET_CANCEL_STREAMS:
        return _target(name, target, measured, None,
                       f"not at the target's scale: {cancel['streams']} streams")
    fast = closed["p99"] is not None and closed["p99"] < TARGET_CANCEL_P99_MS
    note = "" if cancel["clean"] else (
        f"missing close {cancel['missing_close']}, wrong finish {cancel['wrong_finish']}")
    return _target(name, target, measured, fast and cancel["clean"], note)


def _idle_stack_target(idle_stack: dict[str, Any] | None) -> dict[str, Any]:
    """The whole stack with no traffic: edge + worker + simulator + broker, in % of a core."""
    name, target = "idle stack (edge + worker + simulator + broker, no traffic)", "< 1 % of a core"
    if idle_stack is None:
        return _target(name, target, None, None, "not measured: needs the stack (streaming or "
                       "cancel part) and the idle part")
    measured = {"total_pct": round(100 * idle_stack["stack_cpu_cores"], 2),
                **{f"{k}_pct": round(100 * v, 2) for k, v in idle_stack["cpu_cores"].items()}}
    if not idle_stack["broker_measured"]:
        return _target(name, target, measured, None, "broker not local: its CPU not counted")
    return _target(name, target, measured,
                   idle_stack["stack_cpu_cores"] < TARGET_IDLE_STACK_CORES,
                   f"over {idle_stack['hold_s']:g} s; the broker's figure includes its own idle "
                   "work and any other client of it")


def _idle_targets(idle: dict[str, Any] | None) -> list[dict[str, Any]]:
    if not idle or not idle["levels"]:
        return [_target("idle SSE connections held by one edge", ">= 10,000", None, None,
                        "not measured"),
                _target("edge RSS per idle connection", "<= 30 KiB", None, None, "not measured")]
    held = [lvl for lvl in idle["levels"]
            if lvl["open"] == lvl["connections"] and lvl["edge_alive"]]
    most = max((lvl["connections"] for lvl in held), default=0)
    beats = idle["heartbeats"]
    beating = bool(beats) and beats["min_heartbeats_per_connection"] >= 1 and not beats["dropped"]
    top = idle["levels"][-1]
    note = "" if most >= TARGET_IDLE else f"largest level run: {idle['levels'][-1]['connections']}"
    return [
        _target("idle SSE connections held by one edge (with heartbeats)", ">= 10,000",
                {"held": most, "every_connection_got_heartbeats": beating},
                most >= TARGET_IDLE and beating if top["connections"] >= TARGET_IDLE else None,
                note),
        _target("edge RSS per idle connection", "<= 30 KiB",
                {"connections": top["connections"], "kib": top["per_connection_kib"]},
                top["per_connection_kib"] <= 30 if top["connections"] >= TARGET_IDLE else None,
                note),
    ]


def build(config: BenchConfig, streaming: list[dict[str, Any]], idle: dict[str, Any] | None,
          cancel: dict[str, Any] | None = None, *, tag: str, started: float, finished: float,
          idle_stack: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "schema": SCHEMA,
        "tag": tag,
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "duration_s": round(finished - started, 1),
        "machine": machine(),
        "source": source_state(),
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(config).items()},
        "streaming": streaming,
        "idle": idle,
        "cancel": cancel,
        "idle_stack": idle_stack,
        "targets": targets(streaming, idle, config, cancel, idle_stack),
    }


def write(report: dict[str, Any], out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "report.json"
    path.write_text(json.dumps(report, indent=2, allow_nan=False, default=str) + "\n")
    return path


def _ms(value: Any) -> str:
    return "-" if value is None else f"{value:.1f}"


def markdown(report: dict[str, Any]) -> str:
    """The short results table for the README."""
    m = report["machine"]
    lines = [
        f"Machine: {m['nproc']} cores ({m['cpu_model'] or 'unknown CPU'}), "
        f"{m['mem_total_gib']} GiB, Python {m['python']}; Kafka, worker, edge, simulator and "
        "clients on the same host, loopback.",
        "",
        "| streams x tok/s | per-token p50 / p99 ms (relay → pipeline) | added TTFT p50 ms "
        "| tok/s delivered | CPU s / 1k tok (worker + edge + broker*) | lost/dup/reord "
        "| other load on host (cores) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for s in report["streaming"]:
        p, r = s["pipeline"], s["relay"]
        cpu = p["cpu_s_per_1k_tokens"]
        lines.append(
            f"| {s['concurrency']} x {report['config']['tps']:g} "
            f"| {_ms(r['latency_ms']['p50'])} / {_ms(r['latency_ms']['p99'])} → "
            f"{_ms(p['latency_ms']['p50'])} / {_ms(p['latency_ms']['p99'])} "
            f"| {_ms(p['ttft_added_ms']['p50'])} (relay {_ms(r['ttft_added_ms']['p50'])}) "
            f"| {p['tokens_per_s']} (relay {r['tokens_per_s']}) "
            f"| {cpu.get('worker') or 0:.2f} + {cpu.get('edge') or 0:.2f} + "
            f"{s['added'].get('broker_cpu_s_per_1k_tokens_net') or 0:.2f} "
            f"| {p['lost']}/{p['duplicated']}/{p['reordered']} "
            f"| {p['machine']['background_cores']:.2f} |"
        )
    lines += ["", "*broker: the shared broker's CPU less its rate while only the relay ran."]
    idle = report.get("idle")
    if idle and idle["levels"]:
        lines += ["", "| idle SSE connections | edge RSS MiB | KiB per connection | open |",
                  "| --- | --- | --- | --- |"]
        for lvl in idle["levels"]:
            lines.append(f"| {lvl['connections']} | {lvl['edge_rss_mib']} "
                         f"| {lvl['per_connection_kib']} | {lvl['open']} |")
    lines += _idle_stack_lines(report.get("idle_stack"))
    lines += _cancel_table(report.get("cancel"))
    lines += ["", "| target | measured | met |", "| --- | --- | --- |"]
    for t in report["targets"]:
        met = {True: "yes", False: "**no**", None: "not measured"}[t["met"]]
        lines.append(f"| {t['name']} {t['target']} | {_fmt(t['measured'])} | {met} |")
    return "\n".join(lines) + "\n"


def _idle_stack_lines(idle_stack: dict[str, Any] | None) -> list[str]:
    if not idle_stack:
        return []
    cores = idle_stack["cpu_cores"]
    parts = " + ".join(f"{name} {100 * cores[name]:.2f}" for name in
                       ("edge", "worker", "sim", "kafka") if name in cores)
    return ["", f"Idle stack, no traffic for {idle_stack['hold_s']:g} s (% of a core): {parts} = "
            f"{100 * idle_stack['stack_cpu_cores']:.2f}; other load on host "
            f"{idle_stack['background_cores']:.2f} cores."]


def _cancel_table(cancel: dict[str, Any] | None) -> list[str]:
    if not cancel:
        return []
    lines = [
        "", f"| cancel: {cancel['streams']} streams x {cancel['tokens_per_answer']} tokens at "
        f"{cancel['tps']:g} tok/s; once all generate, each cancelled 3..20 tokens' time later "
        "| p50 ms | p99 ms | max ms |",
        "| --- | --- | --- | --- |",
    ]
    for what, key in (("cancel POST → upstream connection closed", "post_to_upstream_closed_ms"),
                      ("cancel POST → 202", "post_to_202_ms"),
                      ("cancel POST → `done` at the client", "post_to_done_ms")):
        d = cancel[key]
        lines.append(f"| {what} | {_ms(d['p50'])} | {_ms(d['p99'])} | {_ms(d['max'])} |")
    lines += ["", f"Cancelled ok {cancel['cancelled_ok']}/{cancel['streams']}, missing upstream "
              f"close {cancel['missing_close']}, wrong finish {cancel['wrong_finish']}; other "
              f"load on host {cancel['machine']['background_cores']:.2f} cores."]
    worker = cancel.get("worker_cancel_seconds")
    if worker and worker["count"]:
        lines[-1] += (f" The worker's own histogram (edge's requested_at → upstream closed): "
                      f"{worker['count']} cancels, mean {_ms(worker['mean_ms'])} ms, p99 ≤ "
                      f"{_ms(worker['p99_at_most_ms'])} ms.")
    return lines


def _fmt(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items())
    return "-" if value is None else str(value)
