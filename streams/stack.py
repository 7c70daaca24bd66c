"""The local stack: a real single-node Kafka (KRaft) and Redis, run without Docker.

``trackflow stack up`` fetches the Apache Kafka jars from Maven Central once, formats a KRaft log
directory, starts the broker and ``redis-server`` as detached processes and prints the environment
variables that point at them. One state directory holds everything a stack owns::

    stack.json                       ports, pids and URLs of the running stack
    kafka/server.properties, log4j2.properties, kafka.pid, kafka.out, logs/, data/
    redis/redis.pid, redis.log, data/
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import fcntl
import json
import logging
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

import click

KAFKA_VERSION = "4.1.1"
LOOPBACK = "127.0.0.1"
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0
STATE_FILE = "stack.json"
JARS_MARKER = ".fetched.json"
_OWNED = frozenset({STATE_FILE, ".lock", "kafka", "redis"})  #: what a state dir may hold
POM = Path(__file__).resolve().parent.parent / "deploy" / "local" / "pom.xml"

log = logging.getLogger("trackflow.stack")
T = TypeVar("T")


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


# --- pure pieces: paths, ports, rendering, parsing -------------------------------------------


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


# --- processes -------------------------------------------------------------------------------


def _kafka_marker(state_dir: Path) -> tuple[str, ...]:
    return ("kafka.Kafka", str(state_dir / "kafka" / "server.properties"))


def _redis_marker(port: int) -> tuple[str, ...]:
    # Matches both "redis-server --port P ..." at exec and the "redis-server 127.0.0.1:P" title
    # redis gives itself once running.
    return ("redis-server", str(port))


def pid_alive(pid: int, marker: tuple[str, ...] = ()) -> bool:
    """True when pid runs and its command line holds every marker (guards against pid reuse)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists but is not ours to signal; the command line decides
    proc = Path(f"/proc/{pid}")
    if not proc.is_dir():
        return True  # no procfs (macOS): trust kill(0)
    try:
        state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except (OSError, IndexError):
        return False
    # A zombie is dead: our detached services are reaped by whoever adopted them, maybe never.
    return state != "Z" and all(needle in cmdline for needle in marker)


def _run(argv: list[str], what: str, env: dict[str, str] | None = None) -> None:
    """Run a helper command quietly; show its output only when it fails."""
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL, check=False
        )
    except OSError as exc:
        raise StackError(f"{what} failed: {exc}") from exc
    if done.returncode != 0:
        output = "\n".join((done.stdout + done.stderr).splitlines()[-40:])
        raise StackError(f"{what} failed (exit {done.returncode}): {shlex.join(argv)}\n{output}")


def _spawn(argv: list[str], out: Path, cwd: Path) -> int:
    """Start argv detached in its own session and return its pid.

    A shell backgrounds it and exits, so the service is adopted away from this process: it outlives
    us, never becomes our zombie, and Python does not warn about a child still running.
    """
    script = f"{shlex.join(argv)} </dev/null >>{shlex.quote(str(out))} 2>&1 & echo $!"
    done = subprocess.run(
        ["/bin/sh", "-c", script], cwd=cwd, capture_output=True, text=True, start_new_session=True
    )
    if done.returncode != 0 or not done.stdout.strip().isdigit():
        raise StackError(f"could not start {argv[0]}: {done.stderr.strip()}")
    return int(done.stdout.strip())


def _stop(pid: int, marker: tuple[str, ...], name: str, timeout_s: float) -> None:
    """SIGTERM, wait up to timeout_s for a clean exit, then SIGKILL."""
    if not pid_alive(pid, marker):
        return
    log.info("stack.stop service=%s pid=%d", name, pid)
    for sig, wait_s in ((signal.SIGTERM, timeout_s), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if not pid_alive(pid, marker):
                return
            time.sleep(0.1)
        if sig == signal.SIGTERM:
            log.warning("stack.stop.kill service=%s pid=%d waited_s=%.0f", name, pid, wait_s)
    raise StackError(f"{name} (pid {pid}) survived SIGKILL")


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Serialise up/down across processes, so two concurrent `up`s never start two brokers."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


# --- prerequisites ---------------------------------------------------------------------------


def find_java() -> str:
    java_home = os.environ.get("JAVA_HOME")
    candidate = Path(java_home, "bin", "java") if java_home else None
    java = str(candidate) if candidate and candidate.is_file() else shutil.which("java")
    hint = (
        "Kafka 4.1 needs Java 17 or newer. Install it (Debian/Ubuntu: "
        "`sudo apt-get install -y openjdk-17-jre-headless`; macOS: `brew install openjdk@17`) "
        "and put it on PATH or set JAVA_HOME."
    )
    if java is None:
        raise StackError(f"no `java` found (JAVA_HOME unset, nothing on PATH). {hint}")
    try:
        probe = subprocess.run([java, "-version"], capture_output=True, text=True, check=False)
    except OSError as exc:
        raise StackError(f"{java} does not run ({exc}). {hint}") from exc
    major = java_major(probe.stderr + probe.stdout)
    if major is None or major < 17:
        raise StackError(f"{java} is Java {major or 'of unknown version'}. {hint}")
    return java


def ensure_jars(home: Path) -> Path:
    """The folder of Kafka broker jars, fetched from Maven Central when missing or incomplete."""
    libs = home / "libs"
    if jars_complete(libs):
        return libs
    with _locked(home / ".lock"):
        if jars_complete(libs):  # another process fetched them while we waited for the lock
            return libs
        mvn = shutil.which("mvn")
        if mvn is None:
            raise StackError(
                "Maven (`mvn`) is needed once to fetch the Kafka jars and is not on PATH. Install "
                "it (Debian/Ubuntu: `sudo apt-get install -y maven`; macOS: `brew install maven`)."
            )
        if not POM.is_file():
            raise StackError(f"{POM} is missing; run from a checkout of the trackflow repository")
        # Fetch into a fresh folder first: a half-copied jar must never land in libs.
        partial = home / f"libs.partial-{os.getpid()}"
        shutil.rmtree(partial, ignore_errors=True)
        log.info("stack.jars.fetch kafka=%s into=%s (first run only)", KAFKA_VERSION, libs)
        argv = [mvn, "-q", "-B", "-f", str(POM), "dependency:copy-dependencies"]
        try:
            _run([*argv, f"-DoutputDirectory={partial}"], "fetching the Kafka jars with Maven")
            jars = sorted(p.name for p in partial.glob("*.jar"))
            if f"kafka_2.13-{KAFKA_VERSION}.jar" not in jars:
                raise StackError(f"Maven finished without kafka_2.13-{KAFKA_VERSION}.jar")
            # Move jar by jar (each rename is atomic) rather than swapping the folder, so a broker
            # starting from libs meanwhile never finds it missing; drop jars from other versions.
            libs.mkdir(parents=True, exist_ok=True)
            for jar in jars:
                os.replace(partial / jar, libs / jar)
            for stale in {p.name for p in libs.glob("*.jar")} - set(jars):
                (libs / stale).unlink()
            (libs / JARS_MARKER).write_text(json.dumps({"kafka": KAFKA_VERSION, "jars": jars}))
        finally:
            shutil.rmtree(partial, ignore_errors=True)
    return libs


def ensure_command(command: str, package: str, how_to_install: str) -> str:
    """``command`` from PATH; installed with apt-get when we are root on Debian, else an error."""
    found = shutil.which(command)
    if found is None and Path("/etc/debian_version").exists() and os.geteuid() == 0:
        log.info("stack.install command=%s package=%s via=apt-get", command, package)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        _run(["apt-get", "update", "-q"], "apt-get update", env)
        _run(["apt-get", "install", "-y", "-q", package], f"apt-get install {package}", env)
        found = shutil.which(command)
    if found is None:
        raise StackError(f"`{command}` is not on PATH. Install it: {how_to_install}")
    return found


def find_redis_server() -> str:
    """redis-server from PATH; installed with apt when we are root on Debian."""
    return ensure_command(
        "redis-server",
        "redis-server",
        "`sudo apt-get install -y redis-server` (Debian/Ubuntu), `sudo dnf install -y redis` "
        "(Fedora) or `brew install redis` (macOS).",
    )


# --- readiness -------------------------------------------------------------------------------


def _run_async(factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine from sync code, also when called inside a running event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(factory())
    # asyncio.run cannot nest (e.g. up() from an async pytest fixture): use a thread's own loop.
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: asyncio.run(factory())).result()


async def _list_topics(bootstrap: str, timeout_s: float) -> bool:
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.errors import KafkaError

    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap, request_timeout_ms=int(timeout_s * 1000)
    )
    # aiokafka logs every refused connection at ERROR; while we poll a starting broker those are
    # the expected answer "not yet", not errors worth showing.
    aiokafka_log = logging.getLogger("aiokafka")
    level = aiokafka_log.level
    aiokafka_log.setLevel(logging.CRITICAL)
    try:
        await asyncio.wait_for(admin.start(), timeout_s)
        await asyncio.wait_for(admin.list_topics(), timeout_s)
        return True
    except (KafkaError, OSError, TimeoutError) as exc:
        log.debug("stack.kafka.probe bootstrap=%s error=%r", bootstrap, exc)
        return False
    finally:
        await admin.close()
        aiokafka_log.setLevel(level)


def kafka_answers(bootstrap: str, timeout_s: float = 5.0) -> bool:
    """True when an admin client can list topics: the broker serves metadata, not just TCP."""
    return _run_async(lambda: _list_topics(bootstrap, timeout_s))


def redis_answers(url: str, timeout_s: float = 1.0) -> bool:
    import redis

    client = redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def _wait_ready(
    name: str,
    answers: Callable[[], bool],
    pid: int,
    marker: tuple[str, ...],
    logs: list[Path],
    timeout_s: float,
) -> None:
    deadline = time.monotonic() + timeout_s
    while not answers():
        exited = not pid_alive(pid, marker)
        if exited or time.monotonic() > deadline:
            why = "exited during start-up" if exited else f"did not answer within {timeout_s:g}s"
            details = "".join(
                f"\n--- {p}\n{tail(p)}" for p in logs if p.is_file() and p.stat().st_size
            )
            raise StackError(f"{name} {why}.{details}")
        time.sleep(0.25)


# --- start, status, stop ---------------------------------------------------------------------


def _start_kafka(state_dir: Path, ports: Ports, java: str, libs: Path) -> int:
    kafka_dir = state_dir / "kafka"
    data_dir, logs_dir = kafka_dir / "data", kafka_dir / "logs"
    for folder in (data_dir, logs_dir):
        folder.mkdir(parents=True, exist_ok=True)
    props, log4j2 = kafka_dir / "server.properties", kafka_dir / "log4j2.properties"
    props.write_text(render_server_properties(ports, data_dir))
    log4j2.write_text(render_log4j2(logs_dir))
    jvm = [java, f"-Dlog4j2.configurationFile={log4j2}", f"-Dkafka.logs.dir={logs_dir}"]
    classpath = ["-cp", f"{libs}/*"]
    if not (data_dir / "meta.properties").exists():  # format once; later starts keep the data
        storage_tool = [*jvm, *classpath, "kafka.tools.StorageTool", "format", "-c", str(props)]
        _run([*storage_tool, "-t", new_cluster_id()], "formatting the Kafka log directory")
    heap = ["-Xms256m", "-Xmx768m", "-XX:+UseG1GC", "-Djava.awt.headless=true"]
    pid = _spawn(
        [*jvm, *heap, *classpath, "kafka.Kafka", str(props)], kafka_dir / "kafka.out", kafka_dir
    )
    (kafka_dir / "kafka.pid").write_text(f"{pid}\n")
    log.info("stack.kafka.start pid=%d port=%d", pid, ports.kafka)
    return pid


def _start_redis(state_dir: Path, port: int, redis_server: str) -> int:
    redis_dir = state_dir / "redis"
    (redis_dir / "data").mkdir(parents=True, exist_ok=True)
    # No persistence: it is a cache, and a dev box should not fill its disk with snapshots.
    options = f"--port {port} --bind {LOOPBACK} --appendonly no --daemonize no".split()
    argv = [redis_server, *options, "--save", "", "--dir", str(redis_dir / "data")]
    pid = _spawn(argv, redis_dir / "redis.log", redis_dir)
    (redis_dir / "redis.pid").write_text(f"{pid}\n")
    log.info("stack.redis.start pid=%d port=%d", pid, port)
    return pid


def _resolve_dir(state_dir: Path | None) -> Path:
    return (state_dir or default_state_dir()).expanduser().resolve()


def up(
    *, kafka_port: int | None = None, redis_port: int | None = None, state_dir: Path | None = None
) -> StackInfo:
    """Start the local stack, or return the one already running from state_dir."""
    return ensure_running(kafka_port=kafka_port, redis_port=redis_port, state_dir=state_dir)[0]


def ensure_running(
    *, kafka_port: int | None = None, redis_port: int | None = None, state_dir: Path | None = None
) -> tuple[StackInfo, bool]:
    """As up(), and whether this call started the stack (False when it was already running).

    Whoever gets True owns the stack and should call down() when done with it.
    """
    state_dir = _resolve_dir(state_dir)
    with _locked(state_dir / ".lock"):
        current = status(state_dir)
        if current.info is not None and current.running:
            wanted = (kafka_port, redis_port)
            have = (current.info.ports.kafka, current.info.ports.redis)
            if any(w is not None and w != h for w, h in zip(wanted, have, strict=True)):
                raise StackError(
                    f"a stack already runs from {state_dir} on ports kafka={have[0]} "
                    f"redis={have[1]}; run `trackflow stack down` first"
                )
            return current.info, False
        if current.info is not None:  # a half-dead stack: clear it so the new one owns the data
            alive = current.kafka_alive, current.redis_alive
            log.info("stack.stale kafka_alive=%s redis_alive=%s", *alive)
            _stop_all(current.info)
        java, redis_server = find_java(), find_redis_server()
        libs = ensure_jars(kafka_home())
        ports = choose_ports(kafka_port, redis_port)
        kafka_pid = redis_pid = 0
        try:
            kafka_pid = _start_kafka(state_dir, ports, java, libs)
            redis_pid = _start_redis(state_dir, ports.redis, redis_server)
            urls = f"{LOOPBACK}:{ports.kafka}", f"redis://{LOOPBACK}:{ports.redis}/0"
            info = StackInfo(*urls, state_dir, ports, kafka_pid, redis_pid)
            _wait_ready(
                "Redis",
                lambda: redis_answers(info.redis_url),
                redis_pid,
                _redis_marker(ports.redis),
                [state_dir / "redis" / "redis.log"],
                10.0,
            )
            _wait_ready(
                "Kafka",
                lambda: kafka_answers(info.bootstrap_servers),
                kafka_pid,
                _kafka_marker(state_dir),
                [state_dir / "kafka" / "kafka.out", state_dir / "kafka" / "logs" / "server.log"],
                READY_TIMEOUT_S,
            )
        except BaseException:
            # A failed start leaves nothing running behind (Ctrl-C included). No command-line
            # check here: we spawned these pids a moment ago, and a marker that misjudges a
            # half-started process must not leak it.
            if kafka_pid:
                _stop(kafka_pid, (), "kafka", 5.0)
            if redis_pid:
                _stop(redis_pid, (), "redis", 5.0)
            raise
        (state_dir / STATE_FILE).write_text(info.to_json())
        return info, True


def status(state_dir: Path | None = None) -> StackStatus:
    """What the state dir records, and whether each process lives and answers."""
    info = read_state(_resolve_dir(state_dir))
    if info is None:
        return StackStatus(None)
    kafka_alive = pid_alive(info.kafka_pid, _kafka_marker(info.state_dir))
    redis_alive = pid_alive(info.redis_pid, _redis_marker(info.ports.redis))
    return StackStatus(
        info,
        kafka_alive=kafka_alive,
        kafka_answering=kafka_alive and kafka_answers(info.bootstrap_servers),
        redis_alive=redis_alive,
        redis_answering=redis_alive and redis_answers(info.redis_url),
    )


def _stop_all(info: StackInfo) -> None:
    _stop(info.kafka_pid, _kafka_marker(info.state_dir), "kafka", STOP_TIMEOUT_S)
    _stop(info.redis_pid, _redis_marker(info.ports.redis), "redis", 5.0)
    (info.state_dir / STATE_FILE).unlink(missing_ok=True)


def down(*, state_dir: Path | None = None, purge: bool = False) -> None:
    """Stop the stack recorded in state_dir; with purge, also delete its data, logs and config."""
    state_dir = _resolve_dir(state_dir)
    if not state_dir.exists():
        return
    with _locked(state_dir / ".lock"):
        info = read_state(state_dir)
        if info is not None:
            _stop_all(info)
        if purge:
            # Only delete what a stack owns: a mistyped --state-dir must not wipe a home folder.
            foreign = {p.name for p in state_dir.iterdir()} - _OWNED
            if foreign:
                raise StackError(
                    f"not purging {state_dir}: it holds more than a stack "
                    f"({', '.join(sorted(foreign))})"
                )
            shutil.rmtree(state_dir)


# --- CLI -------------------------------------------------------------------------------------

_state_dir_option = click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where the stack keeps config, data and logs [default: $TRACKFLOW_STACK_DIR or "
    "~/.cache/trackflow/stack].",
)


@click.group()
def stack() -> None:
    """Run a real single-node Kafka and Redis locally, without Docker."""
    # Progress goes to stderr: stdout of `stack up` is only `export` lines for eval.
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")


@stack.command("up")
@click.option("--kafka-port", type=int, default=None, help="Kafka port [default: a free one].")
@click.option("--redis-port", type=int, default=None, help="Redis port [default: a free one].")
@_state_dir_option
def up_command(kafka_port: int | None, redis_port: int | None, state_dir: Path | None) -> None:
    """Start the stack (or find it running); print `export` lines for `eval`."""
    started = time.monotonic()
    try:
        info = up(kafka_port=kafka_port, redis_port=redis_port, state_dir=state_dir)
    except StackError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(
        f"stack ready in {time.monotonic() - started:.1f}s (state: {info.state_dir})", err=True
    )
    for name, value in info.env().items():
        click.echo(f"export {name}={shlex.quote(value)}")


@stack.command("status")
@_state_dir_option
def status_command(state_dir: Path | None) -> None:
    """Show what runs; exit status 0 only when Kafka and Redis both answer."""
    current = status(state_dir)
    if current.info is None:
        click.echo("stopped (no stack recorded)")
        raise SystemExit(1)
    info = current.info
    for name, alive, answering, where, pid in (
        (
            "kafka",
            current.kafka_alive,
            current.kafka_answering,
            info.bootstrap_servers,
            info.kafka_pid,
        ),
        ("redis", current.redis_alive, current.redis_answering, info.redis_url, info.redis_pid),
    ):
        state = "answering" if answering else "not answering" if alive else "stopped"
        click.echo(f"{name}: {state} at {where} (pid {pid})")
    click.echo(f"state: {info.state_dir}")
    raise SystemExit(0 if current.running else 1)


@stack.command("down")
@click.option("--purge", is_flag=True, help="Also delete the stack's data, logs and config.")
@_state_dir_option
def down_command(purge: bool, state_dir: Path | None) -> None:
    """Stop Kafka and Redis; keep their data unless --purge."""
    try:
        down(state_dir=state_dir, purge=purge)
    except StackError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo("stack stopped" + (" and purged" if purge else ""), err=True)
