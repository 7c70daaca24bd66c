"""The local stack's lifecycle: up (or reuse), status and down, one stack per state directory."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from trackflow.streams.stack.config import (
    LOOPBACK,
    OWNED,
    READY_TIMEOUT_S,
    STATE_FILE,
    STOP_TIMEOUT_S,
    StackError,
    StackInfo,
    StackStatus,
    choose_ports,
    kafka_home,
    read_state,
    resolve_dir,
)
from trackflow.streams.stack.prerequisites import ensure_jars, find_java, find_redis_server
from trackflow.streams.stack.processes import (
    kafka_answers,
    kafka_marker,
    locked,
    pid_alive,
    redis_answers,
    redis_marker,
    start_kafka,
    start_redis,
    stop_process,
    wait_ready,
)

log = logging.getLogger("trackflow.stack")


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
    state_dir = resolve_dir(state_dir)
    with locked(state_dir / ".lock"):
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
            kafka_pid = start_kafka(state_dir, ports, java, libs)
            redis_pid = start_redis(state_dir, ports.redis, redis_server)
            urls = f"{LOOPBACK}:{ports.kafka}", f"redis://{LOOPBACK}:{ports.redis}/0"
            info = StackInfo(*urls, state_dir, ports, kafka_pid, redis_pid)
            wait_ready(
                "Redis",
                lambda: redis_answers(info.redis_url),
                redis_pid,
                redis_marker(ports.redis),
                [state_dir / "redis" / "redis.log"],
                10.0,
            )
            wait_ready(
                "Kafka",
                lambda: kafka_answers(info.bootstrap_servers),
                kafka_pid,
                kafka_marker(state_dir),
                [state_dir / "kafka" / "kafka.out", state_dir / "kafka" / "logs" / "server.log"],
                READY_TIMEOUT_S,
            )
        except BaseException:
            # A failed start leaves nothing running behind (Ctrl-C included). No command-line
            # check here: we spawned these pids a moment ago, and a marker that misjudges a
            # half-started process must not leak it.
            if kafka_pid:
                stop_process(kafka_pid, (), "kafka", 5.0)
            if redis_pid:
                stop_process(redis_pid, (), "redis", 5.0)
            raise
        (state_dir / STATE_FILE).write_text(info.to_json())
        return info, True


def status(state_dir: Path | None = None) -> StackStatus:
    """What the state dir records, and whether each process lives and answers."""
    info = read_state(resolve_dir(state_dir))
    if info is None:
        return StackStatus(None)
    kafka_alive = pid_alive(info.kafka_pid, kafka_marker(info.state_dir))
    redis_alive = pid_alive(info.redis_pid, redis_marker(info.ports.redis))
    return StackStatus(
        info,
        kafka_alive=kafka_alive,
        kafka_answering=kafka_alive and kafka_answers(info.bootstrap_servers),
        redis_alive=redis_alive,
        redis_answering=redis_alive and redis_answers(info.redis_url),
    )


def _stop_all(info: StackInfo) -> None:
    """Stop both services and forget the recorded stack."""
    stop_process(info.kafka_pid, kafka_marker(info.state_dir), "kafka", STOP_TIMEOUT_S)
    stop_process(info.redis_pid, redis_marker(info.ports.redis), "redis", 5.0)
    (info.state_dir / STATE_FILE).unlink(missing_ok=True)


def down(*, state_dir: Path | None = None, purge: bool = False) -> None:
    """Stop the stack recorded in state_dir; with purge, also delete its data, logs and config."""
    state_dir = resolve_dir(state_dir)
    if not state_dir.exists():
        return
    with locked(state_dir / ".lock"):
        info = read_state(state_dir)
        if info is not None:
            _stop_all(info)
        if purge:
            # Only delete what a stack owns: a mistyped --state-dir must not wipe a home folder.
            foreign = {p.name for p in state_dir.iterdir()} - OWNED
            if foreign:
                raise StackError(
                    f"not purging {state_dir}: it holds more than a stack "
                    f"({', '.join(sorted(foreign))})"
                )
            shutil.rmtree(state_dir)
