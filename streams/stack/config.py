"""The local stack's pure parts: its records, ports, paths, config rendering and state parsing.

Nothing here starts a process; a unit test can call all of it.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import re
import socket
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

KAFKA_VERSION = "4.1.1"
LOOPBACK = "127.0.0.1"
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0
STATE_FILE = "stack.json"
JARS_MARKER = ".fetched.json"
OWNED = frozenset({STATE_FILE, ".lock", "kafka", "redis"})  #: what a state dir may hold
# streams/stack/config.py -> the repository root is three folders up.
POM = Path(__file__).resolve().parents[2] / "deploy" / "local" / "pom.xml"

log = logging.getLogger("trackflow.stack")


class StackError(RuntimeError):
    """The local stack cannot be fetched, started, reached or stopped; the message says why."""


@dataclass(frozen=True)
class Ports:
    """Loopback ports of one stack."""

    kafka: int  #: the PLAINTEXT listener clients use
    controller: int  #: the KRaft CONTROLLER listener, internal to the broker
    redis: int


@dataclass(frozen=True)
class StackInfo:
    """A running local stack: where it answers and which processes it is."""

    bootstrap_servers: str  #: Kafka bootstrap address, ``127.0.0.1:<port>``
    redis_url: str  #: ``redis://127.0.0.1:<port>/0``
    state_dir: Path  #: the directory that owns config, data, logs and pid files
    ports: Ports
    kafka_pid: int
    redis_pid: int

    def env(self) -> dict[str, str]:
        """The environment variables the app and the tests read."""
        return {"KAFKA_BOOTSTRAP_SERVERS": self.bootstrap_servers, "REDIS_URL": self.redis_url}

    def to_json(self) -> str:
        data = asdict(self)
        data["state_dir"] = str(self.state_dir)
        return json.dumps(data, indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> StackInfo:
        try:
            data = json.loads(text)
            return cls(
                bootstrap_servers=str(data["bootstrap_servers"]),
                redis_url=str(data["redis_url"]),
                state_dir=Path(data["state_dir"]),
                ports=Ports(**{k: int(v) for k, v in data["ports"].items()}),
                kafka_pid=int(data["kafka_pid"]),
                redis_pid=int(data["redis_pid"]),
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise StackError(f"unreadable stack state: {exc!r}") from exc


@dataclass(frozen=True)
class StackStatus:
    """What runs: the recorded stack (None when none is recorded) and whether each part answers."""

    info: StackInfo | None
    kafka_alive: bool = False
    kafka_answering: bool = False
    redis_alive: bool = False
    redis_answering: bool = False

    @property
    def running(self) -> bool:
        return self.kafka_answering and self.redis_answering


def default_state_dir() -> Path:
    return Path(os.environ.get("TRACKFLOW_STACK_DIR") or Path.home() / ".cache/trackflow/stack")


def kafka_home() -> Path:
    default = Path.home() / f".cache/trackflow/kafka-{KAFKA_VERSION}"
    return Path(os.environ.get("TRACKFLOW_KAFKA_HOME") or default)


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        # As the servers themselves do, so a port left in TIME_WAIT does not count as taken.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


def choose_ports(kafka_port: int | None = None, redis_port: int | None = None) -> Ports:
    """Use the given ports (which must be free) and pick free loopback ports for the rest."""
    for name, port in (("kafka", kafka_port), ("redis", redis_port)):
        if port is not None and not port_is_free(port):
            raise StackError(
                f"--{name}-port {port} is already in use on {LOOPBACK}; "
                "choose another port or leave the option out to get a free one"
            )
    if kafka_port is not None and kafka_port == redis_port:
        raise StackError(f"Kafka and Redis cannot share port {kafka_port}")
    taken = {p for p in (kafka_port, redis_port) if p is not None}
    with contextlib.ExitStack() as held:

        def free() -> int:
            # Keep every probe socket bound until all ports are chosen, so none is handed out twice.
            while True:
                sock = held.enter_context(socket.socket())
                sock.bind((LOOPBACK, 0))
                port: int = sock.getsockname()[1]
                if port not in taken:
                    taken.add(port)
                    return port

        return Ports(
            kafka=kafka_port if kafka_port is not None else free(),
            controller=free(),
            redis=redis_port if redis_port is not None else free(),
        )


def _prop(value: object) -> str:
    text = str(value).lower() if isinstance(value, bool) else str(value)
    return text.replace("\\", "\\\\")  # java.util.Properties reads a backslash as an escape


def render_server_properties(ports: Ports, data_dir: Path) -> str:
    """server.properties of a combined broker+controller KRaft node on loopback."""
    settings: dict[str, object] = {
        "process.roles": "broker,controller",
        "node.id": 1,
        # A static voter set (not --standalone's dynamic quorum) so a restart on other ports
        # still finds its controller: the voters come from this file, not from the metadata log.
        "controller.quorum.voters": f"1@{LOOPBACK}:{ports.controller}",
        "listeners": f"PLAINTEXT://{LOOPBACK}:{ports.kafka},CONTROLLER://{LOOPBACK}:{ports.controller}",
        "advertised.listeners": f"PLAINTEXT://{LOOPBACK}:{ports.kafka}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "log.dirs": data_dir,
        # The app declares its topics; a typo must fail instead of creating a topic.
        "auto.create.topics.enable": False,
        "num.partitions": 1,
        "default.replication.factor": 1,
        "min.insync.replicas": 1,
        "offsets.topic.replication.factor": 1,
        "offsets.topic.num.partitions": 10,  # the default 50 slows the first group join
        "transaction.state.log.replication.factor": 1,
        "transaction.state.log.min.isr": 1,
        "transaction.state.log.num.partitions": 10,
        "share.coordinator.state.topic.replication.factor": 1,
        "share.coordinator.state.topic.min.isr": 1,
        "group.initial.rebalance.delay.ms": 0,  # tests and demos should not wait 3 s per join
        # A dev box: small segments, one day or 256 MiB per partition, a small cleaner buffer.
        "log.segment.bytes": 16 * 1024 * 1024,
        "log.retention.hours": 24,
        "log.retention.bytes": 256 * 1024 * 1024,
        "log.retention.check.interval.ms": 60_000,
        "log.cleaner.dedupe.buffer.size": 16 * 1024 * 1024,
    }
    return "".join(f"{key}={_prop(value)}\n" for key, value in settings.items())


def render_log4j2(logs_dir: Path) -> str:
    """log4j2 configuration: the broker logs to ``server.log`` (rolled at 10 MB) in logs_dir."""
    log_file = _prop(logs_dir / "server.log")
    # shutdownHook = disable: Kafka logs its own shutdown from a JVM shutdown hook, and log4j2's
    # hook would otherwise close the file first and lose those lines.
    return f"""\
status = warn
shutdownHook = disable
appender.file.type = RollingFile
appender.file.name = file
appender.file.fileName = {log_file}
appender.file.filePattern = {log_file}.%i
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
appender.file.policies.type = Policies
appender.file.policies.size.type = SizeBasedTriggeringPolicy
appender.file.policies.size.size = 10MB
appender.file.strategy.type = DefaultRolloverStrategy
appender.file.strategy.max = 3
rootLogger.level = info
rootLogger.appenderRef.file.ref = file
logger.clients.name = org.apache.kafka.clients
logger.clients.level = warn
"""


def new_cluster_id() -> str:
    """A random cluster id in Kafka's Uuid form: 16 bytes, URL-safe base64 without padding."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cluster_id.startswith("-"):  # as Kafka does: the CLI would read it as an option
            return cluster_id


def java_major(version_output: str) -> int | None:
    """The major version from ``java -version`` output; "1.8.0_392" is Java 8."""
    match = re.search(r'version "(\d+)(?:\.(\d+))?', version_output)
    if match is None:
        return None
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major


def jars_complete(libs: Path) -> bool:
    """True when a fetch finished here: its marker exists and every jar it lists is present."""
    try:
        jars = json.loads((libs / JARS_MARKER).read_text())["jars"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return bool(jars) and all((libs / name).is_file() for name in jars)


def read_state(state_dir: Path) -> StackInfo | None:
    """The stack recorded in state_dir, or None when there is none (or it cannot be read)."""
    try:
        return StackInfo.from_json((state_dir / STATE_FILE).read_text())
    except FileNotFoundError:
        return None
    except StackError as exc:
        log.warning("stack.state.unreadable path=%s error=%s", state_dir / STATE_FILE, exc)
        return None


def tail(path: Path, lines: int = 40) -> str:
    try:
        with path.open("rb") as fh:
            fh.seek(max(0, fh.seek(0, os.SEEK_END) - 64 * 1024))
            text = fh.read().decode(errors="replace")
    except OSError:
        return f"({path} is missing)"
    return "\n".join(text.splitlines()[-lines:])


def resolve_dir(state_dir: Path | None) -> Path:
    """The absolute state directory: the one given, else the default."""
    return (state_dir or default_state_dir()).expanduser().resolve()
