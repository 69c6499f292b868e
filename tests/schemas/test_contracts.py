"""The contracts: exported JSON Schema files match the models; session ids name Kafka topics."""

import json

import pytest
from pydantic import ValidationError

from schemas import ChatRequest
from schemas.export import EXPORTS, JSON_DIR, render
from schemas.session_events import TokenEvent, parse_session_event


@pytest.mark.parametrize("name", sorted(EXPORTS))
def test_exported_json_schema_matches_the_models(name: str) -> None:
    on_disk = (JSON_DIR / f"{name}.schema.json").read_text()
    assert on_disk == render(name), "run `python -m schemas.export` and commit the result"


def _request(session_id: str) -> dict[str, object]:
    return {"session_id": session_id, "user_id": "u", "messages": [{"role": "user",
                                                                    "content": "hi"}]}


@pytest.mark.parametrize("session_id", ["a", "Session-42", "x" * 64])
def test_valid_session_ids_pass(session_id: str) -> None:
    assert ChatRequest.model_validate(_request(session_id)).session_id == session_id


@pytest.mark.parametrize("session_id", ["", "a.b", "a_b", "a b", "x" * 65, "ünï", "a/b"])
def test_session_ids_that_cannot_name_a_topic_are_rejected(session_id: str) -> None:
    with pytest.raises(ValidationError):
        ChatRequest.model_validate(_request(session_id))


def test_readers_ignore_fields_added_by_newer_producers() -> None:
    event = TokenEvent(request_id="r", session_id="s", attempt=1, seq=1, text="hi",
                       received_at=1.0)
    payload = json.loads(event.model_dump_json()) | {"added_in_v2": True}
    assert parse_session_event(json.dumps(payload)) == event


def test_the_chat_request_schema_rejects_an_unknown_role() -> None:
    schema = json.loads((JSON_DIR / "chat-request.schema.json").read_text())
    roles = schema["$defs"]["ChatMessage"]["properties"]["role"]["enum"]
    assert sorted(roles) == ["assistant", "developer", "system", "tool", "user"]
