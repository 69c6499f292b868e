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
from tokenwire.bench.stats import cpu_per_1k

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


def layout_figures(row: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A concurrency's pipeline figures by layout (a report from before layouts: its one
    pipeline, which ran in the topic layout)."""
    figures: dict[str, dict[str, Any]] = row.get("layouts") or {
        row.get("layout", "topic"): row["pipeline"]}
    return figures


def layout_added(row: dict[str, Any]) -> dict[str, dict[str, Any]]:
    added: dict[str, dict[str, Any]] = row.get("added_by_layout") or {
        next(iter(layout_figures(row))): row["added"]}
    return added


def targets(streaming: list[dict[str, Any]], idle: dict[str, Any] | None,
            config: BenchConfig, cancel: dict[str, Any] | None = None,
            idle_stack: dict[str, Any] | None = None,
            scale_out: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Each target of the issue with its measured value; ``met`` is None when not measured.
    The latency targets are checked in every layout; the integrity one over every scenario."""
    out = []
    for layout in config.layouts:
        out += _latency_targets(streaming, config, layout)
    out += _idle_targets(idle)
    out.append(_idle_stack_target(idle_stack))
    pipelines = [f for s in streaming for f in layout_figures(s).values()]
    pipelines += [s["pipeline"] for s in scale_out or []]
    clean = all(f["clean"] for f in pipelines)
    totals = {k: sum(f[k] for f in pipelines)
              for k in ("lost", "duplicated", "reordered", "errors", "unfinished_requests",
                        "missing_requests")}
    idle_clean = idle is None or all(
        lvl["failed"] == 0 and lvl["dropped"] == 0 for lvl in idle["levels"])
    relay_errors = sum(s["relay"]["errors"] + s["relay"]["lost"] for s in streaming)
    note = f"the baseline relay had {relay_errors} errors/lost tokens" if relay_errors else ""
    # Idle connections count too: one failed or dropped is a loss; with neither part run
    # there is nothing to judge.
    met = clean and idle_clean if streaming or idle is not None else None
    out.append(_target("pipeline: lost/duplicated/reordered tokens, errors", "0 in every scenario",
                       totals, met, note))
    out.append(_cancel_target(cancel))
    return out


def _latency_targets(streaming: list[dict[str, Any]], config: BenchConfig, layout: str
                     ) -> list[dict[str, Any]]:
    names = [(f"added per-token latency p50 ({layout} layout)", "<= 5 ms"),
             (f"added per-token latency p99 ({layout} layout)", "<= 25 ms"),
             (f"added TTFT p50 (over the simulator's TTFT; {layout} layout)", "<= 30 ms")]
    at = next((s for s in streaming if s["concurrency"] == TARGET_CONCURRENCY), None)
    if at is None or config.tps != TARGET_TPS or layout not in layout_figures(at):
        note = f"not measured: needs --concurrency including {TARGET_CONCURRENCY} and --tps 30"
        return [_target(n, t, None, None, note) for n, t in names]
    where = f"{TARGET_CONCURRENCY} streams x {TARGET_TPS:g} tok/s"
    lat = layout_added(at)[layout]["latency_ms"]
    ttft = layout_figures(at)[layout]["ttft_added_ms"]
    limits = (("p50", lat["p50"], 5), ("p99", lat["p99"], 25), ("p50", ttft["p50"], 30))
    return [_target(name, target, value, value is not None and value <= limit, where)
            for (name, target), (_, value, limit) in zip(names, limits, strict=True)]


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
          idle_stack: dict[str, Any] | None = None,
          scale_out: list[dict[str, Any]] | None = None) -> dict[str, Any]:
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
        # The shared layout on 2 workers + 2 edges, at the same concurrencies as ``streaming``.
        "scale_out": scale_out or [],
        "targets": targets(streaming, idle, config, cancel, idle_stack, scale_out),
    }


def write(report: dict[str, Any], out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "report.json"
    path.write_text(json.dumps(report, indent=2, allow_nan=False, default=str) + "\n")
    return path


def _ms(value: Any) -> str:
    return "-" if value is None else f"{value:.1f}"


def markdown(report: dict[str, Any]) -> str:
    """The short results tables for the README."""
    m = report["machine"]
    lines = [
        f"Machine: {m['nproc']} cores ({m['cpu_model'] or 'unknown CPU'}), "
        f"{m['mem_total_gib']} GiB, Python {m['python']}; Kafka, worker, edge, simulator and "
        "clients on the same host, loopback.",
    ]
    lines += _streaming_table(report)
    lines += _scale_out_table(report)
    idle = report.get("idle")
    if idle and idle["levels"]:
        layout = report["config"].get("layouts", ["topic"])[0]
        lines += ["", f"| idle SSE connections ({layout} layout) | edge RSS MiB "
                  "| KiB per connection | open |",
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


PATH_HEADER = [
    "| streams x tok/s | path | per-token p50 / p99 ms | added p50 / p99 ms "
    "| TTFT over the simulator's p50 / p99 ms | tok/s delivered "
    "| CPU s / 1k tok (worker + edge + broker* = total) | total / relay | lost/dup/reord "
    "| other load on host (cores) |",
    "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
]


def _streaming_table(report: dict[str, Any]) -> list[str]:
    streaming = report["streaming"]
    if not streaming:
        return []
    tps = report["config"]["tps"]
    lines = ["", *PATH_HEADER]
    for s in streaming:
        relay = s["relay"]
        lines.append(_path_row(f"{s['concurrency']} x {tps:g}", "relay", relay, None,
                               f"relay {_cpu(relay['cpu_s_per_1k_tokens'].get('relay'))}", "1.0"))
        added = layout_added(s)
        for layout, figures in layout_figures(s).items():
            cpu = added[layout].get("cpu_s_per_1k_tokens") or cpu_per_1k(figures, relay)
            lines.append(_path_row("", f"pipeline, {layout} layout", figures, added[layout],
                                   _cpu_sum(cpu), _ratio(cpu)))
    layouts = list(layout_figures(streaming[0]))
    primary = layouts[0]
    lines += ["", "*broker: the shared broker's CPU less its rate while only the relay ran. "
              "The simulator's CPU (the LLM's stand-in, the same on both paths) is in neither "
              "total."]
    if len(layouts) > 1:
        lines += ["", f"The relay ran once per concurrency, interleaved with the {primary} "
                  f"layout's pipeline; the {', '.join(layouts[1:])} layout ran afterwards on a "
                  "fresh worker and edge of its own (own topics and consumer group) at the same "
                  "concurrencies, compared with those relay figures (the last column shows what "
                  "else loaded the host meanwhile)."]
    lines += ["", f"Cancels, the idle stack and idle connections: {primary} layout only."]
    return lines


def _path_row(first: str, path: str, figures: dict[str, Any], added: dict[str, Any] | None,
              cpu: str, ratio: str) -> str:
    lat, ttft = figures["latency_ms"], figures["ttft_added_ms"]
    more = "-" if added is None else _pair(added["latency_ms"])
    return (f"| {first} | {path} | {_pair(lat)} | {more} | {_pair(ttft)} "
            f"| {figures['tokens_per_s']} | {cpu} | {ratio} "
            f"| {figures['lost']}/{figures['duplicated']}/{figures['reordered']} "
            f"| {figures['machine']['background_cores']:.2f} |")


def _scale_out_table(report: dict[str, Any]) -> list[str]:
    scale_out = report.get("scale_out") or []
    if not scale_out:
        return []
    tps = report["config"]["tps"]
    rows = {s["concurrency"]: s for s in report["streaming"]}
    lines = [
        "", "| streams x tok/s | shared layout on | tok/s delivered | added per-token p50 / p99 "
        "ms | TTFT over the simulator's p50 / p99 ms | CPU s / 1k tok (workers + edges + "
        "broker* = total) | total / relay | lost/dup/reord | other load on host (cores) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    notes = []
    for s in scale_out:
        n = s["concurrency"]
        one = rows.get(n)
        setups = []
        if one is not None and "shared" in layout_figures(one):
            setups.append(("1 worker + 1 edge", layout_figures(one)["shared"],
                           layout_added(one)["shared"]))
        setups.append((f"{s['workers']} workers + {s['edges']} edges", s["pipeline"],
                       s["added"]))
        for k, (setup, figures, added) in enumerate(setups):
            cpu = added["cpu_s_per_1k_tokens"]
            lines.append(
                f"| {'' if k else f'{n} x {tps:g}'} | {setup} | {figures['tokens_per_s']} "
                f"| {_pair(added['latency_ms'])} | {_pair(figures['ttft_added_ms'])} "
                f"| {_cpu_sum(cpu)} | {_ratio(cpu)} "
                f"| {figures['lost']}/{figures['duplicated']}/{figures['reordered']} "
                f"| {figures['machine']['background_cores']:.2f} |")
        per_edge = " / ".join(str(v) for v in s["pipeline"].get("requests_per_edge", {}).values())
        owned = " / ".join(",".join(str(p) for p in parts) for parts in s["assignment"])
        notes.append(f"at {n} streams: chat.requests partitions per worker {owned}; requests "
                     f"per edge {per_edge or '-'}")
    lines += ["", "2 workers (one consumer group) + 2 edges, clients alternating between the "
              "edges, at the same offered load as 1 + 1 in the same run (after it, on fresh "
              "processes and topics of their own); CPU summed over every worker and edge. "
              + "; ".join(notes) + "."]
    return lines


def _pair(d: dict[str, Any]) -> str:
    return f"{_ms(d.get('p50'))} / {_ms(d.get('p99'))}"


def _cpu(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _cpu_sum(cpu: dict[str, Any]) -> str:
    return (f"{_cpu(cpu['workers'])} + {_cpu(cpu['edges'])} + {_cpu(cpu['broker_net'])} = "
            f"{_cpu(cpu['total'])}")


def _ratio(cpu: dict[str, Any]) -> str:
    ratio = cpu.get("total_over_relay")
    return "-" if ratio is None else f"{ratio:.1f}"


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
