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
from dataclasses import asdict, dataclass, field
from pathlib import Path

KAFKA_VERSION = "4.1.1"
#: Apicurio Registry, the stack's schema registry: 3.0.x is the newest line that runs on the
#: Java 17 the brokers use (3.3 needs 21); a Quarkus app from Maven Central (classifier ``all``,
#: a tar.gz: the runner jar and its lib/), with its default in-memory H2 storage
REGISTRY_VERSION = "3.0.9"
REGISTRY_ARTIFACT = f"io.apicurio:apicurio-registry-app:{REGISTRY_VERSION}:tar.gz:all"
REGISTRY_RUNNER = f"apicurio-registry-app-{REGISTRY_VERSION}-runner.jar"
#: the registry's Confluent-compatible API, what SCHEMA_REGISTRY_URL points at
REGISTRY_API = "/apis/ccompat/v7"
LOOPBACK = "127.0.0.1"
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0
STATE_FILE = "stack.json"
JARS_MARKER = ".fetched.json"
MAX_BROKERS = 5
#: what a state dir may hold: node 1 in kafka/, node n in kafka-<n>/, the stack's CA in tls/
OWNED = frozenset({STATE_FILE, ".lock", "kafka", "redis", "tls", "registry",
                   *(f"kafka-{n}" for n in range(2, MAX_BROKERS + 1))})
SASL_MECHANISM = "SCRAM-SHA-512"  #: what `stack up --secure` exports unless --auth says otherwise
#: every SASL mechanism a secure stack's SASL_SSL listener enables (the SCRAM ones get the
#: stack's user at format time, PLAIN gets it from the listener's JAAS config)
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
SCRAM_MECHANISMS = ("SCRAM-SHA-256", "SCRAM-SHA-512")
#: how a client of a secure stack authenticates (`trackflow stack up --secure --auth ...`): a
#: SASL mechanism on the SASL_SSL listener, or ``mtls``, a client certificate on the SSL
#: listener that requires one
AUTH_CHOICES = ("scram-sha-512", "scram-sha-256", "plain", "mtls")
MTLS_LISTENER = "MTLS"  #: the name of a secure stack's SSL listener with ssl.client.auth=required
SASL_USER = "trackflow"
#: the Maven description of Kafka's broker jars, package data of this module's package (it
#: ships in the wheel, so an installed trackflow fetches the jars without a checkout)
POM_RESOURCE = "pom.xml"

log = logging.getLogger("trackflow.stack")


class StackError(RuntimeError):
    """The local stack cannot be fetched, started, reached or stopped; the message says why."""


@dataclass(frozen=True)
class NodePorts:
    """Loopback ports of one Kafka node."""

    node_id: int
    kafka: int  #: its PLAINTEXT listener (clients of a plain stack, and broker to broker)
    controller: int  #: its KRaft CONTROLLER listener
    secure: int = 0  #: its SASL_SSL listener; 0 in a plain stack
    mtls: int = 0  #: its SSL listener that requires a client certificate; 0 in a plain stack


@dataclass(frozen=True)
class Ports:
    """Loopback ports of one stack."""

    kafka: int  #: node 1's PLAINTEXT listener
    controller: int  #: node 1's KRaft CONTROLLER listener
    redis: int  #: Redis (its TLS port in a secure stack)
    secure: int = 0  #: node 1's SASL_SSL listener; 0 in a plain stack
    more: tuple[tuple[int, ...], ...] = ()
    """(kafka, controller, secure, mtls) of nodes 2, 3, …"""
    mtls: int = 0  #: node 1's SSL listener that requires a client certificate; 0 when plain
    registry: int = 0  #: the schema registry's HTTP port; 0 in a stack without one

    def nodes(self) -> list[NodePorts]:
        first = NodePorts(1, self.kafka, self.controller, self.secure, self.mtls)
        return [first, *(NodePorts(n, *p) for n, p in enumerate(self.more, start=2))]

    @property
    def brokers(self) -> int:
        return 1 + len(self.more)


@dataclass(frozen=True)
class SecureInfo:
    """What clients of a secure stack need: the CA, the SASL login and a client certificate."""

    ca_file: Path  #: PEM CA that signed the brokers' and Redis' certificates
    username: str
    password: str = field(repr=False)
    mechanism: str = SASL_MECHANISM
    #: PEM client certificate (signed by ca_file) and its key, for the mutual-TLS listener
    cert_file: Path | None = None
    key_file: Path | None = None


@dataclass(frozen=True)
class StackInfo:
    """A running local stack: where it answers and which processes it is."""

    bootstrap_servers: str  #: Kafka bootstrap address, ``127.0.0.1:<port>``
    redis_url: str = field(repr=False)  #: ``redis://127.0.0.1:<port>/0``; may hold a password
    state_dir: Path  #: the directory that owns config, data, logs and pid files
    ports: Ports
    kafka_pid: int  #: node 1
    redis_pid: int
    more_kafka_pids: tuple[int, ...] = ()  #: nodes 2, 3, …
    secure: SecureInfo | None = None  #: set when the stack was started with --secure
    registry_pid: int = 0  #: the schema registry; 0 in a stack without one

    @property
    def registry_url(self) -> str | None:
        """The schema registry's Confluent-compatible API, or None."""
        return f"http://{LOOPBACK}:{self.ports.registry}{REGISTRY_API}" \
            if self.ports.registry else None

    @property
    def kafka_pids(self) -> list[tuple[int, int]]:
        """(node id, pid) of every broker."""
        return [(1, self.kafka_pid),
                *((n, pid) for n, pid in enumerate(self.more_kafka_pids, start=2))]

    @property
    def plaintext_bootstrap(self) -> str:
        """The PLAINTEXT listeners (the stack's own probes use them, also in a secure stack)."""
        return ",".join(f"{LOOPBACK}:{n.kafka}" for n in self.ports.nodes())

    def env(self, auth: str | None = None) -> dict[str, str]:
        """The environment variables the app, the tests and any other client read.

        ``auth`` (a secure stack only, one of AUTH_CHOICES) picks how clients log in: a SASL
        mechanism on the SASL_SSL listeners (default SCRAM-SHA-512), or ``mtls``: protocol SSL
        on the listeners that require a client certificate, with the stack's client certificate.
        """
        if auth is not None and auth not in AUTH_CHOICES:
            raise StackError(f"unknown auth {auth!r}: choose one of {', '.join(AUTH_CHOICES)}")
        if auth is not None and self.secure is None:
            raise StackError("the stack is not secure: --auth needs `trackflow stack up --secure`")
        env = {"KAFKA_BOOTSTRAP_SERVERS": self.bootstrap_servers, "REDIS_URL": self.redis_url}
        if self.registry_url is not None:
            env["SCHEMA_REGISTRY_URL"] = self.registry_url
        if self.ports.brokers >= 3:
            env["TRACKFLOW_KAFKA__REPLICATION_FACTOR"] = "3"
        if self.secure is None:
            return env
        sec = "TRACKFLOW_KAFKA__SECURITY__"
        env[f"{sec}CA_FILE"] = str(self.secure.ca_file)
        if auth == "mtls":
            if not self.ports.mtls or self.secure.cert_file is None or self.secure.key_file is None:
                raise StackError("this secure stack predates the mutual-TLS listener: run "
                                 "`trackflow stack down` and `trackflow stack up --secure` again")
            env.update({
                "KAFKA_BOOTSTRAP_SERVERS": ",".join(
                    f"{LOOPBACK}:{n.mtls}" for n in self.ports.nodes()),
                f"{sec}PROTOCOL": "SSL",
                f"{sec}CERT_FILE": str(self.secure.cert_file),
                f"{sec}KEY_FILE": str(self.secure.key_file),
            })
            return env
        env.update({
            f"{sec}PROTOCOL": "SASL_SSL",
            f"{sec}SASL_MECHANISM": auth.upper() if auth else self.secure.mechanism,
            "TRACKFLOW_KAFKA_SASL_USERNAME": self.secure.username,
            "TRACKFLOW_KAFKA_SASL_PASSWORD": self.secure.password,
        })
        return env

    def to_json(self) -> str:
        data = asdict(self)
        data["state_dir"] = str(self.state_dir)
        if self.secure is not None:
            for name in ("ca_file", "cert_file", "key_file"):
                value = getattr(self.secure, name)
                data["secure"][name] = None if value is None else str(value)
        return json.dumps(data, indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> StackInfo:
        try:
            data = json.loads(text)
            ports = dict(data["ports"])
            more = tuple(tuple(int(p) for p in node) for node in ports.pop("more", ()))
            secure = data.get("secure")
            return cls(
                bootstrap_servers=str(data["bootstrap_servers"]),
                redis_url=str(data["redis_url"]),
                state_dir=Path(data["state_dir"]),
                ports=Ports(**{k: int(v) for k, v in ports.items()}, more=more),
                kafka_pid=int(data["kafka_pid"]),
                redis_pid=int(data["redis_pid"]),
                more_kafka_pids=tuple(int(p) for p in data.get("more_kafka_pids", ())),
                registry_pid=int(data.get("registry_pid", 0)),
                secure=None if secure is None else SecureInfo(
                    Path(secure["ca_file"]), str(secure["username"]), str(secure["password"]),
                    str(secure.get("mechanism", SASL_MECHANISM)),
                    *(None if secure.get(name) is None else Path(secure[name])
                      for name in ("cert_file", "key_file"))),
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


def registry_home() -> Path:
    """Where the schema registry's app is unpacked, once per machine like the Kafka jars
    (``TRACKFLOW_REGISTRY_HOME`` moves it)."""
    default = Path.home() / f".cache/trackflow/apicurio-registry-{REGISTRY_VERSION}"
    return Path(os.environ.get("TRACKFLOW_REGISTRY_HOME") or default)


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


def choose_ports(kafka_port: int | None = None, redis_port: int | None = None, *,
                 brokers: int = 1, secure: bool = False, registry: bool = False) -> Ports:
    """Use the given ports (which must be free) and pick free loopback ports for the rest.

    ``kafka_port`` is the port clients connect to: node 1's SASL_SSL listener in a secure stack,
    its PLAINTEXT listener otherwise.
    """
    if not 1 <= brokers <= MAX_BROKERS:
        raise StackError(f"--brokers must be between 1 and {MAX_BROKERS}, got {brokers}")
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

        client = kafka_port if kafka_port is not None else free()
        return Ports(
            kafka=free() if secure else client,
            controller=free(),
            redis=redis_port if redis_port is not None else free(),
            secure=client if secure else 0,
            more=tuple((free(), free(), *((free(), free()) if secure else (0, 0)))
                       for _ in range(brokers - 1)),
            mtls=free() if secure else 0,
            registry=free() if registry else 0,
        )


def _prop(value: object) -> str:
    text = str(value).lower() if isinstance(value, bool) else str(value)
    return text.replace("\\", "\\\\")  # java.util.Properties reads a backslash as an escape


def render_server_properties(ports: Ports, data_dir: Path, node_id: int = 1,
                             keystore: Path | None = None,
                             login: SecureInfo | None = None) -> str:
    """server.properties of one combined broker+controller KRaft node on loopback.

    With ``keystore`` (a PEM file holding the node's key and certificate chain) and ``login``
    (the stack's CA and user) the node also listens for SASL_SSL clients (PLAIN, SCRAM-SHA-256
    and SCRAM-SHA-512 logins of that user) and, on the ``MTLS`` listener, for SSL clients that
    present a certificate signed by the stack's CA (``ssl.client.auth=required``). Brokers and
    controllers talk PLAINTEXT to each other on loopback. The PLAIN user's password is in the
    file: write it readable by its owner only.
    """
    if (keystore is None) != (login is None):
        raise ValueError("a secure node needs both its keystore and the stack's login")
    node = ports.nodes()[node_id - 1]
    replicas = min(3, ports.brokers)  # 3 when the cluster has three brokers or more
    min_isr = 2 if replicas >= 3 else 1
    listeners = [f"PLAINTEXT://{LOOPBACK}:{node.kafka}"]
    protocols = ["CONTROLLER:PLAINTEXT", "PLAINTEXT:PLAINTEXT"]
    if keystore is not None:
        listeners += [f"SASL_SSL://{LOOPBACK}:{node.secure}",
                      f"{MTLS_LISTENER}://{LOOPBACK}:{node.mtls}"]
        protocols += ["SASL_SSL:SASL_SSL", f"{MTLS_LISTENER}:SSL"]
    settings: dict[str, object] = {
        "process.roles": "broker,controller",
        "node.id": node_id,
        # A static voter set (not --standalone's dynamic quorum) so a restart on other ports
        # still finds its controller: the voters come from this file, not from the metadata log.
        "controller.quorum.voters": ",".join(
            f"{n.node_id}@{LOOPBACK}:{n.controller}" for n in ports.nodes()),
        "listeners": ",".join([*listeners, f"CONTROLLER://{LOOPBACK}:{node.controller}"]),
        "advertised.listeners": ",".join(listeners),
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": ",".join(protocols),
        "log.dirs": data_dir,
        # The app declares its topics; a typo must fail instead of creating a topic.
        "auto.create.topics.enable": False,
        "num.partitions": 1,
        "default.replication.factor": replicas,
        "min.insync.replicas": min_isr,
        "offsets.topic.replication.factor": replicas,
        "offsets.topic.num.partitions": 10,  # the default 50 slows the first group join
        "transaction.state.log.replication.factor": replicas,
        "transaction.state.log.min.isr": min_isr,
        "transaction.state.log.num.partitions": 10,
        "share.coordinator.state.topic.replication.factor": replicas,
        "share.coordinator.state.topic.min.isr": min_isr,
        "group.initial.rebalance.delay.ms": 0,  # tests and demos should not wait 3 s per join
        # A dev box: small segments, one day or 256 MiB per partition, a small cleaner buffer.
        "log.segment.bytes": 16 * 1024 * 1024,
        "log.retention.hours": 24,
        "log.retention.bytes": 256 * 1024 * 1024,
        "log.retention.check.interval.ms": 60_000,
        "log.cleaner.dedupe.buffer.size": 16 * 1024 * 1024,
    }
    if keystore is not None and login is not None:
        scram = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
        mtls = f"listener.name.{MTLS_LISTENER.lower()}."
        settings.update({
            "sasl.enabled.mechanisms": ",".join(SASL_MECHANISMS),
            **{f"listener.name.sasl_ssl.{m.lower()}.sasl.jaas.config": scram
               for m in SCRAM_MECHANISMS},
            "listener.name.sasl_ssl.plain.sasl.jaas.config":
                "org.apache.kafka.common.security.plain.PlainLoginModule required "
                f'user_{login.username}="{login.password}";',
            "ssl.keystore.type": "PEM",
            "ssl.keystore.location": keystore,
            "ssl.client.auth": "none",
            # The mutual-TLS listener: a client must present a certificate the stack's CA signed.
            f"{mtls}ssl.client.auth": "required",
            f"{mtls}ssl.truststore.type": "PEM",
            f"{mtls}ssl.truststore.location": login.ca_file,
        })
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
