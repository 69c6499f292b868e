"""The ``openai`` npm package (the real one, tests/js) against a real edge, worker and simulator.

The Node file (tests/js/openai.test.mjs) holds the scenarios; this side makes the prompts (fresh per
run: the simulator counts calls per conversation) and what the simulator answers to each, exactly.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from tests.fixtures.credentials import caller_jwt
from tests.fixtures.node import run_node_test
from tests.fixtures.pipeline import WorkerProcess
from tokenwire.settings import Settings
from tokenwire.simulator.script import expected_text, expected_tool_calls


def cases(marker: str) -> dict[str, Any]:
    prompts = {
        "stream": f"[[sim: tokens=25]] stream me {marker}",
        "plain": f"[[sim: tokens=10]] plain {marker}",
        "tool": f'[[sim: tool=get_weather args={{"city":"Paris"}}]] weather {marker}',
        "refused": f"[[sim: fail=400]] refuse me {marker}",
    }
    return {
        name: {"prompt": prompt, "text": expected_text([{"role": "user", "content": prompt}]),
               "tool_calls": expected_tool_calls([{"role": "user", "content": prompt}])}
        for name, prompt in prompts.items()
    }  # fmt: skip


async def test_the_openai_npm_package_streams_completes_calls_tools_and_fails_typed(
    worker: WorkerProcess, edge_url: str, pipeline_settings: Settings
) -> None:
    marker = uuid.uuid4().hex
    output = await run_node_test(
        "openai.test.mjs",
        env={
            "TOKENWIRE_EDGE_URL": edge_url,
            "TOKENWIRE_CALLER_JWT": caller_jwt(f"openai-js-{marker[:8]}"),
            "TOKENWIRE_MODEL": pipeline_settings.default_model,
            "TOKENWIRE_CASES": json.dumps(cases(marker)),
        },
    )
    assert "pass 4" in output and "fail 0" in output, output
