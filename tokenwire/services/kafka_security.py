"""The secured local cluster's secrets: a CA, the node certificate, SCRAM passwords, client files.

Everything is made once, on the first ``up`` of a secured cluster, under ``<kafka state>/``:

- ``secrets/`` (0700): ``ca.key`` and ``node.p12`` (the nodes' key + certificate, PKCS#12) and
  ``passwords.json`` (every principal's SCRAM password and the keystore password), each 0600;
- ``clients/``: ``ca.pem`` (public: what a client trusts) and ``<principal>.env`` (0600), the
  ``TOKENWIRE_KAFKA_*`` lines that make a tokenwire process connect as that principal.

The nodes' certificate (``CN=tokenwire-kafka-node``, SAN 127.0.0.1 and localhost) serves the
SASL_SSL client listener and is the nodes' own identity on the mutual-TLS controller listener.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from pydantic import SecretStr

from tokenwire.errors import ServiceError
from tokenwire.kafka_settings import KafkaSettings

ADMIN = "admin"  # super user: inter-broker traffic and provisioning (ACLs)
PRINCIPALS = ("edge", "worker", "auditor", "producer")
NODE_COMMON_NAME = "tokenwire-kafka-node"
# How the nodes appear to the authorizer when they talk to a controller over mutual TLS.
NODE_PRINCIPAL = f"User:CN={NODE_COMMON_NAME}"
MECHANISM = "SCRAM-SHA-512"
VALID_DAYS = 3650
_KEYSTORE = "_keystore"


@dataclass(frozen=True)
class SecurityPaths:
    root: Path  # the cluster's state dir

    @property
    def secrets(self) -> Path:
        return self.root / "secrets"

    @property
    def clients(self) -> Path:
        return self.root / "clients"

    @property
    def ca_key(self) -> Path:
        return self.secrets / "ca.key"

    @property
    def ca_cert(self) -> Path:
        return self.clients / "ca.pem"

    @property
    def keystore(self) -> Path:
        return self.secrets / "node.p12"

    @property
    def passwords(self) -> Path:
        return self.secrets / "passwords.json"

    def client_env(self, principal: str) -> Path:
        return self.clients / f"{principal}.env"


@dataclass(frozen=True)
class Credentials:
    """The passwords of one secured cluster (never logged; ``repr`` hides them)."""

    passwords: dict[str, SecretStr]
    keystore_password: SecretStr

    def password(self, principal: str) -> str:
        return self.passwords[principal].get_secret_value()


def ensure_material(root: Path) -> Credentials:
    """Create the CA, node keystore, passwords and client files unless they exist."""
    paths = SecurityPaths(root)
    _private_dir(paths.secrets)
    paths.clients.mkdir(parents=True, exist_ok=True)
    credentials = _ensure_passwords(paths)
    if not (paths.ca_key.exists() and paths.ca_cert.exists() and paths.keystore.exists()):
        _write_ca_and_keystore(paths, credentials.keystore_password.get_secret_value())
    for principal in (ADMIN, *PRINCIPALS):
        _write_private(paths.client_env(principal), client_env_text(paths, credentials, principal))
    return credentials


def load_credentials(root: Path) -> Credentials:
    paths = SecurityPaths(root)
    try:
        raw = json.loads(paths.passwords.read_text())
    except (OSError, ValueError) as exc:
        raise ServiceError(
            f"the secured Kafka's passwords are missing or unreadable ({paths.passwords}); "
            f"delete {root} to provision it again"
        ) from exc
    return Credentials(
        passwords={name: SecretStr(raw[name]) for name in (ADMIN, *PRINCIPALS)},
        keystore_password=SecretStr(raw[_KEYSTORE]),
    )


def client_security(root: Path, credentials: Credentials, principal: str) -> KafkaSettings:
    """How a client connects as ``principal`` (every field given: nothing read from the env)."""
    return KafkaSettings(
        security_protocol="SASL_SSL",
        sasl_mechanism=MECHANISM,
        sasl_username=principal,
        sasl_password=credentials.passwords[principal],
        ssl_cafile=SecurityPaths(root).ca_cert,
        ssl_certfile=None,
        ssl_keyfile=None,
        ssl_key_password=None,
        ssl_check_hostname=True,
        allow_plaintext=False,
    )


def client_env_text(paths: SecurityPaths, credentials: Credentials, principal: str) -> str:
    return (
        f"# tokenwire: connect to the local secured Kafka as {principal!r}\n"
        "TOKENWIRE_KAFKA_SECURITY_PROTOCOL=SASL_SSL\n"
        f"TOKENWIRE_KAFKA_SASL_MECHANISM={MECHANISM}\n"
        f"TOKENWIRE_KAFKA_SASL_USERNAME={principal}\n"
        f"TOKENWIRE_KAFKA_SASL_PASSWORD={credentials.password(principal)}\n"
        f"TOKENWIRE_KAFKA_SSL_CAFILE={paths.ca_cert}\n"
    )


def scram_format_args(credentials: Credentials) -> list[str]:
    """``kafka-storage format`` arguments that create every SCRAM user in the bootstrap metadata.

    (KRaft keeps SCRAM credentials in its metadata log; bootstrapping them at format time is
    what lets inter-broker traffic authenticate as ``admin`` before anything else runs.)
    """
    args = []
    for principal in (ADMIN, *PRINCIPALS):
        user = f"name={principal},password={credentials.password(principal)}"
        args += ["--add-scram", f"{MECHANISM}=[{user}]"]
    return args


def _ensure_passwords(paths: SecurityPaths) -> Credentials:
    if not paths.passwords.exists():
        # Hex: no character the SCRAM argument parser or a JAAS line would need quoted.
        raw = {name: secrets.token_hex(24) for name in (ADMIN, *PRINCIPALS, _KEYSTORE)}
        _write_private(paths.passwords, json.dumps(raw, indent=2) + "\n")
    return load_credentials(paths.root)


def _write_ca_and_keystore(paths: SecurityPaths, keystore_password: str) -> None:
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tokenwire local Kafka CA")])
    ca_cert = (
        _validity(x509.CertificateBuilder(), now)
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    node_key = ec.generate_private_key(ec.SECP256R1())
    node_cert = (
        _validity(x509.CertificateBuilder(), now)
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, NODE_COMMON_NAME)]))
        .issuer_name(ca_name)
        .public_key(node_key.public_key())
        .serial_number(x509.random_serial_number())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        # Server for clients, client towards the other nodes' controller listeners.
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    _write_private(
        paths.ca_key,
        ca_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode(),
    )
    # PKCS#12 with AES-256 and an SHA-256 MAC: what Java 17's keystore reads.
    encryption = (
        serialization.PrivateFormat.PKCS12.encryption_builder()
        .kdf_rounds(50_000)
        .key_cert_algorithm(pkcs12.PBES.PBESv2SHA256AndAES256CBC)
        .hmac_hash(hashes.SHA256())
        .build(keystore_password.encode())
    )
    keystore = pkcs12.serialize_key_and_certificates(
        b"node", node_key, node_cert, [ca_cert], encryption
    )
    _write_private(paths.keystore, keystore)
    paths.ca_cert.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))


def _validity(builder: x509.CertificateBuilder, now: dt.datetime) -> x509.CertificateBuilder:
    return builder.not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(
        now + dt.timedelta(days=VALID_DAYS)
    )


def _private_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o700)


def _write_private(path: Path, content: str | bytes) -> None:
    """Written 0600 from the first byte (never briefly world-readable)."""
    data = content.encode() if isinstance(content, str) else content
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    tmp.replace(path)
