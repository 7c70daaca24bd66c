"""The local stack's processes: start them detached, wait until they answer, stop them."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import shlex
import signal
import subprocess
import time
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from trackflow.streams.stack.config import (
    LOOPBACK,
    REGISTRY_RUNNER,
    SCRAM_MECHANISMS,
    Ports,
    SecureInfo,
    StackError,
    render_log4j2,
    render_server_properties,
    tail,
)

log = logging.getLogger("trackflow.stack")
T = TypeVar("T")


def node_dir(state_dir: Path, node_id: int = 1) -> Path:
    """Where node ``node_id`` keeps its config, data and logs."""
    return state_dir / ("kafka" if node_id == 1 else f"kafka-{node_id}")


def kafka_marker(state_dir: Path, node_id: int = 1) -> tuple[str, ...]:
    """What the command line of this state dir's broker ``node_id`` holds."""
    return ("kafka.Kafka", str(node_dir(state_dir, node_id) / "server.properties"))


def registry_marker(port: int) -> tuple[str, ...]:
    """What the command line of the schema registry on this port holds."""
    return (REGISTRY_RUNNER, f"-Dquarkus.http.port={port}")


def redis_marker(port: int) -> tuple[str, ...]:
    """What the command line of the Redis on this port holds."""
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


def run_quietly(argv: list[str], what: str, env: dict[str, str] | None = None,
                redact: list[str] | None = None) -> None:
    """Run a helper command quietly; show its output only when it fails (without the
    ``redact`` arguments, which hold secrets)."""
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL, check=False
        )
    except OSError as exc:
        raise StackError(f"{what} failed: {exc}") from exc
    if done.returncode != 0:
        output = "\n".join((done.stdout + done.stderr).splitlines()[-40:])
        shown = ["<redacted>" if a in (redact or ()) else a for a in argv]
        for secret in redact or ():
            output = output.replace(secret, "<redacted>")
        raise StackError(f"{what} failed (exit {done.returncode}): {shlex.join(shown)}\n{output}")


def spawn_detached(argv: list[str], out: Path, cwd: Path) -> int:
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


def stop_process(pid: int, marker: tuple[str, ...], name: str, timeout_s: float) -> None:
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
def locked(path: Path) -> Iterator[None]:
    """Serialise up/down across processes, so two concurrent `up`s never start two brokers."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


# --- readiness: a process that runs is not yet one that answers ---------------------------


def _run_async(factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine from sync code, also when called inside a running event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(factory())
    # asyncio.run cannot nest (e.g. up() from an async pytest fixture): use a thread's own loop.
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: asyncio.run(factory())).result()


async def _list_topics(bootstrap: str, timeout_s: float, brokers: int) -> bool:
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
        if brokers > 1:  # a node answers before the others registered: wait for all of them
            cluster = await asyncio.wait_for(admin.describe_cluster(), timeout_s)
            return len(cluster.get("brokers", ())) >= brokers
        return True
    except (KafkaError, OSError, TimeoutError) as exc:
        log.debug("stack.kafka.probe bootstrap=%s error=%r", bootstrap, exc)
        return False
    finally:
        await admin.close()
        aiokafka_log.setLevel(level)


def kafka_answers(bootstrap: str, timeout_s: float = 5.0, brokers: int = 1) -> bool:
    """True when an admin client can list topics (the broker serves metadata, not just TCP)
    and the cluster has ``brokers`` brokers registered."""
    return _run_async(lambda: _list_topics(bootstrap, timeout_s, brokers))


def redis_answers(url: str, timeout_s: float = 1.0) -> bool:
    import redis

    client = redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def registry_answers(url: str, timeout_s: float = 1.0) -> bool:
    """Whether the schema registry's Confluent-compatible API lists its subjects."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"{url}/subjects", timeout=timeout_s) as answer:
            return bool(answer.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


def wait_ready(
    name: str,
    answers: Callable[[], bool],
    pid: int,
    marker: tuple[str, ...],
    logs: list[Path],
    timeout_s: float,
) -> None:
    """Poll answers() until True; raise with the logs' tails if the process exits or time is up."""
    deadline = time.monotonic() + timeout_s
    while not answers():
        exited = not pid_alive(pid, marker)
        if exited:
            # Redis retitles itself as it starts ("redis-server 127.0.0.1:P"), rewriting its
            # command line in place: read at that instant it can match no marker (a stack
            # start stopped a Redis that was ready 0.1 s later). Dead is what stays dead.
            time.sleep(0.25)
            exited = not answers() and not pid_alive(pid, marker)
            if not exited:
                continue
        if exited or time.monotonic() > deadline:
            why = "exited during start-up" if exited else f"did not answer within {timeout_s:g}s"
            details = "".join(
                f"\n--- {p}\n{tail(p)}" for p in logs if p.is_file() and p.stat().st_size
            )
            raise StackError(f"{name} {why}.{details}")
        time.sleep(0.25)


# --- starting the two services ----------------------------------------------------------------


def start_kafka(state_dir: Path, ports: Ports, java: str, libs: Path, *, node_id: int = 1,
                cluster_id: str, secure: SecureInfo | None = None) -> int:
    """Write a node's config, format its log dir on first start, start it; return its pid.

    Every node of a cluster is formatted with the same ``cluster_id`` and, in a secure stack,
    with the SCRAM login, which the format writes into the first metadata snapshot.
    """
    kafka_dir = node_dir(state_dir, node_id)
    data_dir, logs_dir = kafka_dir / "data", kafka_dir / "logs"
    for folder in (data_dir, logs_dir):
        folder.mkdir(parents=True, exist_ok=True)
    props, log4j2 = kafka_dir / "server.properties", kafka_dir / "log4j2.properties"
    keystore = state_dir / "tls" / "broker.pem" if secure is not None else None
    # A secure node's file holds the PLAIN user's password: readable by its owner only.
    fd = os.open(props, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(render_server_properties(ports, data_dir, node_id, keystore, secure))
    props.chmod(0o600)  # also when an older, plain stack left the file world-readable
    log4j2.write_text(render_log4j2(logs_dir))
    jvm = [java, f"-Dlog4j2.configurationFile={log4j2}", f"-Dkafka.logs.dir={logs_dir}"]
    classpath = ["-cp", f"{libs}/*"]
    if not (data_dir / "meta.properties").exists():  # format once; later starts keep the data
        storage_tool = [*jvm, *classpath, "kafka.tools.StorageTool", "format", "-c", str(props)]
        scram = [] if secure is None else [
            arg for mechanism in SCRAM_MECHANISMS
            for arg in ("--add-scram",
                        f"{mechanism}=[name={secure.username},password={secure.password}]")]
        run_quietly([*storage_tool, "-t", cluster_id, *scram],
                    f"formatting the log directory of Kafka node {node_id}",
                    redact=scram[1::2])
    heap = ["-Xms256m", "-Xmx768m" if ports.brokers == 1 else "-Xmx512m", "-XX:+UseG1GC",
            "-Djava.awt.headless=true"]
    pid = spawn_detached(
        [*jvm, *heap, *classpath, "kafka.Kafka", str(props)], kafka_dir / "kafka.out", kafka_dir
    )
    (kafka_dir / "kafka.pid").write_text(f"{pid}\n")
    node = ports.nodes()[node_id - 1]
    log.info("stack.kafka.start node=%d pid=%d port=%d", node_id, pid, node.secure or node.kafka)
    return pid


def start_registry(state_dir: Path, port: int, java: str, runner: Path) -> int:
    """Start the schema registry (Apicurio, in-memory storage) on loopback; return its pid.
    Its schemas live as long as the process, as the stack's topics are meant for development:
    a registry that outlives its topics' data would hand out ids nothing reads."""
    registry_dir = state_dir / "registry"
    registry_dir.mkdir(parents=True, exist_ok=True)
    argv = [java, "-Xms64m", "-Xmx384m", "-XX:+UseSerialGC", "-Djava.awt.headless=true",
            f"-Dquarkus.http.port={port}", f"-Dquarkus.http.host={LOOPBACK}",
            "-Dquarkus.log.level=WARN", "-jar", str(runner)]
    pid = spawn_detached(argv, registry_dir / "registry.out", runner.parent)
    (registry_dir / "registry.pid").write_text(f"{pid}\n")
    log.info("stack.registry.start pid=%d port=%d", pid, port)
    return pid


def start_redis(state_dir: Path, port: int, redis_server: str,
                secure: SecureInfo | None = None) -> int:
    """Start redis-server on loopback without persistence; return its pid.

    Secure: TLS only (the stack's certificate) and one ACL user, the stack's SCRAM login; the
    default user is off. The password goes into a 0600 config file, not the command line.
    """
    redis_dir = state_dir / "redis"
    (redis_dir / "data").mkdir(parents=True, exist_ok=True)
    # No persistence: it is a cache, and a dev box should not fill its disk with snapshots.
    options = f"--bind {LOOPBACK} --appendonly no --daemonize no".split()
    conf: list[str] = []
    if secure is None:
        options += ["--port", str(port)]
    else:
        tls = state_dir / "tls"
        conf_file = redis_dir / "redis.conf"
        fd = os.open(conf_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(f"user default off\nuser {secure.username} on >{secure.password} "
                     "~* &* +@all\n")
        conf = [str(conf_file)]
        options += ["--port", "0", "--tls-port", str(port),
                    "--tls-cert-file", str(tls / "redis.crt"), "--tls-key-file",
                    str(tls / "redis.key"), "--tls-ca-cert-file", str(tls / "ca.pem"),
                    "--tls-auth-clients", "no"]
    argv = [redis_server, *conf, *options, "--save", "", "--dir", str(redis_dir / "data")]
    pid = spawn_detached(argv, redis_dir / "redis.log", redis_dir)
    (redis_dir / "redis.pid").write_text(f"{pid}\n")
    log.info("stack.redis.start pid=%d port=%d", pid, port)
    return pid
