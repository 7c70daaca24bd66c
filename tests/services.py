"""Where the test suite (and the benchmarks) find Kafka and Redis.

Test infrastructure, not library code: the environment, testcontainers when a Docker engine
answers, else the library's local stack (``trackflow.streams.stack``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from trackflow.streams.stack import down, ensure_running

#: Where a Docker engine usually listens when DOCKER_HOST is unset (Linux, Docker Desktop).
DOCKER_SOCKETS = (Path("/var/run/docker.sock"), Path.home() / ".docker" / "run" / "docker.sock")

log = logging.getLogger("trackflow.tests.services")


@dataclass(frozen=True)
class Services:
    """Where the test suite finds Kafka and Redis, and how to stop them when it started them."""

    bootstrap_servers: str
    redis_url: str
    source: str  #: "env", "testcontainers" or "local"
    stop: Callable[[], None] = field(default=lambda: None, repr=False, compare=False)
    """Stops what resolve_services started; does nothing otherwise."""


def docker_available(timeout_s: float = 2.0) -> bool:
    """True when a Docker engine answers a ping; cheap and silent when there is none."""
    if not os.environ.get("DOCKER_HOST") and not any(p.exists() for p in DOCKER_SOCKETS):
        return False
    try:
        import docker
        from docker.errors import DockerException
    except ImportError:
        return False
    try:
        client = docker.from_env(timeout=int(max(1, timeout_s)))
        try:
            return bool(client.ping())
        finally:
            client.close()
    except (DockerException, OSError) as exc:  # requests' errors are OSErrors
        log.debug("services.docker.unavailable error=%r", exc)
        return False


def _containers() -> Services:
    from testcontainers.community.kafka import KafkaContainer
    from testcontainers.community.redis import RedisContainer

    kafka = KafkaContainer().with_kraft().with_env("KAFKA_AUTO_CREATE_TOPICS_ENABLE", "false")
    redis_container = RedisContainer("redis:7")
    kafka.start()
    try:
        redis_container.start()
    except BaseException:
        kafka.stop()
        raise

    def stop() -> None:
        try:
            kafka.stop()
        finally:
            redis_container.stop()

    host, port = redis_container.get_container_host_ip(), redis_container.get_exposed_port(6379)
    return Services(
        kafka.get_bootstrap_server(), f"redis://{host}:{port}/0", "testcontainers", stop
    )


def resolve_services(*, state_dir: Path | None = None) -> tuple[Services, bool]:
    """Kafka and Redis for the test suite, and whether this call started them.

    In this order: ``KAFKA_BOOTSTRAP_SERVERS`` / ``REDIS_URL`` when both are set (one set alone
    overrides its half of what follows); else testcontainers when a Docker engine answers a ping;
    else the local stack (``ensure_running()``, reused when already running). When the flag is
    True the caller owns the services and should call ``services.stop()`` when done.
    """
    env_kafka = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    env_redis = os.environ.get("REDIS_URL")
    if env_kafka and env_redis:
        return Services(env_kafka, env_redis, "env"), False
    if docker_available():
        services, started = _containers(), True
    else:
        # A plaintext stack: the suite's own clients take their security from the environment,
        # which `eval "$(trackflow stack up --secure)"` sets (and then the env branch applies).
        info, started = ensure_running(state_dir=state_dir, secure=False)

        def stop() -> None:
            down(state_dir=info.state_dir)

        services = Services(info.bootstrap_servers, info.redis_url, "local")
        if started:
            services = Services(services.bootstrap_servers, services.redis_url, "local", stop)
    return Services(
        env_kafka or services.bootstrap_servers,
        env_redis or services.redis_url,
        services.source,
        services.stop,
    ), started
