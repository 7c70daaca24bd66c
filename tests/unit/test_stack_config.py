"""The local stack's pure parts: config rendering, port choice, state parsing. No processes run."""

from __future__ import annotations

import dataclasses
import json
import socket
import tomllib
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import pytest

from trackflow.streams import stack
from trackflow.streams.stack import Ports, StackError, StackInfo, config


def parse_properties(text: str) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))
    return {key.strip(): value.strip() for key, value in pairs}


@pytest.fixture
def listening_port() -> Iterator[int]:
    """A loopback port something is listening on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def info(tmp_path: Path) -> StackInfo:
    return StackInfo(
        bootstrap_servers="127.0.0.1:19092",
        redis_url="redis://127.0.0.1:16379/0",
        state_dir=tmp_path,
        ports=Ports(kafka=19092, controller=19093, redis=16379),
        kafka_pid=1234,
        redis_pid=1235,
    )


def test_server_properties_describe_a_single_combined_kraft_node(tmp_path: Path) -> None:
    ports = Ports(kafka=19092, controller=19093, redis=16379)
    props = parse_properties(config.render_server_properties(ports, tmp_path / "data"))

    assert props["process.roles"] == "broker,controller"
    assert props["node.id"] == "1"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:19093"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:19092"
    assert props["controller.listener.names"] == "CONTROLLER"
    assert props["log.dirs"] == str(tmp_path / "data")
    assert props["group.initial.rebalance.delay.ms"] == "0"


def test_server_properties_turn_off_auto_create_and_use_replication_factor_one(
    tmp_path: Path,
) -> None:
    props = parse_properties(config.render_server_properties(Ports(1, 2, 3), tmp_path))

    assert props["auto.create.topics.enable"] == "false"
    factors = {k: v for k, v in props.items() if "replication.factor" in k or "min.isr" in k}
    assert "offsets.topic.replication.factor" in factors
    assert "transaction.state.log.replication.factor" in factors
    assert set(factors.values()) == {"1"}, f"expected every replication setting at 1: {factors}"
    assert props["min.insync.replicas"] == "1"


def test_properties_escape_backslashes_the_way_java_reads_them() -> None:
    text = config.render_server_properties(Ports(1, 2, 3), Path("/odd\\dir"))

    assert "log.dirs=/odd\\\\dir\n" in text


def test_log4j2_config_writes_server_log_into_the_given_folder(tmp_path: Path) -> None:
    text = config.render_log4j2(tmp_path / "logs")

    assert f"fileName = {tmp_path / 'logs' / 'server.log'}" in text
    assert "rootLogger.appenderRef.file.ref = file" in text


def test_choose_ports_picks_three_distinct_free_ports() -> None:
    ports = config.choose_ports()

    chosen = {ports.kafka, ports.controller, ports.redis}
    assert len(chosen) == 3, f"expected three different ports, got {ports}"
    assert all(config.port_is_free(p) for p in chosen)


def test_choose_ports_keeps_free_explicit_ports() -> None:
    free = config.choose_ports()

    ports = config.choose_ports(kafka_port=free.kafka, redis_port=free.redis)

    assert (ports.kafka, ports.redis) == (free.kafka, free.redis)
    assert ports.controller not in (free.kafka, free.redis)


@pytest.mark.parametrize("which", ["kafka", "redis"])
def test_an_explicit_port_in_use_is_refused_with_its_number(
    listening_port: int, which: str
) -> None:
    with pytest.raises(StackError, match=rf"--{which}-port {listening_port} is already in use"):
        config.choose_ports(**{f"{which}_port": listening_port})


def test_kafka_and_redis_cannot_share_a_port() -> None:
    port = config.choose_ports().kafka

    with pytest.raises(StackError, match="cannot share"):
        config.choose_ports(kafka_port=port, redis_port=port)


def test_state_round_trips_through_json(tmp_path: Path) -> None:
    original = info(tmp_path)

    assert StackInfo.from_json(original.to_json()) == original


def test_read_state_is_none_without_a_state_file(tmp_path: Path) -> None:
    assert config.read_state(tmp_path) is None


@pytest.mark.parametrize("content", ["not json", "{}", '{"ports": []}', "[]"])
def test_read_state_treats_an_unreadable_state_file_as_no_stack(
    tmp_path: Path, content: str
) -> None:
    (tmp_path / config.STATE_FILE).write_text(content)

    assert config.read_state(tmp_path) is None


def test_read_state_reads_what_up_writes(tmp_path: Path) -> None:
    (tmp_path / config.STATE_FILE).write_text(info(tmp_path).to_json())

    assert config.read_state(tmp_path) == info(tmp_path)


def test_env_names_the_variables_the_app_reads(tmp_path: Path) -> None:
    assert info(tmp_path).env() == {
        "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:19092",
        "REDIS_URL": "redis://127.0.0.1:16379/0",
    }


def test_a_stack_with_a_schema_registry_exports_its_url_and_records_it(tmp_path: Path) -> None:
    import dataclasses

    plain = info(tmp_path)
    with_registry = dataclasses.replace(
        plain, ports=dataclasses.replace(plain.ports, registry=18081), registry_pid=4242)
    assert with_registry.env()["SCHEMA_REGISTRY_URL"] == \
        "http://127.0.0.1:18081/apis/ccompat/v7"
    assert StackInfo.from_json(with_registry.to_json()) == with_registry
    # A state file written before the registry existed reads as a stack without one.
    data = json.loads(plain.to_json())
    data.pop("registry_pid")
    data["ports"].pop("registry")
    assert StackInfo.from_json(json.dumps(data)).registry_url is None
    ports = config.choose_ports(registry=True)
    assert ports.registry and ports.registry not in (ports.kafka, ports.redis, ports.controller)
    assert config.choose_ports().registry == 0


@pytest.mark.parametrize(
    ("output", "major"),
    [
        ('openjdk version "17.0.15" 2025-04-15', 17),
        ('openjdk version "21" 2023-09-19', 21),
        ('java version "1.8.0_392"', 8),
        ("something else entirely", None),
    ],
)
def test_java_major_reads_java_version_output(output: str, major: int | None) -> None:
    assert config.java_major(output) == major


def test_cluster_ids_look_like_kafka_uuids() -> None:
    ids = {config.new_cluster_id() for _ in range(200)}

    assert len(ids) == 200
    assert all(len(i) == 22 and not i.startswith("-") for i in ids)


def test_jars_are_complete_only_when_the_marker_lists_present_jars(tmp_path: Path) -> None:
    assert not config.jars_complete(tmp_path), "expected an empty folder to need a fetch"

    (tmp_path / "kafka_2.13-4.1.1.jar").write_bytes(b"jar")
    assert not config.jars_complete(tmp_path), "expected jars without a marker to need a fetch"

    marker = {"kafka": "4.1.1", "jars": ["kafka_2.13-4.1.1.jar", "kafka-clients-4.1.1.jar"]}
    (tmp_path / config.JARS_MARKER).write_text(json.dumps(marker))
    assert not config.jars_complete(tmp_path), "expected a missing listed jar to need a fetch"

    (tmp_path / "kafka-clients-4.1.1.jar").write_bytes(b"jar")
    assert config.jars_complete(tmp_path)


def test_tail_returns_the_last_lines(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    log.write_text("".join(f"line {i}\n" for i in range(100)))

    assert config.tail(log, lines=2) == "line 98\nline 99"
    assert "missing" in config.tail(tmp_path / "nope.log")


def test_defaults_follow_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TRACKFLOW_STACK_DIR", str(tmp_path / "stack"))
    monkeypatch.setenv("TRACKFLOW_KAFKA_HOME", str(tmp_path / "kafka"))

    assert config.default_state_dir() == tmp_path / "stack"
    assert config.kafka_home() == tmp_path / "kafka"


def test_status_without_a_recorded_stack_says_stopped(tmp_path: Path) -> None:
    current = stack.status(tmp_path)

    assert current.info is None
    assert not current.running


def test_purge_refuses_a_folder_that_holds_more_than_a_stack(tmp_path: Path) -> None:
    (tmp_path / "thesis.tex").write_text("precious")

    with pytest.raises(StackError, match="not purging"):
        stack.down(state_dir=tmp_path, purge=True)
    assert (tmp_path / "thesis.tex").exists()


def test_three_nodes_share_one_voter_set_and_replicate_three_ways(tmp_path: Path) -> None:
    ports = config.choose_ports(brokers=3)
    nodes = ports.nodes()
    assert [n.node_id for n in nodes] == [1, 2, 3]
    assert len({p for n in nodes for p in (n.kafka, n.controller)} | {ports.redis}) == 7
    rendered = [parse_properties(config.render_server_properties(ports, tmp_path, n.node_id))
                for n in nodes]
    assert len({p["controller.quorum.voters"] for p in rendered}) == 1
    for node, props in zip(nodes, rendered, strict=True):
        assert props["node.id"] == str(node.node_id)
        assert props["advertised.listeners"] == f"PLAINTEXT://127.0.0.1:{node.kafka}"
        assert props["default.replication.factor"] == "3"
        assert props["offsets.topic.replication.factor"] == "3"
        assert props["min.insync.replicas"] == "2"


def test_a_secure_node_adds_a_sasl_ssl_listener_with_every_mechanism_and_a_mtls_one(
        tmp_path: Path) -> None:
    ports = config.choose_ports(kafka_port=None, brokers=1, secure=True)
    login = config.SecureInfo(tmp_path / "ca.pem", "trackflow", "pw-not-shown")
    props = parse_properties(config.render_server_properties(ports, tmp_path, 1,
                                                             tmp_path / "broker.pem", login))
    assert f"SASL_SSL://127.0.0.1:{ports.secure}" in props["listeners"]
    assert f"MTLS://127.0.0.1:{ports.mtls}" in props["advertised.listeners"]
    assert len({ports.kafka, ports.controller, ports.secure, ports.mtls, ports.redis}) == 5
    assert props["sasl.enabled.mechanisms"] == "PLAIN,SCRAM-SHA-256,SCRAM-SHA-512"
    for mechanism in ("scram-sha-256", "scram-sha-512"):
        assert "ScramLoginModule" in props[f"listener.name.sasl_ssl.{mechanism}.sasl.jaas.config"]
    assert 'user_trackflow="pw-not-shown"' in props["listener.name.sasl_ssl.plain.sasl.jaas.config"]
    assert props["ssl.keystore.type"] == "PEM"
    assert props["ssl.client.auth"] == "none", "the SASL_SSL listener logs in with SASL"
    assert props["listener.name.mtls.ssl.client.auth"] == "required"
    assert props["listener.name.mtls.ssl.truststore.location"] == str(tmp_path / "ca.pem")
    assert "SASL_SSL:SASL_SSL" in props["listener.security.protocol.map"]
    assert "MTLS:SSL" in props["listener.security.protocol.map"]


def test_a_secure_cluster_round_trips_and_exports_every_client_setting(tmp_path: Path) -> None:
    ports = config.choose_ports(brokers=3, secure=True)
    secure = config.SecureInfo(tmp_path / "ca.pem", "trackflow", "pw-not-shown",
                               cert_file=tmp_path / "client.crt", key_file=tmp_path / "client.key")
    original = StackInfo("127.0.0.1:1,127.0.0.1:2", "rediss://trackflow:pw-not-shown@h:1/0",
                         tmp_path, ports, 10, 11, (12, 13), secure)
    assert StackInfo.from_json(original.to_json()) == original
    assert "pw-not-shown" not in repr(original)
    env = original.env()
    assert env["TRACKFLOW_KAFKA__REPLICATION_FACTOR"] == "3"
    assert env["TRACKFLOW_KAFKA__SECURITY__PROTOCOL"] == "SASL_SSL"
    assert env["TRACKFLOW_KAFKA__SECURITY__SASL_MECHANISM"] == "SCRAM-SHA-512"
    assert env["TRACKFLOW_KAFKA__SECURITY__CA_FILE"] == str(tmp_path / "ca.pem")
    assert env["TRACKFLOW_KAFKA_SASL_PASSWORD"] == "pw-not-shown"
    assert original.kafka_pids == [(1, 10), (2, 12), (3, 13)]
    assert original.env("plain")["TRACKFLOW_KAFKA__SECURITY__SASL_MECHANISM"] == "PLAIN"
    assert original.env("scram-sha-256")["TRACKFLOW_KAFKA__SECURITY__SASL_MECHANISM"] \
        == "SCRAM-SHA-256"
    mtls = original.env("mtls")
    assert mtls["TRACKFLOW_KAFKA__SECURITY__PROTOCOL"] == "SSL"
    assert mtls["KAFKA_BOOTSTRAP_SERVERS"] == ",".join(
        f"127.0.0.1:{n.mtls}" for n in ports.nodes())
    assert mtls["TRACKFLOW_KAFKA__SECURITY__CERT_FILE"] == str(tmp_path / "client.crt")
    assert mtls["TRACKFLOW_KAFKA__SECURITY__KEY_FILE"] == str(tmp_path / "client.key")
    assert "TRACKFLOW_KAFKA_SASL_PASSWORD" not in mtls
    with pytest.raises(config.StackError, match="not secure"):
        dataclasses.replace(original, secure=None).env("mtls")


def test_a_secure_stack_recorded_before_the_mtls_listener_still_reads(tmp_path: Path) -> None:
    """stack.json of a secure stack started by an older trackflow: three ports per node, no
    client certificate; it reads, exports SASL_SSL, and asks for a restart for mTLS."""
    ports = config.choose_ports(brokers=3, secure=True)
    secure = config.SecureInfo(tmp_path / "ca.pem", "trackflow", "pw-not-shown")
    data = json.loads(StackInfo("127.0.0.1:1", "rediss://x", tmp_path, ports, 10, 11, (12, 13),
                                secure).to_json())
    data["ports"].pop("mtls")
    data["ports"]["more"] = [node[:3] for node in data["ports"]["more"]]
    for name in ("cert_file", "key_file"):
        data["secure"].pop(name)
    old = StackInfo.from_json(json.dumps(data))
    assert old.env()["TRACKFLOW_KAFKA__SECURITY__PROTOCOL"] == "SASL_SSL"
    with pytest.raises(config.StackError, match="predates the mutual-TLS listener"):
        old.env("mtls")


def test_a_broker_that_is_shutting_down_is_never_handed_out(tmp_path: Path) -> None:
    from trackflow.streams.stack.lifecycle import STOPPING, _stopping

    logs = tmp_path / "kafka" / "logs"
    logs.mkdir(parents=True)
    started = "[2026] INFO [KafkaRaftServer nodeId=1] Kafka Server started (kafka.server)\n"
    (logs / "server.log").write_text(started)
    assert not _stopping(info(tmp_path))
    (logs / "server.log").write_text(
        started + "[2026] INFO [BrokerServer id=1] Transition from STARTED to SHUTTING_DOWN\n")
    assert _stopping(info(tmp_path)), "a broker past SHUTTING_DOWN must not be reused"
    (logs / "server.log").write_text(started)
    (tmp_path / STOPPING).touch()
    assert _stopping(info(tmp_path)), "a stack whose down began must not be reused"


def test_the_kafka_pom_is_package_data_of_the_stack_and_names_its_kafka_version() -> None:
    pom = resources.files("trackflow.streams.stack") / config.POM_RESOURCE
    assert pom.is_file(), f"expected {pom} beside the stack's modules"
    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    version = ET.fromstring(pom.read_bytes()).findtext("m:properties/m:kafka.version",
                                                       namespaces=ns)
    assert version == config.KAFKA_VERSION, (
        f"expected the pom to fetch Kafka {config.KAFKA_VERSION}, it names {version}")
    pyproject = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())
    data = pyproject["tool"]["setuptools"]["package-data"].get("trackflow.streams.stack", [])
    assert config.POM_RESOURCE in data, "expected pyproject.toml to ship the pom as package data"
