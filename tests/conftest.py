"""Shared fixtures. Integration fixtures start real services only when an integration test asks."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest


@pytest.fixture(scope="session")
def services() -> Iterator[object]:
    """Kafka and Redis: from the environment, testcontainers, or the local stack (in that order)."""
    from tests.services import resolve_services

    svc, started = resolve_services()
    os.environ.setdefault("KAFKA_BOOTSTRAP_SERVERS", svc.bootstrap_servers)
    os.environ.setdefault("REDIS_URL", svc.redis_url)
    try:
        yield svc
    finally:
        if started:
            svc.stop()
