"""Factories for integration tests: isolated topics, worker processes, the simulator."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from tests.integration.harness import TopicNames, WorkerProcess, delete_topics


@pytest.fixture(autouse=True)
def _integration_services(services: object) -> None:
    """Every integration test needs the real stack (KAFKA_BOOTSTRAP_SERVERS/REDIS_URL get set)."""


@pytest.fixture
def bootstrap() -> str:
    return os.environ["KAFKA_BOOTSTRAP_SERVERS"]


@pytest.fixture
async def topic_names(bootstrap: str) -> AsyncIterator[TopicNames]:
    """Topic names and a consumer group no other test uses; the topics are deleted after the
    test (its workers are stopped first: they are torn down before this fixture)."""
    names = TopicNames.unique(f"it{uuid.uuid4().hex[:10]}")
    yield names
    await delete_topics(bootstrap, names.prefix)


@pytest.fixture
def worker_factory(tmp_path: Path, topic_names: TopicNames
                   ) -> Iterator[Callable[..., WorkerProcess]]:
    """Start ``trackflow worker`` processes against this test's topics; all stopped at the end."""
    started: list[WorkerProcess] = []

    def start(*, partitions: int = 4, extra_env: dict[str, str] | None = None,
              name: str = "w") -> WorkerProcess:
        proc = WorkerProcess.start(tmp_path / f"{name}{len(started)}", topic_names,
                                   partitions=partitions, extra_env=extra_env or {})
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()


@pytest.fixture
async def sim_process(tmp_path: Path) -> AsyncIterator[dict[str, str]]:
    """``trackflow simulate`` in its own process; yields the environment it printed."""
    from tests.integration.harness import SimulatorProcess

    sim = SimulatorProcess.start(tmp_path / "sim.log")
    try:
        yield sim.env
    finally:
        sim.stop()


@pytest.fixture
def sim_factory(tmp_path: Path) -> Iterator[Callable[..., dict[str, str]]]:
    """Start ``trackflow simulate`` with a behaviour TOML and catalog size; yields its env."""
    from tests.integration.harness import SimulatorProcess

    started: list[SimulatorProcess] = []

    def start(config_toml: str = "", *, size: int = 1000, seed: int = 0) -> dict[str, str]:
        cfg = tmp_path / f"sim{len(started)}.toml"
        cfg.write_text(config_toml)
        sim = SimulatorProcess.start(tmp_path / f"sim{len(started)}.log", "--config", str(cfg),
                                     "--size", str(size), "--seed", str(seed))
        started.append(sim)
        return sim.env

    yield start
    for sim in started:
        sim.stop()
