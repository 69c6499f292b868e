"""A provider's chunk is hostile input: a shape the events cannot carry is ``bad_chunk``.

Found in review: values that passed the parser but failed later, in the session writer (a
negative tool call index, a finish_reason that is no string, a delta that is no object), ended
the request as an ``internal`` error instead of a retryable ``bad_chunk``; a usage chunk with a
non-integer count threw a finished answer away.
"""

from __future__ import annotations

from typing import Any

import pytest

from agents.chat.llm_stream import parse_choice, parse_usage
from tokenwire.errors import GenerationError


@pytest.mark.parametrize(
    "choice",
    [
        {"delta": {"tool_calls": [{"index": -1, "id": "c", "function": {"name": "f"}}]}},
        {"delta": {"tool_calls": [{"index": True, "function": {"arguments": "{}"}}]}},
        {"delta": {"content": "x"}, "finish_reason": 1},
        {"delta": ["not", "an", "object"]},
    ],
)
def test_a_chunk_the_events_cannot_carry_is_a_retryable_bad_chunk(choice: dict[str, Any]) -> None:
    with pytest.raises(GenerationError) as raised:
        parse_choice(choice, received_at=1.0)
    assert raised.value.code == "bad_chunk" and raised.value.retryable


def test_a_usage_chunk_with_odd_counts_counts_them_as_zero() -> None:
    usage = parse_usage({"prompt_tokens": "12", "completion_tokens": 5.5, "total_tokens": -3})
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (0, 0, 0)


def test_a_tool_call_fragment_parses_into_its_delta() -> None:
    chunk = parse_choice({"delta": {"tool_calls": [{"index": 1, "id": "call_1", "type":
                          "function", "function": {"name": "f", "arguments": "{\"a"}}]}},
                          received_at=2.0)  # fmt: skip
    [call] = chunk.tool_calls
    assert (call.index, call.id, call.name, call.arguments) == (1, "call_1", "f", '{"a')
