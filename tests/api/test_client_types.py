"""The JavaScript clients' TypeScript declarations type-check, used as the README shows.

``tests/js/types/usage.ts`` imports ``tokenwire`` and ``tokenwire/ai-sdk`` through their package
exports (``clients/js/package.json``) and is compiled by the pinned ``typescript`` with
``--strict``; a declaration that does not parse, names a missing type or disagrees with the
documented use fails here.
"""

from __future__ import annotations

import asyncio

from tests.fixtures.node import JS_TESTS

TSC_TIMEOUT_S = 120.0


async def test_the_declarations_type_check_under_strict_typescript() -> None:
    tsc = JS_TESTS / "node_modules" / ".bin" / "tsc"
    assert tsc.exists(), "tests/js/node_modules is missing: run `make node-deps`"
    process = await asyncio.create_subprocess_exec(
        str(tsc), "--noEmit", "--strict", "--module", "nodenext", "--moduleResolution",
        "nodenext", "--target", "es2022", "types/usage.ts",
        cwd=JS_TESTS, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), TSC_TIMEOUT_S)
    assert process.returncode == 0, output.decode(errors="replace")
