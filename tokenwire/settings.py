"""The one settings object, read from the environment once.

Every key is ``TOKENWIRE_<FIELD>`` (case-insensitive); the OpenAI keys also accept the
client's own ``OPENAI_BASE_URL`` / ``OPENAI_API_KEY``. A malformed value fails at start-up
naming the key, and secrets are ``SecretStr`` so they never print.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from tokenwire.aggregates_settings import AggregatesSettings
from tokenwire.auth_settings import AuthSettings
from tokenwire.errors import UnsafeSettingsError
from tokenwire.kafka_settings import KafkaConnection, KafkaSettings

CoalesceMode = Literal["chunk", "bounded", "adaptive"]
SessionLayout = Literal["topic", "shared"]
# development: built-in secrets allowed, the chat page gets a development JWT; anything else
# refuses to start on a built-in or empty secret.
Mode = Literal["development", "production"]
DEV_INFLUX_TOKEN = "tokenwire-dev-token"


def _default_cache_dir() -> Path:
    return Path.home() / ".cache" / "tokenwire"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="TOKENWIRE_", frozen=True, extra="ignore", populate_by_name=True
    )

    # --- Kafka -------------------------------------------------------------------------
    kafka_bootstrap: str = "127.0.0.1:19092"
    requests_topic: str = "chat.requests"
    requests_partitions: int = Field(default=6, ge=1)
    events_topic: str = "chat.events"
    alerts_topic: str = "chat.alerts"
    dead_letter_topic: str = "chat.requests.dlq"
    # Cancels (schemas/control.py): as many partitions as requests, same key.
    control_topic: str = "chat.control"
    control_retention_ms: int = 7 * 24 * 3600 * 1000
    session_topic_prefix: str = "chat.session."
    # Where sessions' events live (tokenwire/session_log.py): "topic", one topic per session
    # (chat.session.<id>), or "shared", every session in sessions_topic keyed by session id,
    # with sessions_index_topic telling where each request's events begin.
    session_layout: SessionLayout = "topic"
    sessions_topic: str = "chat.sessions"
    sessions_index_topic: str = "chat.sessions.index"
    # Audit retention (ms); -1 keeps forever.
    requests_retention_ms: int = 30 * 24 * 3600 * 1000
    events_retention_ms: int = 90 * 24 * 3600 * 1000
    alerts_retention_ms: int = 30 * 24 * 3600 * 1000
    dead_letter_retention_ms: int = 30 * 24 * 3600 * 1000
    session_retention_ms: int = 7 * 24 * 3600 * 1000
    # A session topic with no event for this long is deleted by the worker's janitor.
    session_idle_ttl_s: float = Field(default=24 * 3600, gt=0)
    session_janitor_interval_s: float = Field(default=300, gt=0)
    # The janitor reads offsets for this many session topics at a time, each batch within its
    # own deadline: a slow or failing batch skips only its own topics until the next sweep.
    session_janitor_batch_size: int = Field(default=500, ge=1)
    session_janitor_batch_timeout_s: float = Field(default=15.0, gt=0)

    # --- OpenAI (or the simulator) -----------------------------------------------------
    openai_base_url: str | None = Field(
        default=None, validation_alias=AliasChoices("TOKENWIRE_OPENAI_BASE_URL", "OPENAI_BASE_URL")
    )
    openai_api_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("TOKENWIRE_OPENAI_API_KEY", "OPENAI_API_KEY")
    )
    default_model: str = "gpt-4o-mini"

    # --- Worker (Faust agents) ---------------------------------------------------------
    worker_id: str = "tokenwire-worker"
    worker_web_port: int = 6066
    # 0.0.0.0 in a container, so Prometheus can scrape the worker.
    worker_web_host: str = "127.0.0.1"
    worker_concurrency: int = Field(default=32, ge=1)
    coalesce_mode: CoalesceMode = "bounded"
    coalesce_max_chars: int = Field(default=32, ge=1)
    coalesce_max_delay_ms: float = Field(default=15.0, ge=0)
    retry_max_attempts: int = Field(default=4, ge=1)
    retry_base_delay_s: float = Field(default=0.2, ge=0)
    retry_max_delay_s: float = Field(default=5.0, ge=0)
    request_timeout_s: float = Field(default=120.0, gt=0)
    chunk_timeout_s: float = Field(default=30.0, gt=0)
    # Records in a worker's hands (queued behind their session, generating, or waiting for a
    # write to land); at the cap the agent stops taking records.
    worker_max_pending: int = Field(default=256, ge=1)
    # Records taken and not acked yet, finished ones held back behind an unfinished one of
    # their partition included (acks go in offset order); the agent waits at this cap too.
    worker_max_unacked: int = Field(default=4096, ge=1)
    # A request beyond this many pending ones of its session ends at once with an error event
    # (code session_busy, retryable), so one session cannot fill a worker's queue.
    worker_max_pending_per_session: int = Field(default=8, ge=1)
    # Dead letters and terminal events (session and chat.events): each attempt bounded, retried
    # with capped exponential backoff, given up (coordinates logged, record acked) after this.
    worker_write_attempt_timeout_s: float = Field(default=10.0, gt=0)
    worker_write_retry_max_delay_s: float = Field(default=30.0, gt=0)
    worker_write_give_up_s: float = Field(default=600.0, gt=0)

    # --- Edge (Starlette + SSE) --------------------------------------------------------
    edge_host: str = "127.0.0.1"
    edge_port: int = 8000
    sse_ping_s: float = Field(default=15.0, gt=0)
    sse_send_timeout_s: float = Field(default=10.0, gt=0)
    sse_retry_ms: int = Field(default=1000, ge=0)
    sse_client_buffer: int = Field(default=1024, ge=1)
    session_cache_events: int = Field(default=10_000, ge=1)
    # Open SSE streams per process (503 beyond) and per user (429 beyond); each followed session
    # holds at most session_cache_events events, and a session is followed only while streamed.
    sse_max_connections: int = Field(default=20_000, ge=1)
    sse_max_connections_per_user: int = Field(default=32, ge=1)
    # Bounded in-process maps: session topics known to exist (edge and worker; least recently
    # used forgotten first, and created again, idempotently), where recent requests ended (for
    # until=done reconnects). Per-identity usage is bounded in Settings.auth.
    session_topics_remembered: int = Field(default=100_000, ge=1)
    sse_terminal_index_size: int = Field(default=4_096, ge=1)
    # Shared layout: sessions whose request starts an edge or worker keeps in memory (least
    # recently written forgotten first; a forgotten one is read from its partition's start).
    # About 1 KiB each at the edge (measured over 100,000 new sessions).
    session_index_remembered: int = Field(default=250_000, ge=1)
    # Shared layout: each followed partition's newest records kept at the edge (every session's),
    # so a stream opened just after its request is filled from memory, not by a history read.
    sse_shared_recent_records: int = Field(default=10_000, ge=0)
    cors_origins: list[str] = Field(default_factory=list)

    # --- Simulator -----------------------------------------------------------------------
    sim_host: str = "127.0.0.1"
    sim_port: int = 18000
    sim_ttft_ms: float = Field(default=200.0, ge=0)
    sim_tokens_per_s: float = Field(default=30.0, gt=0)

    # --- InfluxDB ------------------------------------------------------------------------
    influx_url: str = "http://127.0.0.1:18086"
    influx_org: str = "tokenwire"
    influx_bucket: str = "tokenwire"
    influx_token: SecretStr = SecretStr(DEV_INFLUX_TOKEN)

    # --- Local services (tokenwire services up|down|status) -------------------------------
    cache_dir: Path = Field(default_factory=_default_cache_dir)
    kafka_version: str = "3.9.2"
    kafka_port: int = 19092
    kafka_controller_port: int = 19093
    kafka_heap: str = "512m"
    # 1: one broker+controller node; 3: a KRaft quorum of three broker+controller nodes on
    # loopback (node i listens on kafka_port + 2i, its controller on kafka_controller_port + 2i).
    kafka_nodes: int = Field(default=1, ge=1, le=5)
    # The local cluster with a SASL_SSL listener, SCRAM users and ACLs (tokenwire.services).
    kafka_secured: bool = False
    # Where this cluster keeps its config, data, logs, pids and secrets (default
    # <state_dir>/kafka); give each cluster its own (and its own ports) to run several side by
    # side on the same cached jars.
    kafka_state_dir: Path | None = None
    # The heap of each node when kafka_nodes > 1 (kafka_heap is the single node's).
    kafka_cluster_heap: str = "320m"
    influxdb_version: str = "v2.7.12"
    influxd: Path | None = Field(
        default=None, validation_alias=AliasChoices("TOKENWIRE_INFLUXD", "INFLUXD")
    )
    influx_port: int = 18086
    # A minimal OpenTelemetry Collector (OTLP/HTTP in, JSON lines file out) built from its Go
    # modules on first use (tokenwire/services/otelcol.py); OTELCOL names a binary to use instead.
    otelcol_version: str = "v0.161.0"
    otelcol: Path | None = Field(
        default=None, validation_alias=AliasChoices("TOKENWIRE_OTELCOL", "OTELCOL")
    )
    otelcol_port: int = 14318
    service_start_timeout_s: float = Field(default=120.0, gt=0)

    # Security and replication of every Kafka client: a section (TOKENWIRE_KAFKA_<FIELD>).
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    # Windows, risk score and InfluxDB sink: a section of its own (TOKENWIRE_AGG_<FIELD>).
    aggregates: AggregatesSettings = Field(default_factory=AggregatesSettings)
    # Caller credentials, stream tokens and quotas: a section of its own (TOKENWIRE_AUTH_<FIELD>).
    auth: AuthSettings = Field(default_factory=AuthSettings)
    mode: Mode = "production"

    log_level: str = "INFO"
    # text for people; json: one object per line for log shippers (tokenwire/log_format.py).
    log_format: Literal["text", "json"] = "text"

    @property
    def development(self) -> bool:
        return self.mode == "development"

    def unsafe_settings(self, role: Literal["edge", "worker"]) -> list[str]:
        """Settings still on a built-in or empty secret, for the process ``role`` runs."""
        unsafe = self.kafka.unsafe_settings()
        if role == "edge":
            return unsafe + self.auth.unsafe_settings()
        token = self.influx_token.get_secret_value()
        return unsafe + (["TOKENWIRE_INFLUX_TOKEN"] if token in ("", DEV_INFLUX_TOKEN) else [])

    def require_safe(self, role: Literal["edge", "worker"]) -> None:
        """Refuse to run outside development mode on secrets anyone can read in this repo."""
        unsafe = self.unsafe_settings(role)
        if unsafe and not self.development:
            raise UnsafeSettingsError(
                f"the {role} refuses to start outside development mode with built-in, empty or "
                f"short secrets or unprotected connections: {', '.join(unsafe)}; set them, or "
                "TOKENWIRE_MODE=development"
            )

    @property
    def kafka_connection(self) -> KafkaConnection:
        return KafkaConnection(self.kafka_bootstrap, self.kafka)

    @property
    def state_dir(self) -> Path:
        return self.cache_dir / "state"

    def session_topic(self, session_id: str) -> str:
        return f"{self.session_topic_prefix}{session_id}"

    @property
    def effective_openai_base_url(self) -> str:
        """The simulator stands in whenever no real endpoint is configured."""
        return self.openai_base_url or f"http://{self.sim_host}:{self.sim_port}/v1"

    @property
    def effective_openai_api_key(self) -> str:
        return self.openai_api_key.get_secret_value() if self.openai_api_key else "sim-key"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
