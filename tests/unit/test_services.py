"""The test suite's service lookup: environment first, Docker only when an engine is there."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import services as services_module


def test_docker_is_unavailable_without_a_socket_or_docker_host(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    monkeypatch.setattr(services_module, "DOCKER_SOCKETS", (tmp_path / "docker.sock",))

    assert services_module.docker_available() is False


def test_services_come_from_the_environment_when_both_are_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "broker:9092")
    monkeypatch.setenv("REDIS_URL", "redis://cache:6379/0")

    services, started = services_module.resolve_services()

    assert (services.bootstrap_servers, services.redis_url, services.source) == (
        "broker:9092",
        "redis://cache:6379/0",
        "env",
    )
    assert started is False
