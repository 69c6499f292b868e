"""An OpenAI-compatible LLM simulator with deterministic answers and injectable faults.

Run it with ``tokenwire sim``; predict its answers in tests with :func:`expected_text`,
:func:`expected_tool_calls`, :func:`expected_refusal` and :func:`expected_reasoning`.
The directives (``[[sim: fail=429x2 retry_after=0.2]]``, ``tool=... args={...}`` ...) are
documented in :mod:`tokenwire.simulator.script`.
"""

from tokenwire.simulator.script import (
    DEFAULT_TOKENS,
    REFUSAL_TEXT,
    DirectiveError,
    Directives,
    expected_reasoning,
    expected_refusal,
    expected_text,
    expected_tokens,
    expected_tool_calls,
    parse_directives,
    strip_directives,
)

__all__ = [
    "DEFAULT_TOKENS",
    "REFUSAL_TEXT",
    "DirectiveError",
    "Directives",
    "expected_reasoning",
    "expected_refusal",
    "expected_text",
    "expected_tokens",
    "expected_tool_calls",
    "parse_directives",
    "strip_directives",
]
