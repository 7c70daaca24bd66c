"""The local stack: real Kafka (KRaft: one node, or a cluster with ``--brokers``) and Redis,
run without Docker, plaintext or secured (``--secure``).

``trackflow stack up`` fetches the Apache Kafka jars from Maven Central once, formats the KRaft
log directories, starts the brokers and ``redis-server`` as detached processes and prints the
environment variables that point every client at them. One state directory holds everything a
stack owns::

    stack.json                       ports, pids, URLs (and a secure stack's login; mode 0600)
    kafka/server.properties, log4j2.properties, kafka.pid, kafka.out, logs/, data/   (node 1)
    kafka-2/, kafka-3/, ...          the same for nodes 2, 3, ...
    tls/                             a secure stack's CA, certificates (brokers, Redis, a
                                     client for the mutual-TLS listener) and SASL login
    redis/redis.pid, redis.log, data/ (redis.conf with the ACL user when secure)

Modules: ``config`` (pure: records, ports, paths, rendering, parsing), ``prerequisites`` (Java,
Maven jars, redis-server), ``processes`` (spawn, readiness, stop), ``tls`` (the secure stack's
CA and login, made with openssl), ``lifecycle`` (up, status, down, stop and start one node) and
``cli`` (the click commands, imported only by ``trackflow stack``).
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
