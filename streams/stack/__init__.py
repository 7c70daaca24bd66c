"""The local stack: a real single-node Kafka (KRaft) and Redis, run without Docker.

``trackflow stack up`` fetches the Apache Kafka jars from Maven Central once, formats a KRaft log
directory, starts the broker and ``redis-server`` as detached processes and prints the environment
variables that point at them. One state directory holds everything a stack owns::

    stack.json                       ports, pids and URLs of the running stack
    kafka/server.properties, log4j2.properties, kafka.pid, kafka.out, logs/, data/
    redis/redis.pid, redis.log, data/

Modules: ``config`` (pure: records, ports, paths, rendering, parsing), ``prerequisites`` (Java,
Maven jars, redis-server), ``processes`` (spawn, readiness, stop), ``lifecycle`` (up, status,
down) and ``cli`` (the click commands, imported only by ``trackflow stack``).
"""

from trackflow.streams.stack.config import (
    Ports,
    StackError,
    StackInfo,
    StackStatus,
    default_state_dir,
)
from trackflow.streams.stack.lifecycle import (
    down,
    ensure_running,
    start_node,
    status,
    stop_node,
    up,
)

__all__ = [
    "Ports",
    "StackError",
    "StackInfo",
    "StackStatus",
    "default_state_dir",
    "down",
    "ensure_running",
    "start_node",
    "status",
    "stop_node",
    "up",
]
