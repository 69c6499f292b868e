"""An OpenAI-compatible LLM simulator with deterministic answers and injectable faults.

Run it with ``tokenwire sim``; predict its answers in tests with :func:`expected_text`.
The fault directives (``[[sim: fail=429x2 retry_after=0.2]]`` ...) are documented in
:mod:`tokenwire.simulator.script`.
"""

from tokenwire.simulator.script import (
    DEFAULT_TOKENS,
    DirectiveError,
    Directives,
    expected_text,
    expected_tokens,
    parse_directives,
    strip_directives,
)

__all__ = [
    "DEFAULT_TOKENS",
    "DirectiveError",
    "Directives",
    "expected_text",
    "expected_tokens",
    "parse_directives",
    "strip_directives",
]
