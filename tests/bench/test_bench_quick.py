"""``tokenwire bench --quick`` at tiny scale against real processes: clean, and a full report.

No timing is asserted: the numbers depend on the machine; what must hold anywhere is that every
token arrives once and in order on both paths, that every cancelled stream ends ``cancelled`` with
its upstream call seen closed by the simulator, and that the outputs are complete.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

RUN_TIMEOUT_S = 240


@pytest.fixture(scope="module")
def quick_report(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
                 ) -> tuple[dict[str, Any], Path, subprocess.CompletedProcess[str]]:
    out = tmp_path_factory.mktemp("bench")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOKENWIRE_")}
    env["TOKENWIRE_KAFKA_BOOTSTRAP"] = kafka_bootstrap
    done = subprocess.run(
        [sys.executable, "-m", "tokenwire.cli", "bench", "--quick", "--concurrency", "3",
         "--idle", "40", "--idle-sessions", "4", "--out", str(out)],
        env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT_S,
    )
    report_path = out / "report.json"
    assert report_path.exists(), f"no report (exit {done.returncode}):\n{done.stderr[-4000:]}"
    return json.loads(report_path.read_text()), out, done


pytestmark = pytest.mark.slow


def test_the_quick_run_succeeds_and_writes_report_chart_and_table(quick_report) -> None:
    report, out, done = quick_report
    assert done.returncode == 0, done.stderr[-4000:]
    assert report["schema"] == "tokenwire-bench/1"
    assert (out / "latency.png").stat().st_size > 1000
    assert "| target | measured | met |" in (out / "results.md").read_text()
    assert {"nproc", "python", "mem_total_gib"} <= report["machine"].keys()


def test_every_token_arrives_once_and_in_order_on_both_paths(quick_report) -> None:
    report, _, _ = quick_report
    [scenario] = report["streaming"]
    assert scenario["concurrency"] == 3
    for mode in ("pipeline", "relay"):
        figures = scenario[mode]
        assert figures["clean"], (mode, figures["error_samples"])
        assert figures["requests"] == figures["expected_requests"] == 3 * 2
        assert figures["tokens_delivered"] == figures["tokens_expected"] == 3 * 2 * 20
        assert figures["lost"] == figures["duplicated"] == figures["reordered"] == 0
        assert figures["latency_ms"]["count"] == figures["tokens_delivered"]
        assert figures["ttft_added_ms"]["count"] == figures["requests"]
        assert figures["cpu_s_per_1k_tokens"].keys() >= {"worker", "edge", "relay", "sim"}
    assert {"latency_ms", "ttft_ms"} <= set(scenario["added"])


def test_idle_connections_are_held_with_heartbeats(quick_report) -> None:
    report, _, _ = quick_report
    [level] = report["idle"]["levels"]
    assert level["open"] == level["connections"] == 40
    assert level["failed"] == level["dropped"] == 0
    assert level["per_connection_kib"] > 0
    assert report["idle"]["heartbeats"]["min_heartbeats_per_connection"] >= 1


def test_the_idle_stack_cpu_is_reported(quick_report) -> None:
    report, out, _ = quick_report
    idle_stack = report["idle_stack"]
    assert idle_stack["cpu_cores"].keys() >= {"edge", "worker", "sim"}
    assert idle_stack["stack_cpu_cores"] >= idle_stack["processes_cpu_cores"] >= 0
    target = next(t for t in report["targets"] if t["name"].startswith("idle stack"))
    assert target["measured"]["total_pct"] == round(100 * idle_stack["stack_cpu_cores"], 2)
    assert "Idle stack, no traffic" in (out / "results.md").read_text()


def test_every_cancel_is_matched_to_a_closed_upstream_stream(quick_report) -> None:
    report, out, _ = quick_report
    cancel = report["cancel"]
    assert cancel["streams"] == 3
    assert cancel["clean"], cancel["error_samples"]
    assert cancel["cancelled_ok"] == 3
    assert cancel["missing_close"] == cancel["wrong_finish"] == cancel["not_accepted"] == 0
    for stream in cancel["streams_detail"]:
        assert stream["status"] == 202
        assert stream["finish_reason"] == "cancelled"
        assert stream["closed_at"] is not None and stream["closed_at"] >= stream["posted_at"]
        assert stream["prefix_ok"], stream
        assert stream["tokens_before_cancel"] >= 1
    for key in ("post_to_upstream_closed_ms", "post_to_202_ms", "post_to_done_ms"):
        assert cancel[key]["count"] == 3
    assert "cancel POST → upstream connection closed" in (out / "results.md").read_text()


def test_every_target_is_reported(quick_report) -> None:
    report, _, _ = quick_report
    names = [t["name"] for t in report["targets"]]
    assert len(names) == 8
    cancel = next(t for t in report["targets"] if t["name"].startswith("cancel"))
    assert cancel["measured"]["cancelled_ok"] == "3/3"
    integrity = next(t for t in report["targets"] if "lost/" in t["name"])
    assert integrity["met"] is True
