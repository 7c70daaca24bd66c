"""Shared fixtures. Integration fixtures start real services only when an integration test asks."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

#: Where a failed test's logs are kept (worker, simulator and stack logs from its tmp_path):
#: pytest keeps only its last three temporary folders, and a failure is read after the run.
KEPT_LOGS = Path(__file__).resolve().parents[1] / "test-logs"


TESTS = Path(__file__).resolve().parent


# The suite chooses the wire format per test (tests/integration/test_schema_registry.py runs a
# registry of its own): a registry exported by `eval "$(trackflow stack up)"` in the shell would
# switch every worker and client to the Confluent format under tests that read single-object.
for _variable in ("SCHEMA_REGISTRY_URL", "TRACKFLOW_KAFKA__SCHEMA_REGISTRY__URL"):
    os.environ.pop(_variable, None)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark by folder, so that ``-m`` selects what a folder's tests need: every test under
    integration/ and chaos/ is ``integration`` (it needs the real stack), those under chaos/
    are ``chaos`` too; ``pytest -m "not integration"`` runs what needs nothing running."""
    for item in items:
        folders = set(Path(item.path).resolve().parents)
        if TESTS / "integration" in folders or TESTS / "chaos" in folders:
            item.add_marker(pytest.mark.integration)
        if TESTS / "chaos" in folders:
            item.add_marker(pytest.mark.chaos)


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


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]
                              ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Copy the logs a failed test left in its tmp_path to test-logs/, and say where."""
    report = yield
    tmp = getattr(item, "funcargs", {}).get("tmp_path")
    if report.failed and isinstance(tmp, Path) and tmp.is_dir():
        dest = KEPT_LOGS / re.sub(r"[^\w.-]+", "_", item.nodeid)[-120:]
        shutil.rmtree(dest, ignore_errors=True)
        for log in tmp.rglob("*.log*"):
            if log.is_file():
                target = dest / log.relative_to(tmp)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(log, target)
        report.sections.append(("kept logs", f"the logs of this test are in {dest}"))
    return report
