"""Liveness and readiness of a real worker: ready only once it has its assignment."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from typing import Any

import httpx
import pytest

from tests.integration.harness import TopicNames

pytestmark = pytest.mark.integration

# A long session timeout: while the first worker is frozen, the group cannot finish a rebalance
# until the coordinator gives up on it, so the second worker stays unready for that long.
ENV = {"TRACKFLOW_WATERFALL__ORDER": "[]", "TRACKFLOW_WORKER__AGENTS": '["enrich"]',
       "TRACKFLOW_KAFKA__SESSION_TIMEOUT_S": "60"}


async def _get(client: httpx.AsyncClient, port: int, path: str) -> httpx.Response | None:
    try:
        return await client.get(f"http://127.0.0.1:{port}{path}")
    except httpx.TransportError:
        return None  # the web server is not up yet


async def _wait_for(client: httpx.AsyncClient, port: int, path: str, status: int,
                    timeout: float) -> httpx.Response:
    deadline = time.monotonic() + timeout
    last: httpx.Response | None = None
    while time.monotonic() < deadline:
        last = await _get(client, port, path)
        if last is not None and last.status_code == status:
            return last
        await asyncio.sleep(0.2)
    raise AssertionError(f"expected {path} on :{port} to answer {status} within {timeout} s, "
                         f"last answer: {last and (last.status_code, last.text)}")


async def test_readiness_waits_for_the_assignment_and_liveness_does_not(
        topic_names: TopicNames, worker_factory: Any) -> None:
    first = worker_factory(partitions=2, extra_env=ENV)
    async with httpx.AsyncClient(timeout=5) as client:
        ready = await _wait_for(client, first.web_port, "/health/ready", 200, 90)
        facts = ready.json()
        assert facts["producer_connected"] and facts["assignment_received"]
        assert facts["partitions_assigned"] > 0

        # Freeze the first worker: the second one's join cannot complete while it is frozen.
        os.killpg(first.proc.pid, signal.SIGSTOP)
        try:
            second = worker_factory(partitions=2, extra_env=ENV)
            live = await _wait_for(client, second.web_port, "/health/live", 200, 90)
            assert live.json()["status"] == "alive"
            await asyncio.sleep(5)  # well past a normal join; the rebalance is still blocked
            unready = await _get(client, second.web_port, "/health/ready")
            assert unready is not None and unready.status_code == 503, (
                f"expected 503 while the rebalance cannot complete, got "
                f"{unready and (unready.status_code, unready.text)}")
            body = unready.json()
            assert body["status"] == "not_ready" and not body["assignment_received"]
            assert body["producer_connected"], "expected the producer to connect meanwhile"
        finally:
            os.killpg(first.proc.pid, signal.SIGCONT)
        ready = await _wait_for(client, second.web_port, "/health/ready", 200, 90)
        assert ready.json()["assignment_received"]

        second.stop()
        assert await _get(client, second.web_port, "/health/live") is None
