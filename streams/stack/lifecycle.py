"""The local stack's lifecycle: up (or reuse), status and down, one stack per state directory."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import shutil
import signal
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

from trackflow.streams.stack.config import (
    LOOPBACK,
    MAX_BROKERS,
    OWNED,
    READY_TIMEOUT_S,
    SCRAM_MECHANISMS,
    STATE_FILE,
    STOP_TIMEOUT_S,
    SecureInfo,
    StackError,
    StackInfo,
    StackStatus,
    choose_ports,
    kafka_home,
    new_cluster_id,
    port_is_free,
    read_state,
    registry_home,
    resolve_dir,
    tail,
)
from trackflow.streams.stack.prerequisites import (
    ensure_jars,
    ensure_registry,
    find_java,
    find_redis_server,
)
from trackflow.streams.stack.processes import (
    kafka_answers,
    kafka_marker,
    locked,
    node_dir,
    pid_alive,
    redis_answers,
    redis_marker,
    registry_answers,
    registry_marker,
    start_kafka,
    start_redis,
    start_registry,
    stop_process,
    wait_ready,
)

log = logging.getLogger("trackflow.stack")
STOPPING = "stopping"  #: marker file: a down began; whatever runs from this dir is going away


def up(
    *, kafka_port: int | None = None, redis_port: int | None = None, state_dir: Path | None = None,
    brokers: int | None = None, secure: bool | None = None, registry: bool = False,
) -> StackInfo:
    """Start the local stack, or return the one already running from state_dir.

    ``brokers`` and ``secure`` left as None accept whatever runs, and start one plain broker
    when nothing does; given, a running stack of another shape is an error. ``registry`` starts
    a schema registry with a new stack (``trackflow stack up`` does, unless --no-registry); a
    running stack is taken as it is.
    """
    return ensure_running(kafka_port=kafka_port, redis_port=redis_port, state_dir=state_dir,
                          brokers=brokers, secure=secure, registry=registry)[0]


def ensure_running(
    *, kafka_port: int | None = None, redis_port: int | None = None, state_dir: Path | None = None,
    brokers: int | None = None, secure: bool | None = None, registry: bool = False,
) -> tuple[StackInfo, bool]:
    """As up(), and whether this call started the stack (False when it was already running).

    Whoever gets True owns the stack and should call down() when done with it.
    """
    state_dir = resolve_dir(state_dir)
    with locked(state_dir / ".lock"):
        current = status(state_dir)
        if current.info is not None and current.running and not _stopping(current.info):
            info = current.info
            wanted = (kafka_port, redis_port)
            have = (info.ports.secure or info.ports.kafka, info.ports.redis)
            shape = (info.ports.brokers, info.secure is not None)
            if (any(w is not None and w != h
                    for w, h in zip((*wanted, brokers, secure), (*have, *shape), strict=True))):
                raise StackError(
                    f"a stack already runs from {state_dir} with {shape[0]} broker(s)"
                    f"{', secure' if shape[1] else ''} on ports kafka={have[0]} redis={have[1]}; "
                    "run `trackflow stack down` first"
                )
            return info, False
        if current.info is not None:  # a half-dead or dying stack: stop it, the new one owns it
            log.info("stack.stale kafka_alive=%s redis_alive=%s", current.kafka_alive,
                     current.redis_alive)
            _stop_all(current.info)
        (state_dir / STOPPING).unlink(missing_ok=True)
        return _start(state_dir, kafka_port, redis_port, brokers or 1, bool(secure),
                      registry), True


def _start(state_dir: Path, kafka_port: int | None, redis_port: int | None, brokers: int,
           secure: bool, registry: bool) -> StackInfo:
    java, redis_server = find_java(), find_redis_server()
    libs = ensure_jars(kafka_home())
    runner = ensure_registry(registry_home()) if registry else None
    ports = choose_ports(kafka_port, redis_port, brokers=brokers, secure=secure,
                         registry=registry)
    login: SecureInfo | None = None
    if secure:
        from trackflow.streams.stack.tls import ensure_tls

        login = ensure_tls(state_dir)
    shape_file = state_dir / "kafka" / "shape.json"
    # A secure stack's data also depends on its SCRAM mechanisms (format writes their users).
    shape = json.dumps({"brokers": brokers, "secure": secure,
                        **({"scram": list(SCRAM_MECHANISMS)} if secure else {})})
    if (not shape_file.is_file() or shape_file.read_text() != shape or any(
            not (node_dir(state_dir, n.node_id) / "data" / "meta.properties").exists()
            for n in ports.nodes())):
        # A cluster is formatted together, and for its shape: a fresh node must not join an
        # old node's cluster, and a plain stack's data has no SCRAM users.
        for node_id in range(1, MAX_BROKERS + 1):
            shutil.rmtree(node_dir(state_dir, node_id) / "data", ignore_errors=True)
        shape_file.parent.mkdir(parents=True, exist_ok=True)
        shape_file.write_text(shape)
    cluster_id = new_cluster_id()
    pids: list[int] = []
    redis_pid = registry_pid = 0
    try:
        for n in ports.nodes():
            pids.append(start_kafka(state_dir, ports, java, libs, node_id=n.node_id,
                                    cluster_id=cluster_id, secure=login))
        redis_pid = start_redis(state_dir, ports.redis, redis_server, login)
        if runner is not None:  # starts beside the brokers, ready a few seconds after them
            registry_pid = start_registry(state_dir, ports.registry, java, runner)
        if login is None:
            bootstrap = f"{LOOPBACK}:{ports.kafka}"
            redis_url = f"redis://{LOOPBACK}:{ports.redis}/0"
        else:
            bootstrap = ",".join(f"{LOOPBACK}:{n.secure}" for n in ports.nodes())
            redis_url = (f"rediss://{login.username}:{login.password}@{LOOPBACK}:{ports.redis}"
                         f"/0?ssl_ca_certs={login.ca_file}")
        if brokers > 1 and login is None:
            bootstrap = ",".join(f"{LOOPBACK}:{n.kafka}" for n in ports.nodes())
        info = StackInfo(bootstrap, redis_url, state_dir, ports, pids[0], redis_pid,
                         tuple(pids[1:]), login, registry_pid)
        wait_ready("Redis", lambda: redis_answers(info.redis_url), redis_pid,
                   redis_marker(ports.redis), [state_dir / "redis" / "redis.log"], 10.0)
        for n, pid in zip(ports.nodes(), pids, strict=True):
            where = node_dir(state_dir, n.node_id)
            wait_ready(f"Kafka node {n.node_id}", _answers(f"{LOOPBACK}:{n.kafka}", brokers),
                       pid, kafka_marker(state_dir, n.node_id),
                       [where / "kafka.out", where / "logs" / "server.log"], READY_TIMEOUT_S)
        if info.registry_url is not None:
            wait_ready("the schema registry", partial(registry_answers, info.registry_url),
                       registry_pid, registry_marker(ports.registry),
                       [state_dir / "registry" / "registry.out"], READY_TIMEOUT_S)
    except BaseException:
        # A failed start leaves nothing running behind (Ctrl-C included). No command-line
        # check here: we spawned these pids a moment ago, and a marker that misjudges a
        # half-started process must not leak it.
        for pid in pids:
            stop_process(pid, (), "kafka", 5.0)
        if redis_pid:
            stop_process(redis_pid, (), "redis", 5.0)
        if registry_pid:
            stop_process(registry_pid, (), "schema registry", 5.0)
        raise
    (state_dir / STATE_FILE).write_text(info.to_json())
    (state_dir / STATE_FILE).chmod(0o600)  # a secure stack's state holds its password
    return info


def _answers(bootstrap: str, brokers: int) -> Callable[[], bool]:
    return lambda: kafka_answers(bootstrap, brokers=brokers)


def status(state_dir: Path | None = None) -> StackStatus:
    """What the state dir records, and whether each process lives and answers."""
    info = read_state(resolve_dir(state_dir))
    if info is None:
        return StackStatus(None)
    kafka_alive = all(pid_alive(pid, kafka_marker(info.state_dir, n))
                      for n, pid in info.kafka_pids)
    redis_alive = pid_alive(info.redis_pid, redis_marker(info.ports.redis))
    return StackStatus(
        info,
        kafka_alive=kafka_alive,
        kafka_answering=kafka_alive and all(kafka_answers(f"{LOOPBACK}:{n.kafka}")
                                            for n in info.ports.nodes()),
        redis_alive=redis_alive,
        redis_answering=redis_alive and redis_answers(info.redis_url),
    )


def _stopping(info: StackInfo) -> bool:
    """True when a broker of this stack is shutting down (a down began, or someone else
    stopped it): such a stack is never handed out again, it is stopped and started afresh."""
    if (info.state_dir / STOPPING).exists():
        return True
    for n, _ in info.kafka_pids:
        text = tail(node_dir(info.state_dir, n) / "logs" / "server.log", 400)
        started, stopping = text.rfind("Kafka Server started"), text.rfind("SHUTTING_DOWN")
        if stopping > started:
            log.info("stack.kafka.stopping node=%d", n)
            return True
    return False


def _stop_all(info: StackInfo) -> None:
    """Stop every service, wait until their ports are free, and forget the recorded stack."""
    (info.state_dir / STOPPING).touch()
    for n, pid in info.kafka_pids:
        # SIGTERM to all first: the nodes shut down together, not one quorum member at a time.
        if pid_alive(pid, kafka_marker(info.state_dir, n)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
    for n, pid in info.kafka_pids:
        stop_process(pid, kafka_marker(info.state_dir, n), f"kafka node {n}", STOP_TIMEOUT_S)
    stop_process(info.redis_pid, redis_marker(info.ports.redis), "redis", 5.0)
    if info.registry_pid:
        stop_process(info.registry_pid, registry_marker(info.ports.registry), "schema registry",
                     10.0)
    ports = [info.ports.redis, *(p for n in info.ports.nodes()
                                 for p in (n.kafka, n.controller, n.secure, n.mtls) if p),
             *((info.ports.registry,) if info.ports.registry else ())]
    deadline = time.monotonic() + 10.0
    while not all(port_is_free(p) for p in ports) and time.monotonic() < deadline:
        time.sleep(0.1)
    (info.state_dir / STATE_FILE).unlink(missing_ok=True)
    (info.state_dir / STOPPING).unlink(missing_ok=True)


def stop_node(node_id: int, *, state_dir: Path | None = None, kill: bool = False) -> None:
    """Stop one Kafka node of the running stack (SIGTERM, or SIGKILL with ``kill``) and return
    once it is gone; its data and ports stay, and start_node() brings it back on them."""
    info = _recorded(state_dir)
    pid = dict(info.kafka_pids)[node_id]
    marker = kafka_marker(info.state_dir, node_id)
    if kill and pid_alive(pid, marker):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    stop_process(pid, marker, f"kafka node {node_id}", STOP_TIMEOUT_S)


def start_node(node_id: int, *, state_dir: Path | None = None) -> StackInfo:
    """Start a stopped Kafka node again on its recorded ports; returns the updated record."""
    info = _recorded(state_dir)
    with locked(info.state_dir / ".lock"):
        pids = dict(info.kafka_pids)
        if pid_alive(pids[node_id], kafka_marker(info.state_dir, node_id)):
            return info
        pid = start_kafka(info.state_dir, info.ports, find_java(), ensure_jars(kafka_home()),
                          node_id=node_id, cluster_id=new_cluster_id(), secure=info.secure)
        pids[node_id] = pid
        where = node_dir(info.state_dir, node_id)
        node = info.ports.nodes()[node_id - 1]
        wait_ready(f"Kafka node {node_id}", _answers(f"{LOOPBACK}:{node.kafka}", 1), pid,
                   kafka_marker(info.state_dir, node_id),
                   [where / "kafka.out", where / "logs" / "server.log"], READY_TIMEOUT_S)
        info = dataclasses.replace(info, kafka_pid=pids[1], more_kafka_pids=tuple(
            pids[n] for n in sorted(pids) if n != 1))
        (info.state_dir / STATE_FILE).write_text(info.to_json())
        return info


def _recorded(state_dir: Path | None) -> StackInfo:
    info = read_state(resolve_dir(state_dir))
    if info is None:
        raise StackError(f"no stack recorded in {resolve_dir(state_dir)}")
    return info


def down(*, state_dir: Path | None = None, purge: bool = False) -> None:
    """Stop the stack recorded in state_dir and return once its processes are gone; with
    purge, also delete its data, logs and config."""
    state_dir = resolve_dir(state_dir)
    if not state_dir.exists():
        return
    with locked(state_dir / ".lock"):
        info = read_state(state_dir)
        if info is not None:
            _stop_all(info)
        if purge:
            # Only delete what a stack owns: a mistyped --state-dir must not wipe a home folder.
            foreign = {p.name for p in state_dir.iterdir()} - OWNED - {STOPPING}
            if foreign:
                raise StackError(
                    f"not purging {state_dir}: it holds more than a stack "
                    f"({', '.join(sorted(foreign))})"
                )
            shutil.rmtree(state_dir)
