"""``tokenwire bench --quick`` at tiny scale against real processes: clean, and a full report.

No timing is asserted: the numbers depend on the machine; what must hold anywhere is that every
token arrives once and in order on every path (the relay, the pipeline in each session layout,
the shared layout on 2 workers + 2 edges), that every cancelled stream ends ``cancelled`` with
its upstream call seen closed by the simulator, and that the outputs are complete.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tokenwire.bench import chart
from tokenwire.bench import report as bench_report

RUN_TIMEOUT_S = 480
REQUESTS = 3 * 2
TOKENS = REQUESTS * 20
PARTITIONS = 6


@pytest.fixture(scope="module")
def quick_report(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
                 ) -> tuple[dict[str, Any], Path, subprocess.CompletedProcess[str]]:
    out = tmp_path_factory.mktemp("bench")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOKENWIRE_")}
    env["TOKENWIRE_KAFKA_BOOTSTRAP"] = kafka_bootstrap
    env["TOKENWIRE_REQUESTS_PARTITIONS"] = str(PARTITIONS)
    done = subprocess.run(
        [sys.executable, "-m", "tokenwire.cli", "bench", "--quick", "--concurrency", "3",
         "--idle", "40", "--idle-sessions", "4", "--layouts", "topic,shared",
         "--scale-out", "all", "--out", str(out)],
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
    table = (out / "results.md").read_text()
    assert "| target | measured | met |" in table
    assert "| pipeline, topic layout |" in table and "| pipeline, shared layout |" in table
    assert {"nproc", "python", "mem_total_gib"} <= report["machine"].keys()


def _assert_clean(figures: dict[str, Any], what: str) -> None:
    assert figures["clean"], (what, figures["error_samples"])
    assert figures["requests"] == figures["expected_requests"] == REQUESTS, what
    assert figures["tokens_delivered"] == figures["tokens_expected"] == TOKENS, what
    assert figures["lost"] == figures["duplicated"] == figures["reordered"] == 0, what
    assert figures["errors"] == figures["retries"] == figures["id_violations"] == 0, what
    assert figures["latency_ms"]["count"] == figures["tokens_delivered"], what
    assert figures["ttft_added_ms"]["count"] == figures["requests"], what


def test_every_token_arrives_once_and_in_order_on_every_path(quick_report) -> None:
    report, _, _ = quick_report
    [scenario] = report["streaming"]
    assert scenario["concurrency"] == 3
    _assert_clean(scenario["relay"], "relay")
    assert scenario["relay"]["cpu_s_per_1k_tokens"].keys() >= {"relay", "sim"}
    assert scenario["layouts"].keys() == scenario["added_by_layout"].keys() == {"topic", "shared"}
    for layout, figures in scenario["layouts"].items():
        _assert_clean(figures, layout)
        assert figures["cpu_s_per_1k_tokens"].keys() >= {"worker", "edge", "sim"}
        assert list(figures["requests_per_edge"].values()) == [REQUESTS]
        added = scenario["added_by_layout"][layout]
        assert {"latency_ms", "ttft_ms"} <= added.keys()
        cpu = added["cpu_s_per_1k_tokens"]
        assert cpu["total"] is not None and cpu["total"] >= cpu["workers"] + cpu["edges"]
        assert cpu["total_over_relay"] is not None


def test_the_first_layout_keeps_the_shape_reports_read_before_layouts(quick_report) -> None:
    report, _, _ = quick_report
    [scenario] = report["streaming"]
    assert report["config"]["layouts"] == ["topic", "shared"]
    assert scenario["layout"] == "topic"
    assert scenario["pipeline"] == scenario["layouts"]["topic"]
    assert scenario["added"] == scenario["added_by_layout"]["topic"]


def test_two_workers_share_the_partitions_and_clients_use_both_edges(quick_report) -> None:
    report, out, _ = quick_report
    [scaled] = report["scale_out"]
    assert (scaled["concurrency"], scaled["layout"]) == (3, "shared")
    assert scaled["workers"] == scaled["edges"] == 2
    owned = scaled["assignment"]
    assert len(owned) == 2 and all(owned)
    assert sorted(p for parts in owned for p in parts) == list(range(PARTITIONS))
    figures = scaled["pipeline"]
    _assert_clean(figures, "2 workers + 2 edges")
    # Sessions 0 and 2 on the first edge, session 1 on the second, 2 requests each.
    assert sorted(figures["requests_per_edge"].values()) == [2, 4]
    assert figures["cpu_s_per_1k_tokens"].keys() >= {"worker", "worker2", "edge", "edge2"}
    cpu = scaled["added"]["cpu_s_per_1k_tokens"]
    per = figures["cpu_s_per_1k_tokens"]
    assert cpu["workers"] == round(per["worker"] + per["worker2"], 4)
    assert cpu["edges"] == round(per["edge"] + per["edge2"], 4)
    table = (out / "results.md").read_text()
    assert "| 1 worker + 1 edge |" in table and "| 2 workers + 2 edges |" in table


def test_a_report_from_before_layouts_still_renders(quick_report) -> None:
    old = copy.deepcopy(quick_report[0])
    for row in old["streaming"]:
        for key in ("layout", "layouts", "added_by_layout"):
            del row[key]
        del row["added"]["cpu_s_per_1k_tokens"]
    del old["scale_out"]
    table = bench_report.markdown(old)
    assert "| pipeline, topic layout |" in table and "2 workers" not in table
    assert list(chart.series(old)) == ["relay", "topic"]


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
    # Three latency targets per layout, two idle, the idle stack, integrity, cancels.
    assert len(names) == 3 * 2 + 5
    assert sum("shared layout)" in name for name in names) == 3
    cancel = next(t for t in report["targets"] if t["name"].startswith("cancel"))
    assert cancel["measured"]["cancelled_ok"] == "3/3"
    integrity = next(t for t in report["targets"] if "lost/" in t["name"])
    assert integrity["met"] is True
