"""The Kafka section of Settings (``Settings.kafka``, env ``TOKENWIRE_KAFKA_<FIELD>``).

How every Kafka client tokenwire makes connects (security protocol, SASL, TLS) and how topics
are replicated. The bootstrap list itself stays ``TOKENWIRE_KAFKA_BOOTSTRAP``; together they are
a ``KafkaConnection``, the one thing client factories take.

- ``security_protocol``: PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL, as Kafka names them.
- SASL (``SASL_*``): ``sasl_mechanism`` SCRAM-SHA-512 (default), SCRAM-SHA-256 or PLAIN, with
  ``sasl_username`` / ``sasl_password``. PLAIN sends the password itself, so it is refused
  without TLS outside development mode.
- TLS (``SSL``, ``SASL_SSL``): ``ssl_cafile`` to trust (the system store when unset), and
  ``ssl_certfile`` / ``ssl_keyfile`` (+ ``ssl_key_password``) for a client certificate.
- Replication: ``replication_factor`` (unset: min(3, brokers in the cluster)) and
  ``min_insync_replicas`` (unset: 2 when the factor is 3 or more, else 1), applied to the core
  topics, session topics and the worker's changelogs. Producers always use ``acks=all``, so a
  write is acknowledged once ``min_insync_replicas`` replicas have it.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"]
DEFAULT_MAX_REPLICATION = 3


class KafkaSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="TOKENWIRE_KAFKA_", frozen=True, extra="ignore", populate_by_name=True
    )

    security_protocol: SecurityProtocol = "PLAINTEXT"
    sasl_mechanism: SaslMechanism = "SCRAM-SHA-512"
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    ssl_key_password: SecretStr | None = None
    ssl_check_hostname: bool = True
    # Outside development mode a PLAINTEXT connection (anyone on the network reads every prompt
    # and may write into any session) is refused unless this says it is meant.
    allow_plaintext: bool = False
    replication_factor: int | None = Field(default=None, ge=1)
    min_insync_replicas: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _complete(self) -> KafkaSettings:
        if self.uses_sasl and not (self.sasl_username and self.sasl_password):
            raise ValueError(
                f"security_protocol {self.security_protocol} needs TOKENWIRE_KAFKA_SASL_USERNAME "
                "and TOKENWIRE_KAFKA_SASL_PASSWORD"
            )
        if (self.ssl_certfile is None) != (self.ssl_keyfile is None):
            raise ValueError("a client certificate needs both ssl_certfile and ssl_keyfile")
        if self.min_insync_replicas and self.replication_factor:
            if self.min_insync_replicas > self.replication_factor:
                raise ValueError("min_insync_replicas cannot exceed replication_factor")
        return self

    @property
    def uses_sasl(self) -> bool:
        return self.security_protocol.startswith("SASL_")

    @property
    def uses_tls(self) -> bool:
        return self.security_protocol in ("SSL", "SASL_SSL")

    def unsafe_settings(self) -> list[str]:
        """What outside development mode would expose traffic or credentials."""
        unsafe = []
        if self.security_protocol == "PLAINTEXT" and not self.allow_plaintext:
            unsafe.append(
                "TOKENWIRE_KAFKA_SECURITY_PROTOCOL=PLAINTEXT "
                "(or TOKENWIRE_KAFKA_ALLOW_PLAINTEXT=true on a trusted network)"
            )
        if self.uses_sasl and self.sasl_mechanism == "PLAIN" and not self.uses_tls:
            unsafe.append("TOKENWIRE_KAFKA_SASL_MECHANISM=PLAIN without TLS")
        return unsafe

    def replication(self, brokers: int) -> tuple[int, int]:
        """(replication factor, min.insync.replicas) for a cluster of ``brokers`` brokers."""
        factor = self.replication_factor or max(1, min(DEFAULT_MAX_REPLICATION, brokers))
        min_insync = self.min_insync_replicas or (2 if factor >= 3 else 1)
        return factor, min(min_insync, factor)

    @cached_property
    def ssl_context(self) -> ssl.SSLContext | None:
        """One context per process: reading the CA and key files happens once."""
        if not self.uses_tls:
            return None
        context = ssl.create_default_context(
            purpose=ssl.Purpose.SERVER_AUTH,
            cafile=str(self.ssl_cafile) if self.ssl_cafile else None,
        )
        context.check_hostname = self.ssl_check_hostname
        if self.ssl_certfile and self.ssl_keyfile:
            password = self.ssl_key_password.get_secret_value() if self.ssl_key_password else None
            context.load_cert_chain(str(self.ssl_certfile), str(self.ssl_keyfile), password)
        return context

    def client_options(self) -> dict[str, Any]:
        """aiokafka keyword arguments (producer, consumer, admin and bare client alike)."""
        options: dict[str, Any] = {"security_protocol": self.security_protocol}
        if self.uses_tls:
            options["ssl_context"] = self.ssl_context
        if self.uses_sasl:
            assert self.sasl_password is not None  # checked by _complete
            options["sasl_mechanism"] = self.sasl_mechanism
            options["sasl_plain_username"] = self.sasl_username
            options["sasl_plain_password"] = self.sasl_password.get_secret_value()
        return options


@dataclass(frozen=True)
class KafkaConnection:
    """Where the cluster is and how to talk to it: what every client factory takes."""

    bootstrap: str
    security: KafkaSettings

    @classmethod
    def plaintext(cls, bootstrap: str) -> KafkaConnection:
        return cls(bootstrap, KafkaSettings(security_protocol="PLAINTEXT"))

    def client_options(self) -> dict[str, Any]:
        return {"bootstrap_servers": self.bootstrap, **self.security.client_options()}

    def faust_credentials(self) -> Any:
        """The same security for Faust's own clients (``broker_credentials``)."""
        import faust
        from faust.types.auth import SASLMechanism

        security = self.security
        if security.uses_sasl:
            assert security.sasl_password is not None
            return faust.SASLCredentials(
                username=security.sasl_username,
                password=security.sasl_password.get_secret_value(),
                ssl_context=security.ssl_context,
                mechanism=SASLMechanism(security.sasl_mechanism),
            )
        if security.uses_tls:
            return faust.SSLCredentials(security.ssl_context)
        return None
