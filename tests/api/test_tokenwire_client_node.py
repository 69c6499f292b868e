"""tokenwire.js (clients/js) in Node against a real edge, worker and simulator.

The Node file (tests/js/tokenwire_client.test.mjs) holds the scenarios; this side makes the
prompts (fresh per run: the simulator counts calls per conversation, so a cut happens once)
and what the simulator will answer to each, exactly.
"""

from __future__ import annotations

import uuid
from typing import Any

from tests.fixtures.node import expected_answers, node_env, run_node_test
from tests.fixtures.pipeline import WorkerProcess
from tokenwire.simulator import expected_text


def _user(prompt: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": prompt}]


def cases(marker: str) -> dict[str, Any]:
    prompts = {
        "plain": f"Hello from tokenwire.js {marker}",
        "tools": (
            f'[[sim: tool=get_weather args={{"city":"Paris","unit":"c"}} '
            f'tool=get_time args={{"zone":"Europe/Paris"}}]] weather and time {marker}'
        ),
        "cut": f"[[sim: tokens=40 cut_after=12 tps=200]] cut me {marker}",
        "dropped": f"[[sim: tokens=80 tps=100]] drop me {marker}",
        "cancel": f"[[sim: tokens=400 tps=20]] stop me {marker}",
        "attach": f"[[sim: tokens=60 tps=60]] attach me {marker}",
        "first": f"first turn {marker}",
        "second": f"second turn {marker}",
    }
    out = expected_answers(prompts)
    follow_up = [
        *_user(prompts["first"]),
        {"role": "assistant", "content": out["first"]["text"]},
        *_user(prompts["second"]),
    ]
    out["second"]["text"] = expected_text(follow_up)
    return out


async def test_tokenwire_js_streams_resumes_retries_assembles_and_cancels(
    worker: WorkerProcess, edge_url: str
) -> None:
    marker = uuid.uuid4().hex
    await run_node_test(
        "tokenwire_client.test.mjs",
        env=node_env(edge_url, f"js-{marker[:8]}", cases(marker)),
    )
