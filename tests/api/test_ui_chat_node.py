"""The AI SDK (``ai`` v5 and v7, the real npm packages) against a real edge, worker and simulator.

The Node file (tests/js/ui_chat.test.mjs) holds the scenarios; this side makes the prompts (fresh
per run and per SDK: the simulator counts calls per conversation, so a cut happens once) and what
the simulator answers to each, exactly.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from schemas.messages import ChatMessage
from tests.fixtures.node import expected_answers, node_env, run_node_test
from tests.fixtures.pipeline import WorkerProcess
from tokenwire.simulator import expected_text, expected_tokens

SDK_PACKAGES = ("ai", "ai-v7")
TOOL_OUTPUT = {"temperature": 21, "unit": "c"}
RESUME_CUT = 10


def _user(prompt: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": prompt}]


def _answered(prompt: str, call: dict[str, Any], output: Any) -> list[dict[str, Any]]:
    """The conversation after the client added the tool's output, as the worker sends it."""
    return [
        *_user(prompt),
        ChatMessage.model_validate({"role": "assistant", "tool_calls": [call]}).wire(),
        {"role": "tool", "tool_call_id": call["id"],
         "content": json.dumps(output, separators=(",", ":"))},
    ]  # fmt: skip


def cases(marker: str) -> dict[str, Any]:
    prompts = {
        "plain": f"Hello from the AI SDK {marker}",
        "tool": f'[[sim: tool=get_weather args={{"city":"Paris","unit":"c"}}]] weather {marker}',
        "cut": f"[[sim: tokens=40 cut_after=12 tps=200]] cut me {marker}",
        # Cut and retried before the client drops: the resume's backlog holds both attempts.
        "resume": f"[[sim: tokens=80 tps=40 cut_after={RESUME_CUT}]] drop, resume {marker}",
        "stop": f"[[sim: tokens=400 tps=20]] stop me {marker}",
    }
    out = expected_answers(prompts)
    before_cut = expected_tokens(_user(prompts["resume"]))[:RESUME_CUT]
    out["resume"]["cut_chars"] = len("".join(before_cut))
    [call] = out["tool"]["tool_calls"]
    out["tool"]["output"] = TOOL_OUTPUT
    out["tool"]["follow_up"] = expected_text(_answered(prompts["tool"], call, TOOL_OUTPUT))
    return out


async def test_the_ai_sdk_streams_calls_tools_retries_resumes_and_stops(
    worker: WorkerProcess, edge_url: str
) -> None:
    marker = uuid.uuid4().hex
    output = await run_node_test(
        "ui_chat.test.mjs",
        env=node_env(edge_url, f"ai-sdk-{marker[:8]}",
                     {name: cases(f"{marker} {name}") for name in SDK_PACKAGES}),
    )
    # Both SDK majors ran (an import that failed would fail its suite, not skip it).
    print(output)
    assert "ai v5 (ai)" in output and "ai v7 (ai-v7)" in output, output
