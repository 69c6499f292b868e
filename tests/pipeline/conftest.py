"""Helpers shared by the pipeline specifications."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from api.stream_tokens import issue_token
from tests.fixtures.credentials import caller_headers
from tokenwire.settings import Settings


@pytest.fixture
async def post_chat(edge_url: str):  # type: ignore[no-untyped-def]
    """POST as the body's ``user_id`` (a real signed JWT); ``token`` is a session write token."""

    async def post(body: dict[str, Any], token: str | None = None) -> httpx.Response:
        headers = caller_headers(body.get("user_id", "u-test"))
        if token is not None:
            headers["X-Stream-Token"] = token
        async with httpx.AsyncClient(timeout=30) as client:
            return await client.post(f"{edge_url}/v1/chat", json=body, headers=headers)

    return post


@pytest.fixture
async def publish_direct(pipeline_settings: Settings):  # type: ignore[no-untyped-def]
    """Publish a ChatRequest straight to Kafka, as a non-HTTP producer would."""
    producer = AIOKafkaProducer(bootstrap_servers=pipeline_settings.kafka_bootstrap,
                                acks="all", enable_idempotence=True)
    await producer.start()

    async def publish(payload: dict[str, Any] | bytes, key: str) -> None:
        value = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        await producer.send_and_wait(pipeline_settings.requests_topic, value, key=key.encode())

    yield publish
    await producer.stop()


def token_for(settings: Settings, session_id: str, user_id: str = "u-test") -> str:
    return issue_token(settings, session_id=session_id, user_id=user_id)


def user_message(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


@pytest.fixture
async def cancel_chat(edge_url: str):  # type: ignore[no-untyped-def]
    """POST the cancel endpoint as ``user_id`` with the session's write token."""

    async def cancel(chat: dict[str, Any], user_id: str) -> httpx.Response:
        headers = caller_headers(user_id) | {"X-Stream-Token": chat["write_token"]}
        url = (f"{edge_url}/v1/sessions/{chat['session_id']}/requests/{chat['request_id']}"
               "/cancel")
        async with httpx.AsyncClient(timeout=30) as client:
            return await client.post(url, headers=headers)

    return cancel


async def lifecycle_of(settings: Settings, request_id: str, kind: str) -> dict[str, Any]:
    """The ``kind`` record of a request on chat.events, once it is there."""
    from tests.fixtures.kafka_reading import wait_for_record

    return await wait_for_record(
        settings.kafka_bootstrap, settings.events_topic,
        lambda v: v.get("request_id") == request_id and v.get("type") == kind,
    )
