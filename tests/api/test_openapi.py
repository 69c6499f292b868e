"""The edge's OpenAPI document: in sync with the contracts, and a fuzzer finds no 5xx from it."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import httpx

from api.openapi import build_document
from schemas.requests import ChatRequest
from tests.api.conftest import Edge
from tests.api.test_server import EdgeProcess, edge_process  # noqa: F401 (fixture)
from tests.fixtures.credentials import caller_jwt

# Bounded: enough to walk every operation's shapes, small enough for CI (~a minute).
FUZZ_EXAMPLES = 60
FUZZ_TIMEOUT_S = 240


async def test_the_document_is_served_and_describes_the_contract(edge: Edge) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        served = (await client.get(f"{edge.url}/openapi.json")).json()
    assert served == build_document()
    body = served["components"]["schemas"]["ChatRequest"]
    assert set(body["properties"]) == set(ChatRequest.model_fields)
    assert {"/v1/chat", "/v1/sessions/{session_id}/events"} <= set(served["paths"])
    # The adapters' endpoints are fuzzed too.
    assert {"/v1/ui/chat", "/v1/ui/chat/{chat_id}/stream", "/v1/ui/chat/{chat_id}/cancel",
            "/v1/chat/completions", "/v1/chat/completions/{completion_id}/stream"} <= set(
        served["paths"])  # fmt: skip


async def test_schemathesis_finds_no_server_error_and_every_error_is_our_json_shape(
    edge_process: EdgeProcess, tmp_path: Path,  # noqa: F811 (the imported fixture)
) -> None:
    schemathesis = Path(sys.executable).with_name("schemathesis")
    process = await asyncio.create_subprocess_exec(
        str(schemathesis), "run", f"{edge_process.url}/openapi.json",
        "--checks", "not_a_server_error,response_schema_conformance,content_type_conformance",
        "--max-examples", str(FUZZ_EXAMPLES), "--seed", "7",
        "--header", f"Authorization: Bearer {caller_jwt('u-fuzz', ttl_s=3600)}",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        cwd=tmp_path,
    )
    output, _ = await asyncio.wait_for(process.communicate(), FUZZ_TIMEOUT_S)
    text = output.decode(errors="replace")
    assert process.returncode == 0, text[-4000:]
    assert "/v1/chat" in text
