"""docker-compose.yml cannot run here (no engine): this keeps it true to the project instead.

Every service has an image or a build whose files exist, every mounted file exists, every
TOKENWIRE_* variable is a real setting with a valid value, the addresses the services give each
other agree (Kafka, InfluxDB, simulator, Prometheus targets, Grafana datasource), and every
command is a real ``tokenwire`` sub-command.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml

from tests.aggregates.dashboards import dashboard_files
from tests.fixtures.services import INFLUXDB_IMAGE, KAFKA_IMAGE
from tokenwire.aggregates_settings import AggregatesSettings
from tokenwire.auth_settings import AuthSettings
from tokenwire.cli import build_parser
from tokenwire.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
PROJECT_SERVICES = ("topics", "simulator", "worker", "edge")


def env(service: str) -> dict[str, str]:
    return {k: str(v) for k, v in (SERVICES[service].get("environment") or {}).items()}


def setting_env_names() -> set[str]:
    names = set()
    sections = (
        (Settings, "TOKENWIRE_"), (AggregatesSettings, "TOKENWIRE_AGG_"),
        (AuthSettings, "TOKENWIRE_AUTH_"),
    )
    for model, prefix in sections:
        for name, field in model.model_fields.items():
            alias = field.validation_alias
            choices = getattr(alias, "choices", None) or ([alias] if alias else [])
            names |= {str(c).upper() for c in choices} or {f"{prefix}{name}".upper()}
    return names


def published(service: str) -> dict[int, int]:
    """container port -> host port."""
    ports = {}
    for mapping in SERVICES[service].get("ports", []):
        *_, host, container = str(mapping).split(":")  # [address:]host:container
        ports[int(container)] = int(host)
    return ports


def test_the_stack_has_every_part_the_issue_names() -> None:
    assert set(SERVICES) >= {
        "kafka", "influxdb", "grafana", "prometheus", "simulator", "worker", "edge",
    }  # fmt: skip


def test_every_service_has_an_image_or_a_build_that_exists() -> None:
    for name, service in SERVICES.items():
        assert "image" in service or "build" in service, name
        build = service.get("build")
        if build:
            context = ROOT / build["context"]
            dockerfile = context / build.get("dockerfile", "Dockerfile")
            assert dockerfile.is_file(), f"{name}: {dockerfile} missing"
    assert SERVICES["kafka"]["image"] == KAFKA_IMAGE, "the official Apache Kafka image"
    assert SERVICES["influxdb"]["image"] == INFLUXDB_IMAGE


def test_the_dockerfile_copies_what_exists_and_runs_the_cli() -> None:
    text = (ROOT / "Dockerfile").read_text()
    for line in text.splitlines():
        # A COPY --from takes its sources from an earlier build stage, not the repository.
        if line.startswith("COPY") and "--from=" not in line:
            for source in shlex.split(line)[1:-1]:
                assert (ROOT / source).exists(), f"Dockerfile copies a missing {source}"
    assert 'ENTRYPOINT ["tokenwire"]' in text
    packages = re.findall(r"COPY (\w+) ", text)
    pyproject = (ROOT / "pyproject.toml").read_text()
    for package in ("tokenwire", "agents", "api", "schemas"):
        assert package in packages and f'"{package}*"' in pyproject, package


def test_commands_are_real_tokenwire_subcommands() -> None:
    parser = build_parser()
    for name in PROJECT_SERVICES:
        command = SERVICES[name]["command"]
        parser.parse_args(command)  # SystemExit (a failure) on an unknown command or option


def test_mounted_files_exist() -> None:
    for name, service in SERVICES.items():
        for volume in service.get("volumes", []):
            source = str(volume).split(":")[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), f"{name} mounts a missing {source}"
            else:
                assert source in COMPOSE["volumes"], f"{name}: undeclared volume {source}"


def test_project_variables_are_real_settings_with_valid_values(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    known = setting_env_names()
    for name in (*PROJECT_SERVICES, "grafana"):
        variables = env(name)
        for key in variables:
            if key.startswith("TOKENWIRE_"):
                assert key in known, f"{name}: {key} is no setting"
        if name == "grafana":
            continue
        with monkeypatch.context() as patch:
            for key, value in variables.items():
                patch.setenv(key, value)
            Settings()  # a malformed value fails here, naming the key
            AggregatesSettings()


def test_services_agree_on_each_others_addresses() -> None:
    worker, edge = Settings(**_settings_of("worker")), Settings(**_settings_of("edge"))
    kafka = env("kafka")
    assert f"PLAINTEXT://{worker.kafka_bootstrap}" in kafka["KAFKA_ADVERTISED_LISTENERS"]
    assert kafka["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert published("kafka")[19092] == Settings().kafka_port, "host tools reach the same port"

    influx = env("influxdb")
    assert urlparse(worker.influx_url).hostname == "influxdb"
    assert urlparse(worker.influx_url).port == 8086
    assert published("influxdb")[8086] == Settings().influx_port
    assert worker.influx_org == influx["DOCKER_INFLUXDB_INIT_ORG"]
    assert worker.influx_bucket == influx["DOCKER_INFLUXDB_INIT_BUCKET"]
    assert worker.influx_token.get_secret_value() == influx["DOCKER_INFLUXDB_INIT_ADMIN_TOKEN"]

    sim = urlparse(worker.effective_openai_base_url)
    assert sim.hostname == "simulator"
    assert str(sim.port) == env("simulator")["TOKENWIRE_SIM_PORT"]
    assert SERVICES["simulator"]["command"][-1] == str(sim.port)
    assert edge.edge_port == int(SERVICES["edge"]["command"][-1])
    assert edge.kafka_bootstrap == worker.kafka_bootstrap


def _settings_of(service: str) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for key, value in env(service).items():
        if key.startswith("TOKENWIRE_") and not key.startswith("TOKENWIRE_AGG_"):
            values[key.removeprefix("TOKENWIRE_").lower()] = value
    return values


def test_prometheus_scrapes_the_edge_and_the_worker_where_they_listen() -> None:
    config = yaml.safe_load((ROOT / "prometheus" / "prometheus.yml").read_text())
    targets = {
        t for job in config["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]
    }
    worker, edge = env("worker"), env("edge")
    assert f"worker:{worker['TOKENWIRE_WORKER_WEB_PORT']}" in targets
    assert worker["TOKENWIRE_WORKER_WEB_HOST"] == "0.0.0.0", "reachable from the prometheus box"
    assert f"edge:{edge['TOKENWIRE_EDGE_PORT']}" in targets
    assert edge["TOKENWIRE_EDGE_HOST"] == "0.0.0.0"
    mounts = SERVICES["prometheus"]["volumes"]
    assert "./prometheus/prometheus.yml:/etc/prometheus/prometheus.yml:ro" in mounts


def test_grafana_provisioning_matches_influxdb_and_the_dashboards() -> None:
    grafana = env("grafana")
    mounts = {str(v).split(":")[0]: str(v).split(":")[1] for v in SERVICES["grafana"]["volumes"]}
    assert mounts["./grafana/provisioning"] == "/etc/grafana/provisioning"
    datasources = yaml.safe_load(
        (ROOT / "grafana/provisioning/datasources/influxdb.yml").read_text()
    )["datasources"]
    influx = next(d for d in datasources if d["type"] == "influxdb")
    for placeholder in re.findall(r"\$\{(\w+)\}", json.dumps(datasources)):
        assert placeholder in grafana, f"grafana needs {placeholder} in its environment"
    assert grafana["TOKENWIRE_INFLUX_URL"] == env("worker")["TOKENWIRE_INFLUX_URL"]
    assert grafana["TOKENWIRE_INFLUX_TOKEN"] == env("influxdb")["DOCKER_INFLUXDB_INIT_ADMIN_TOKEN"]
    assert influx["jsonData"]["version"] == "Flux"
    provider = yaml.safe_load((ROOT / "grafana/provisioning/dashboards/tokenwire.yml").read_text())[
        "providers"
    ][0]
    assert mounts["./grafana/dashboards"] == provider["options"]["path"]
    home = grafana["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home.startswith(provider["options"]["path"])
    assert (ROOT / "grafana/dashboards" / Path(home).name).is_file()
    for path in dashboard_files():
        dashboard = json.loads(path.read_text())
        variables = {v["name"]: v for v in dashboard["templating"]["list"]}
        assert variables["bucket"]["query"] == env("influxdb")["DOCKER_INFLUXDB_INIT_BUCKET"]
        uids = {t["datasource"]["uid"] for p in dashboard["panels"] for t in p["targets"]}
        assert uids == {influx["uid"]}


def test_start_order_waits_on_health_checks() -> None:
    for name, service in SERVICES.items():
        for dependency, rule in (service.get("depends_on") or {}).items():
            assert dependency in SERVICES, f"{name} depends on unknown {dependency}"
            condition = rule["condition"]
            if condition == "service_healthy":
                assert "healthcheck" in SERVICES[dependency], f"{dependency} has no healthcheck"
            else:
                assert condition == "service_completed_successfully", (name, dependency)
    worker_deps = SERVICES["worker"]["depends_on"]
    assert {"kafka", "influxdb", "topics"} <= set(worker_deps)
    assert worker_deps["topics"]["condition"] == "service_completed_successfully"
    for name in ("worker", "edge", "kafka", "influxdb"):
        assert "healthcheck" in SERVICES[name], name
    worker_health = " ".join(SERVICES["worker"]["healthcheck"]["test"])
    assert f":{env('worker')['TOKENWIRE_WORKER_WEB_PORT']}/healthz" in worker_health


CLUSTER_NODES = ("kafka-1", "kafka-2", "kafka-3")


def test_the_cluster_profile_is_a_three_node_kraft_quorum() -> None:
    voters = {env(name)["KAFKA_CONTROLLER_QUORUM_VOTERS"] for name in CLUSTER_NODES}
    assert voters == {"1@kafka-1:9093,2@kafka-2:9093,3@kafka-3:9093"}, "one quorum, all three"
    assert len({env(name)["CLUSTER_ID"] for name in CLUSTER_NODES}) == 1
    host_ports = set()
    for node_id, name in enumerate(CLUSTER_NODES, start=1):
        service, variables = SERVICES[name], env(name)
        assert service["profiles"] == ["cluster"], "off unless asked for"
        assert service["image"] == KAFKA_IMAGE
        assert variables["KAFKA_NODE_ID"] == str(node_id)
        assert variables["KAFKA_PROCESS_ROLES"] == "broker,controller"
        assert f"PLAINTEXT://{name}:9092" in variables["KAFKA_ADVERTISED_LISTENERS"]
        host_port = published(name)[19092]
        assert f"HOST://localhost:{host_port}" in variables["KAFKA_ADVERTISED_LISTENERS"]
        host_ports.add(host_port)
        for key in ("KAFKA_DEFAULT_REPLICATION_FACTOR", "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
                    "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"):
            assert variables[key] == "3", (name, key)
        assert variables["KAFKA_MIN_INSYNC_REPLICAS"] == "2"
        assert variables["KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"] == "2"
        assert variables["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
        assert "healthcheck" in service
        assert any(str(v).startswith(f"{name}-data:") for v in service["volumes"])
    assert len(host_ports) == 3 and published("kafka")[19092] not in host_ports
    # Spaced like `tokenwire services up` spaces a local cluster's nodes (port + 2i).
    first = min(host_ports)
    assert host_ports == {first, first + 2, first + 4}
