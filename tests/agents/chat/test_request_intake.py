"""Decoding chat.requests records: valid, not JSON, or failing the schema."""

import json

from agents.chat.request_intake import Rejection, decode_request
from schemas import ChatRequest


def test_a_valid_record_decodes_and_keeps_its_request_id() -> None:
    raw = json.dumps({"request_id": "r1", "session_id": "s1", "user_id": "u",
                      "messages": [{"role": "user", "content": "hi"}]}).encode()
    request = decode_request(raw, partition=0, offset=7)
    assert isinstance(request, ChatRequest) and request.request_id == "r1"


def test_a_missing_request_id_is_derived_from_the_record_coordinates() -> None:
    raw = json.dumps({"session_id": "s1", "user_id": "u",
                      "messages": [{"role": "user", "content": "hi"}]}).encode()
    request = decode_request(raw, partition=3, offset=42)
    assert isinstance(request, ChatRequest) and request.request_id == "p3-o42"


def test_bytes_that_are_not_json_are_rejected_with_the_reason() -> None:
    rejection = decode_request(b"\xff{nope", partition=0, offset=0)
    assert isinstance(rejection, Rejection) and rejection.reason == "not_json"


def test_schema_errors_name_the_fields() -> None:
    raw = json.dumps({"session_id": "bad.id", "messages": []}).encode()
    rejection = decode_request(raw, partition=0, offset=0)
    assert isinstance(rejection, Rejection) and rejection.reason == "schema_invalid"
    assert "session_id" in rejection.detail and "user_id" in rejection.detail


def test_nesting_deeper_than_the_decoder_can_follow_is_rejected_not_raised() -> None:
    rejection = decode_request(b"[" * 100_000, partition=0, offset=0)
    assert isinstance(rejection, Rejection) and rejection.reason == "not_json"
