"""The secured local cluster: nobody in without credentials, each principal only what it needs.

Real clients (tokenwire.kafka_clients) against the real broker of ``secured_kafka``: SASL_SSL
with SCRAM-SHA-512 on the client listener, mutual TLS on the controller listener, and the
StandardAuthorizer with the ACL table of ``tokenwire.services.kafka_acls``.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import (
    ClusterAuthorizationFailedError,
    KafkaConnectionError,
    KafkaError,
    TopicAuthorizationFailedError,
)
from aiokafka.protocol.fetch import FetchRequest
from pydantic import SecretStr

from tests.fixtures.kafka_clusters import SecuredKafka
from tokenwire.kafka_clients import new_admin, new_client, new_producer
from tokenwire.kafka_settings import KafkaConnection, KafkaSettings
from tokenwire.services import kafka
from tokenwire.services.kafka_security import PRINCIPALS, SecurityPaths
from tokenwire.topic_metadata import TopicMetadata
from tokenwire.topics import ensure_core_topics

NO_ERROR = 0
TOPIC_AUTHORIZATION_FAILED = 29
CONNECT_TIMEOUT_S = 30.0


@pytest.fixture(scope="module")
async def worker_admin(secured_kafka: SecuredKafka) -> AsyncIterator[AIOKafkaAdminClient]:
    admin = new_admin(secured_kafka.connection("worker"), client_id="test-secured-worker")
    await admin.start()
    yield admin
    await admin.close()


@pytest.fixture(scope="module")
async def core_topics(secured_kafka: SecuredKafka) -> None:
    """The worker creates the core topics at start; so does this, as the worker."""
    await ensure_core_topics(secured_kafka.settings_for("worker"))


async def session_topic(secured_kafka: SecuredKafka, admin: AIOKafkaAdminClient) -> str:
    topic = secured_kafka.settings.session_topic(f"s-{uuid.uuid4().hex[:12]}")
    await admin.create_topics([NewTopic(topic, 1, 1)])
    return topic


async def bootstrap(connection: KafkaConnection) -> None:
    client = new_client(connection, client_id="test-secured-probe")
    try:
        async with asyncio.timeout(CONNECT_TIMEOUT_S):
            await client.bootstrap()
    finally:
        await client.close()


async def produce(connection: KafkaConnection, topic: str, value: bytes) -> int:
    producer = new_producer(connection, client_id="test-secured-producer")
    try:
        async with asyncio.timeout(CONNECT_TIMEOUT_S):
            await producer.start()
            return (await producer.send_and_wait(topic, value)).offset
    finally:
        await producer.stop()


async def fetch_error(connection: KafkaConnection, topic: str) -> int:
    """The error code of one Fetch of partition 0 from offset 0 (0: records may be read)."""
    client = new_client(connection, client_id="test-secured-fetch")
    try:
        await client.bootstrap()
        request = FetchRequest(100, 1, 1 << 20, 0, [(topic, [(0, 0, 1 << 20)])])
        response = await client.send(1, request)
        ((_, partitions),) = response.topics
        return int(partitions[0][1])
    finally:
        await client.close()


async def end_offset(secured_kafka: SecuredKafka, topic: str) -> int:
    metadata = TopicMetadata(secured_kafka.connection("auditor"), client_id="test-secured-end")
    await metadata.start()
    try:
        end = await metadata.end_offset(topic, timeout_s=CONNECT_TIMEOUT_S)
        assert end is not None
        return end
    finally:
        await metadata.close()


# --- nobody without credentials ----------------------------------------------------------------


@pytest.mark.parametrize("listener", ["client", "controller"])
async def test_a_plaintext_client_cannot_connect_to_any_listener(
    secured_kafka: SecuredKafka, listener: str
) -> None:
    settings = secured_kafka.settings
    port = settings.kafka_port if listener == "client" else settings.kafka_controller_port
    with pytest.raises(KafkaConnectionError):
        await bootstrap(KafkaConnection.plaintext(f"127.0.0.1:{port}"))


@pytest.mark.parametrize("listener", ["client", "controller"])
async def test_tls_without_sasl_or_a_client_certificate_gets_nothing(
    secured_kafka: SecuredKafka, listener: str
) -> None:
    settings = secured_kafka.settings
    port = settings.kafka_port if listener == "client" else settings.kafka_controller_port
    tls_only = KafkaSettings(security_protocol="SSL", ssl_cafile=secured_kafka.ca_file)
    with pytest.raises(KafkaConnectionError):
        await bootstrap(KafkaConnection(f"127.0.0.1:{port}", tls_only))


async def test_a_wrong_password_is_refused_and_the_right_one_accepted(
    secured_kafka: SecuredKafka,
) -> None:
    edge = secured_kafka.security("edge")
    wrong = edge.model_copy(update={"sasl_password": SecretStr("not-the-password")})
    with pytest.raises(KafkaConnectionError):
        await bootstrap(KafkaConnection(secured_kafka.bootstrap, wrong))
    await bootstrap(secured_kafka.connection("edge"))


async def test_a_client_that_does_not_trust_the_local_ca_refuses_the_broker(
    secured_kafka: SecuredKafka,
) -> None:
    edge = secured_kafka.security("edge")
    system_store = KafkaSettings(  # a fresh object: model_copy would keep the cached context
        security_protocol="SASL_SSL",
        sasl_username=edge.sasl_username,
        sasl_password=edge.sasl_password,
        ssl_cafile=None,
    )
    with pytest.raises(KafkaError):
        await bootstrap(KafkaConnection(secured_kafka.bootstrap, system_store))


# --- each principal: what it needs, nothing more -----------------------------------------------


async def test_the_edge_cannot_write_a_session_topic(
    secured_kafka: SecuredKafka, worker_admin: AIOKafkaAdminClient
) -> None:
    topic = await session_topic(secured_kafka, worker_admin)
    with pytest.raises(TopicAuthorizationFailedError):
        await produce(secured_kafka.connection("edge"), topic, b'{"type":"token","text":"forged"}')
    assert await end_offset(secured_kafka, topic) == 0, "nothing reached the session"
    # What the edge does need: follow the session.
    assert await fetch_error(secured_kafka.connection("edge"), topic) == NO_ERROR


async def test_the_edge_can_create_a_session_topic_and_publish_requests(
    secured_kafka: SecuredKafka, core_topics: None
) -> None:
    settings = secured_kafka.settings
    edge = new_admin(secured_kafka.connection("edge"), client_id="test-secured-edge")
    await edge.start()
    try:
        await session_topic(secured_kafka, edge)
    finally:
        await edge.close()
    assert await produce(secured_kafka.connection("edge"), settings.requests_topic, b"{}") >= 0


async def test_the_producer_writes_requests_and_reads_no_session(
    secured_kafka: SecuredKafka, worker_admin: AIOKafkaAdminClient, core_topics: None
) -> None:
    settings = secured_kafka.settings
    topic = await session_topic(secured_kafka, worker_admin)
    await produce(secured_kafka.connection("worker"), topic, b"a token")
    producer = secured_kafka.connection("producer")

    assert await produce(producer, settings.requests_topic, b"{}") >= 0
    assert await fetch_error(producer, topic) == TOPIC_AUTHORIZATION_FAILED
    assert await fetch_error(producer, settings.events_topic) == TOPIC_AUTHORIZATION_FAILED
    with pytest.raises(TopicAuthorizationFailedError):
        await produce(producer, topic, b"forged")


async def test_the_auditor_reads_everything_and_writes_nothing(
    secured_kafka: SecuredKafka, worker_admin: AIOKafkaAdminClient, core_topics: None
) -> None:
    settings = secured_kafka.settings
    topic = await session_topic(secured_kafka, worker_admin)
    auditor = secured_kafka.connection("auditor")
    for readable in (topic, settings.requests_topic, settings.events_topic, settings.alerts_topic):
        assert await fetch_error(auditor, readable) == NO_ERROR, readable
    for target in (topic, settings.requests_topic):
        # No WRITE anywhere, so not even an idempotent producer id is handed out.
        with pytest.raises((TopicAuthorizationFailedError, ClusterAuthorizationFailedError)):
            await produce(auditor, target, b"forged")


async def test_the_worker_creates_and_writes_a_session_topic(
    secured_kafka: SecuredKafka, worker_admin: AIOKafkaAdminClient
) -> None:
    topic = await session_topic(secured_kafka, worker_admin)
    assert await produce(secured_kafka.connection("worker"), topic, b"a token") == 0
    assert await end_offset(secured_kafka, topic) == 1


async def test_up_leaves_a_client_settings_file_per_principal(
    secured_kafka: SecuredKafka,
) -> None:
    paths = SecurityPaths(kafka.KafkaPaths.of(secured_kafka.settings).state)
    for principal in PRINCIPALS:
        env_file = paths.client_env(principal)
        assert env_file.stat().st_mode & 0o077 == 0, f"{env_file} is readable by others"
        lines = dict(
            line.split("=", 1) for line in env_file.read_text().splitlines() if "=" in line
        )
        read_back = KafkaSettings(
            security_protocol=lines["TOKENWIRE_KAFKA_SECURITY_PROTOCOL"],
            sasl_mechanism=lines["TOKENWIRE_KAFKA_SASL_MECHANISM"],
            sasl_username=lines["TOKENWIRE_KAFKA_SASL_USERNAME"],
            sasl_password=SecretStr(lines["TOKENWIRE_KAFKA_SASL_PASSWORD"]),
            ssl_cafile=lines["TOKENWIRE_KAFKA_SSL_CAFILE"],
        )
        assert read_back.sasl_username == principal
        await bootstrap(KafkaConnection(secured_kafka.bootstrap, read_back))
    assert paths.passwords.stat().st_mode & 0o077 == 0
    assert paths.secrets.stat().st_mode & 0o077 == 0
