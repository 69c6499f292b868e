"""The fault report: one row per scenario run, then what went wrong, if anything."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from tokenwire.faults.scenarios import ScenarioResult

HEADER = (
    "| scenario | chats | requests | exact | retried | reconnects | id errors | replay verify "
    "| longest gap ms | p50 / p99 of per-request longest gap ms | group stable again s "
    "| fault took s |"
)


def markdown(results: list[ScenarioResult], *, tokens_per_s: float) -> str:
    lines = [
        f"Token interval of the simulator: {1000.0 / tokens_per_s:.0f} ms; a gap is the longest "
        "time between two tokens of one request while the fault happened.",
        "",
        HEADER,
        "|" + "---|" * 12,
    ]
    for r in results:
        stable = "never" if r.group_stable_s is None else f"{r.group_stable_s:.1f}"
        lines.append(
            f"| {r.name} | {r.chats} | {r.requests} | {r.exact} | {r.retried} | {r.reconnects} "
            f"| {r.id_violations} | {'pass' if r.verify_ok else 'FAIL'} | {r.gaps.longest_ms:.0f} "
            f"| {r.gaps.p50_of_longest_ms:.0f} / {r.gaps.p99_of_longest_ms:.0f} | {stable} "
            f"| {r.fault_s:.1f} |"
        )
    for r in results:
        details = [*r.notes, *r.not_exact, *r.verify_findings, *r.client_errors[:5]]
        if details:
            lines += ["", f"{r.name}:", *(f"- {d}" for d in details)]
    return "\n".join(lines)


def as_json(results: list[ScenarioResult]) -> str:
    def row(r: ScenarioResult) -> dict[str, Any]:
        return {**asdict(r), "ok": r.ok}

    return json.dumps([row(r) for r in results], indent=2)
