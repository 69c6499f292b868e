"""Bad records on chat.requests go to the DLQ with their reason; the agent keeps serving."""

from __future__ import annotations

import json
import uuid

from tests.fixtures.kafka_reading import read_topic
from tests.fixtures.pipeline import WorkerProcess
from tests.fixtures.sse_client import read_session
from tests.pipeline.conftest import token_for, user_message
from tokenwire.answers import fold
from tokenwire.settings import Settings
from tokenwire.simulator import expected_text


async def test_malformed_and_invalid_records_are_dead_lettered_and_service_continues(
    worker: WorkerProcess, edge_url: str, pipeline_settings: Settings, publish_direct, session_ids
) -> None:
    marker = uuid.uuid4().hex
    not_json = f"{{not json {marker}".encode()
    invalid = json.dumps({"session_id": "bad.session", "marker": marker}).encode()
    await publish_direct(not_json, key="k1")
    await publish_direct(invalid, key="k2")
    session_id, request_id = next(session_ids), uuid.uuid4().hex
    messages = user_message(f"after the bad ones {marker}")
    await publish_direct({"request_id": request_id, "session_id": session_id,
                          "user_id": "u", "messages": messages}, key=session_id)

    events = await read_session(edge_url, session_id, token_for(pipeline_settings, session_id),
                                request_id=request_id)
    assert fold(e.data for e in events)[request_id].text == expected_text(messages)

    dead = {r.value: dict(r.headers) for r in await read_topic(
        pipeline_settings.kafka_bootstrap, pipeline_settings.dead_letter_topic)}
    assert dead[not_json]["tw-dlq-reason"] == b"not_json"
    assert dead[invalid]["tw-dlq-reason"] == b"schema_invalid"
    assert b"session_id" in dead[invalid]["tw-dlq-error"]
    assert b"user_id" in dead[invalid]["tw-dlq-error"]
