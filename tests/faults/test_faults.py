"""Faults across many processes, shortened: 2 workers, 2 edges, 3 brokers, 20 chats each.

Each scenario kills or restarts real processes mid-stream (see tokenwire/faults/scenarios.py);
what the clients assembled must be the simulator's answers exactly, no SSE id repeated or out
of order across reconnects to the other edge, and ``replay verify`` passes over the run's
topics. How long the gaps were is reported by ``tokenwire faults``, not asserted here.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tokenwire.faults.chats import ChatPlan
from tokenwire.faults.report import markdown
from tokenwire.faults.scenarios import SCENARIOS, run_scenario
from tokenwire.settings import Settings

CHATS = 20
SHORT = ChatPlan(tokens=60, tokens_per_s=40.0, ttft_ms=100.0)


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
async def test_every_chat_gets_its_whole_answer_through_the_fault(
    scenario: str, kafka_cluster3: Settings, tmp_path: Path
) -> None:
    result = await run_scenario(scenario, kafka_cluster3, tmp_path, chats=CHATS, plan=SHORT)

    seen = markdown([result], tokens_per_s=SHORT.tokens_per_s)
    assert result.requests >= CHATS, seen
    assert result.verify_ok, seen
    assert result.not_exact == [], seen
    assert result.exact == result.requests, seen
    assert result.id_violations == 0, seen
    assert not [e for e in result.client_errors if ": post: " in e], seen
