"""A real Prometheus with our rules sees the breaker-open alert fire in an outage and resolve."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.harness import TopicNames, avro_records, catalog_records, free_port, produce
from tests.integration.test_metrics_wiring import SEED, outage, start_pipeline

pytestmark = [pytest.mark.integration, pytest.mark.slow]

RULES = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "rules"
ALERT = "TrackflowBreakerOpen"


@contextlib.contextmanager
def prometheus(tmp_path: Path, targets: dict[str, int]) -> Iterator[str]:
    """Debian's prometheus on loopback, scraping ``targets`` (job -> port) every second."""
    exe = shutil.which("prometheus")
    if exe is None:
        pytest.fail("prometheus not found: run deploy/local/prerequisites.py")
    jobs = "\n".join(
        f"  - job_name: {job}\n    static_configs:\n      - targets: ['127.0.0.1:{port}']"
        for job, port in targets.items())
    config = tmp_path / "prometheus.yml"
    config.write_text("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
                      f"rule_files:\n  - {RULES / 'trackflow.rules.yml'}\n"
                      f"scrape_configs:\n{jobs}\n")
    port = free_port()
    log = (tmp_path / "prometheus.log").open("ab")
    proc = subprocess.Popen(
        [exe, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}"], stdout=log, stderr=subprocess.STDOUT)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


async def api(client: httpx.AsyncClient, base: str, path: str, **params: str) -> Any:
    resp = await client.get(f"{base}{path}", params=params)
    resp.raise_for_status()
    return resp.json()["data"]


async def breaker_alerts(client: httpx.AsyncClient, base: str) -> list[dict[str, Any]]:
    data = await api(client, base, "/api/v1/alerts")
    return [a for a in data["alerts"] if a["labels"]["alertname"] == ALERT
            and a["labels"].get("provider") == "spotify"]


async def poll(what: str, check: Any, within_s: float) -> Any:
    deadline = time.monotonic() + within_s
    last = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(0.5)
    raise AssertionError(f"expected {what} within {within_s} s; last answer: {last}")


@contextlib.asynccontextmanager
async def steady_traffic(bootstrap: str, topic: str, per_tick: int = 4) -> AsyncIterator[None]:
    """Produce fresh catalog tracks every half second so providers keep being called."""
    records = catalog_records(1000, SEED, count=900)

    async def run() -> None:
        for i in range(0, len(records), per_tick):
            await produce(bootstrap, topic, avro_records(records[i:i + per_tick]))
            await asyncio.sleep(0.5)

    task = asyncio.create_task(run())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_breaker_open_alert_fires_in_an_outage_and_resolves_after(
        tmp_path: Path, bootstrap: str, topic_names: TopicNames, worker_factory: Any,
        sim_factory: Any) -> None:
    p = await start_pipeline(tmp_path, topic_names, worker_factory, sim_factory)
    try:
        with prometheus(tmp_path, p.ports) as base:
            async with httpx.AsyncClient(timeout=5) as client:
                await poll("Prometheus ready", lambda: _ready(client, base), 20)
                groups = (await api(client, base, "/api/v1/rules"))["groups"]
                names = {r["name"] for g in groups for r in g["rules"]}
                assert ALERT in names and len(names) >= 17, f"rules loaded: {sorted(names)}"
                async with steady_traffic(bootstrap, topic_names.raw):
                    await poll("both targets up", lambda: _targets_up(client, base, 2), 20)
                    assert not await breaker_alerts(client, base), "no alert before the outage"
                    # The breaker opens within a second of traffic and stays open 2 s, then
                    # 4 s after a failed probe: Prometheus, scraping and evaluating every
                    # second, sees it open for most of the 6 s, and it closes on the first
                    # probe after them.
                    await outage(p.sim_url, "spotify", 6)
                    firing = await poll(
                        f"{ALERT} firing for spotify",
                        lambda: _with_state(client, base, "firing"), 30)
                    print(f"firing: {firing}")
                    await poll(f"{ALERT} resolved and the breaker closed",
                               lambda: _resolved(client, base), 45)
    finally:
        p.reprocess.stop()


async def _ready(client: httpx.AsyncClient, base: str) -> bool:
    try:
        return (await client.get(f"{base}/-/ready")).status_code == 200
    except httpx.HTTPError:
        return False


async def _targets_up(client: httpx.AsyncClient, base: str, n: int) -> bool:
    result = (await api(client, base, "/api/v1/query", query="sum(up)"))["result"]
    return bool(result) and float(result[0]["value"][1]) >= n


async def _with_state(client: httpx.AsyncClient, base: str, state: str) -> list[dict[str, Any]]:
    return [a for a in await breaker_alerts(client, base) if a["state"] == state]


async def _resolved(client: httpx.AsyncClient, base: str) -> bool:
    if await breaker_alerts(client, base):
        return False
    q = 'max(trackflow_breaker_state{provider="spotify"})'
    result = (await api(client, base, "/api/v1/query", query=q))["result"]
    return bool(result) and float(result[0]["value"][1]) == 0
