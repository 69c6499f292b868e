"""Each local Kafka node's ``server.properties`` and ``log4j.properties``, from the templates.

``kafka-server.properties`` is every node's base; ``kafka-cluster.properties`` is added when there
is more than one node (faster fencing of a dead node), ``kafka-secured.properties`` when the
cluster is secured (SASL_SSL for clients and inter-broker traffic, mutual TLS between controllers,
the StandardAuthorizer).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from string import Template

from tokenwire.services.kafka_security import ADMIN, NODE_PRINCIPAL, Credentials, SecurityPaths

HOST = "127.0.0.1"
MAX_REPLICATION = 3


@dataclass(frozen=True)
class NodeSpec:
    node_id: int
    port: int  # client listener (advertised)
    controller_port: int
    directory: Path  # the node's config, data, logs and pid

    @property
    def data(self) -> Path:
        return self.directory / "data"

    @property
    def server_properties(self) -> Path:
        return self.directory / "server.properties"

    @property
    def log4j_properties(self) -> Path:
        return self.directory / "log4j.properties"

    @property
    def server_log(self) -> Path:
        return self.directory / "kafka.log"

    @property
    def stdout_log(self) -> Path:
        return self.directory / "kafka.out"

    @property
    def pid_file(self) -> Path:
        return self.directory / "kafka.pid"


def replication(nodes: int) -> tuple[int, int]:
    """(replication factor, min.insync.replicas) of the internal and default topics."""
    factor = min(MAX_REPLICATION, nodes)
    return factor, 2 if factor >= 3 else 1


def render(
    node: NodeSpec, cluster: list[NodeSpec], secured: Credentials | None, state: Path
) -> None:
    """Write ``node``'s two config files (0600: a secured node's holds passwords)."""
    node.directory.mkdir(parents=True, exist_ok=True)
    factor, min_insync = replication(len(cluster))
    values = {
        "node_id": str(node.node_id),
        "port": str(node.port),
        "controller_port": str(node.controller_port),
        "quorum_voters": ",".join(f"{n.node_id}@{HOST}:{n.controller_port}" for n in cluster),
        "client_listener": "SASL_SSL" if secured else "PLAINTEXT",
        "controller_protocol": "SSL" if secured else "PLAINTEXT",
        "replication_factor": str(factor),
        "min_insync": str(min_insync),
        "data_dir": str(node.data),
        "log_file": str(node.server_log),
    }
    parts = ["kafka-server.properties"]
    if len(cluster) > 1:
        parts.append("kafka-cluster.properties")
    if secured is not None:
        paths = SecurityPaths(state)
        values |= {
            "admin_user": ADMIN,
            "admin_password": secured.password(ADMIN),
            "keystore": str(paths.keystore),
            "keystore_password": secured.keystore_password.get_secret_value(),
            "ca_file": str(paths.ca_cert),
            "node_principal": NODE_PRINCIPAL,
        }
        parts.append("kafka-secured.properties")
    server = "".join(_template(part).substitute(values) for part in parts)
    _write_0600(node.server_properties, server)
    node.log4j_properties.write_text(_template("kafka-log4j.properties").substitute(values))


def _template(name: str) -> Template:
    return Template(resources.files("tokenwire.services").joinpath(name).read_text())


def _write_0600(path: Path, text: str) -> None:
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)
    path.write_text(text)
