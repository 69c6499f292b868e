"""The ``openai`` npm package (the real one, tests/js) against a real edge, worker and simulator.

The Node file (tests/js/openai.test.mjs) holds the scenarios; this side makes the prompts (fresh per
run: the simulator counts calls per conversation) and what the simulator answers to each, exactly.
"""

from __future__ import annotations

import uuid
from typing import Any

from tests.fixtures.node import expected_answers, node_env, run_node_test
from tests.fixtures.pipeline import WorkerProcess
from tokenwire.settings import Settings


def cases(marker: str) -> dict[str, Any]:
    prompts = {
        "stream": f"[[sim: tokens=25]] stream me {marker}",
        "plain": f"[[sim: tokens=10]] plain {marker}",
        "tool": f'[[sim: tool=get_weather args={{"city":"Paris"}}]] weather {marker}',
        "refused": f"[[sim: fail=400]] refuse me {marker}",
    }
    return expected_answers(prompts)


async def test_the_openai_npm_package_streams_completes_calls_tools_and_fails_typed(
    worker: WorkerProcess, edge_url: str, pipeline_settings: Settings
) -> None:
    marker = uuid.uuid4().hex
    output = await run_node_test(
        "openai.test.mjs",
        env=node_env(edge_url, f"openai-js-{marker[:8]}", cases(marker),
                     TOKENWIRE_MODEL=pipeline_settings.default_model),
    )
    assert "pass 4" in output and "fail 0" in output, output
