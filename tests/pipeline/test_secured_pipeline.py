"""The whole pipeline on the secured cluster: each process connects as its own principal.

The worker (a real ``tokenwire worker`` process, Faust and all) is ``worker``; the edge (served
in-process, as in the other pipeline tests) is ``edge``: SASL_SSL + SCRAM-SHA-512, and only what
their ACLs allow. A chat posted through the edge is answered, exactly, over SSE.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.fixtures.asgi_server import serve_edge
from tests.fixtures.credentials import caller_headers
from tests.fixtures.kafka_clusters import SecuredKafka
from tests.fixtures.pipeline import WorkerProcess, pipeline_settings_for, start_worker
from tests.fixtures.sse_client import read_session
from tests.pipeline.conftest import user_message
from tokenwire.answers import fold
from tokenwire.services import kafka
from tokenwire.settings import Settings
from tokenwire.simulator import expected_text


@pytest.fixture(scope="module")
def secured_pipeline(secured_kafka: SecuredKafka, simulator_url: str) -> Settings:
    """Pipeline settings on the names the cluster's ACLs were made for (and no credentials)."""
    cluster = secured_kafka.settings
    return pipeline_settings_for(
        secured_kafka.bootstrap, simulator_url, "unused",
        requests_topic=cluster.requests_topic,
        events_topic=cluster.events_topic,
        alerts_topic=cluster.alerts_topic,
        dead_letter_topic=cluster.dead_letter_topic,
        control_topic=cluster.control_topic,
        session_topic_prefix=cluster.session_topic_prefix,
        worker_id=cluster.worker_id,
    )  # fmt: skip


@pytest.fixture(scope="module")
async def secured_worker(
    secured_kafka: SecuredKafka,
    secured_pipeline: Settings,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[WorkerProcess]:
    settings = secured_pipeline.model_copy(update={"kafka": secured_kafka.security("worker")})
    worker = await start_worker(settings, tmp_path_factory.mktemp("secured-worker"))
    yield worker
    worker.stop()


@pytest.fixture(scope="module")
async def secured_edge(
    secured_kafka: SecuredKafka, secured_pipeline: Settings
) -> AsyncIterator[str]:
    from api.app import create_app

    settings = secured_pipeline.model_copy(update={"kafka": secured_kafka.security("edge")})
    async with serve_edge(create_app(settings)) as url:
        yield url


@pytest.fixture(scope="module")
def broker_log_start(secured_kafka: SecuredKafka) -> int:
    """Where the broker's log stood before this module's worker and edge started."""
    return kafka.log_path(secured_kafka.settings).stat().st_size


def denials_since(secured_kafka: SecuredKafka, offset: int) -> list[str]:
    """The authorizer's "Denied" lines (kafka.authorizer.logger) logged after ``offset``."""
    with kafka.log_path(secured_kafka.settings).open("rb") as fh:
        fh.seek(offset)
        text = fh.read().decode(errors="replace")
    return [line for line in text.splitlines() if "is Denied" in line]


async def test_a_chat_through_the_secured_cluster_streams_the_exact_answer(
    secured_kafka: SecuredKafka,
    broker_log_start: int,
    secured_worker: WorkerProcess,
    secured_edge: str,
) -> None:
    messages = user_message(f"secured {uuid.uuid4().hex}")
    async with httpx.AsyncClient(timeout=30) as client:
        response = await client.post(
            f"{secured_edge}/v1/chat",
            json={"user_id": "alice", "messages": messages},
            headers=caller_headers("alice"),
        )
    assert response.status_code == 202, response.text
    chat = response.json()

    events = await read_session(
        secured_edge, chat["session_id"], chat["stream_token"], request_id=chat["request_id"]
    )

    answer = fold(e.data for e in events)[chat["request_id"]]
    assert answer.status == "done", answer
    assert answer.text == expected_text(messages)
    assert "AuthorizationFailed" not in _text(secured_worker.log_path)
    # Least privilege, but enough: nothing the worker or the edge did was refused.
    assert denials_since(secured_kafka, broker_log_start) == []


def _text(path: Path) -> str:
    return path.read_text(errors="replace")
