"""``python -m tokenwire.bench.scale`` at tiny scale, in both layouts, against real processes.

No timing is asserted (the figures depend on the machine): what must hold anywhere is that every
new session's answer arrives exact, that the summary carries its figures, and that the run's
topics are gone afterwards.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient

SESSIONS = 30
RUN_TIMEOUT_S = 300

pytestmark = pytest.mark.slow


def _run(kafka_bootstrap: str, layout: str, out: Path) -> tuple[dict[str, Any], str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOKENWIRE_")}
    env["TOKENWIRE_KAFKA_BOOTSTRAP"] = kafka_bootstrap
    done = subprocess.run(
        [sys.executable, "-m", "tokenwire.bench.scale", "--layout", layout,
         "--sessions", str(SESSIONS), "--concurrency", "10", "--window", "20",
         "--sample-s", "0.5", "--out", str(out)],
        env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT_S,
    )
    assert done.returncode == 0, (done.stdout[-4000:], done.stderr[-4000:])
    [written] = out.glob(f"scale-{layout}-{SESSIONS}-*.json")
    printed = json.loads(done.stdout)
    assert printed["file"] == str(written)
    return json.loads(written.read_text()), done.stderr


@pytest.fixture(scope="module", params=["shared", "topic"])
def summary(request: pytest.FixtureRequest, kafka_bootstrap: str,
            tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp(f"scale-{request.param}")
    report, _ = _run(kafka_bootstrap, request.param, out)
    assert report["layout"] == request.param
    return report


def test_every_new_session_gets_its_exact_answer(summary: dict[str, Any]) -> None:
    assert summary["failure_examples"] == []
    assert summary["sessions_done"] == summary["sessions_ok"] == SESSIONS
    assert summary["failures"] == 0 and summary["all_exact"]
    assert summary["ttft_ms"]["count"] == SESSIONS
    assert summary["token_latency_ms"]["count"] == SESSIONS * summary["config"]["tokens"]


def test_the_summary_has_the_scale_figures(summary: dict[str, Any]) -> None:
    assert {"wall_s", "new_sessions_per_s", "windows", "cpu_ms_per_session", "samples"} <= set(
        summary
    )
    # One full window of 20 and the partial rest, each with a broker sample.
    assert [(w["sessions"], w["partial"]) for w in summary["windows"]] == [(20, False), (30, True)]
    broker = summary["broker"]
    assert broker is not None, "the tests' broker is the local one: its process is sampled"
    for sample in (broker["start"], broker["end"], *(w["broker"] for w in summary["windows"])):
        assert {"open_files", "mmaps", "rss_mib", "cpu_s"} <= set(sample)
        assert sample["open_files"] > 0
    assert set(broker["per_10000_sessions"]) == {"open_files", "mmaps", "rss_mib"}
    assert broker["per_10000_extrapolated"] is True
    assert {"sim", "worker", "edge", "clients"} <= set(summary["cpu_ms_per_session"])


async def test_the_run_deletes_its_topics(
    summary: dict[str, Any], kafka_admin: AIOKafkaAdminClient
) -> None:
    topics = summary["topics"]
    # Core topics, plus the shared pair or one topic per session (and the warm-up's).
    expected_at_least = 5 + (2 if summary["layout"] == "shared" else SESSIONS)
    assert topics["run_end"] >= expected_at_least
    assert topics["deleted"] == topics["run_end"]
    left = [t for t in await kafka_admin.list_topics() if t.startswith(summary["tag"])]
    assert left == []
