"""A full cache Redis does not degrade rate limiting, when the limiter has a Redis of its own.

The cache's Redis here is a second ``redis-server`` with a 4 MB ``maxmemory`` and
``noeviction`` (the policy an external Redis often has), filled until it refuses writes before
the worker starts. The limiter's keys go to the suite's Redis (``limiter.redis_url``). The
worker enriches a burst: every record is published, no provider sees a call over its limit, and
the limiter never fell back to per-partition pacing, while the cache counted the writes Redis
refused and the memory gauges show the cache's Redis full.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis.asyncio as aioredis
from redis.exceptions import OutOfMemoryError

from tests.integration.harness import (
    TopicNames,
    avro_records,
    catalog_records,
    collect,
    free_port,
    http_json,
    metric_value,
    produce,
    scrape,
    sim_limits_toml,
    snapshot,
    worker_rates_env,
)
from trackflow.streams.stack.prerequisites import find_redis_server

pytestmark = pytest.mark.integration

TRACKS = 60
LIMITS = {"musicbrainz": (100, 1.0), "spotify": (3000, 30.0), "deezer": (500, 5.0),
          "lastfm": (200, 1.0), "discogs": (600, 10.0)}


@pytest.fixture
def full_redis(tmp_path: Path) -> Iterator[str]:
    """A redis-server of its own, 4 MB at most and refusing writes once full; yields its URL."""
    port = free_port()
    log = (tmp_path / "cache-redis.log").open("w")
    proc = subprocess.Popen(
        [find_redis_server(), "--bind", "127.0.0.1", "--port", str(port), "--save", "",
         "--appendonly", "no", "--maxmemory", "4mb", "--maxmemory-policy", "noeviction",
         "--dir", str(tmp_path)], stdout=log, stderr=subprocess.STDOUT)
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()


async def fill(url: str) -> int:
    """Write 64 KB values until Redis refuses one (OOM); return how many it took."""
    client = aioredis.Redis.from_url(url)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                await client.ping()
                break
            except (aioredis.ConnectionError, OSError):
                assert time.monotonic() < deadline, f"the test's Redis at {url} did not start"
                await asyncio.sleep(0.1)
        for n in range(10_000):
            try:
                await client.set(f"filler:{n}", b"x" * 65_536)
            except OutOfMemoryError:
                return n
        raise AssertionError("a 4 MB Redis took 640 MB")
    finally:
        await client.aclose()


async def test_a_full_cache_redis_leaves_rate_limiting_whole(
        bootstrap: str, services: Any, topic_names: TopicNames, worker_factory: Any,
        sim_factory: Any, full_redis: str) -> None:
    suite_redis = str(services.redis_url)
    if urlsplit(suite_redis).scheme != "redis":
        pytest.skip("the cache's Redis here is plain TCP; the suite's Redis is not")
    filled = await fill(full_redis)
    sim = sim_factory(sim_limits_toml(LIMITS), size=TRACKS + 40)
    env = {**sim, **worker_rates_env(LIMITS), "REDIS_URL": full_redis,
           "TRACKFLOW_REDIS_URL": full_redis, "TRACKFLOW_LIMITER__REDIS_URL": suite_redis}
    worker = worker_factory(partitions=4, extra_env=env)
    await worker.wait_ready()
    records = catalog_records(TRACKS + 40, count=TRACKS)
    await produce(bootstrap, topic_names.raw, avro_records(records))
    enriched = await collect(bootstrap, topic_names.enriched, until=TRACKS, timeout=180)
    dlq = await snapshot(bootstrap, topic_names.dlq)
    report = await http_json(sim["TRACKFLOW_SIMULATOR_URL"] + "/_sim/report")
    metrics = await scrape(worker.web_port)

    cache_errors = metric_value(metrics, "trackflow_cache_errors_total") or 0
    limiter_errors = metric_value(metrics, "trackflow_ratelimit_limiter_errors_total") or 0
    used = metric_value(metrics, "trackflow_redis_memory_used_bytes", role="cache") or 0
    limit = metric_value(metrics, "trackflow_redis_memory_max_bytes", role="cache") or 0
    calls = sum(stats["requests"] for stats in report.values())
    print(f"filler values before OOM {filled}; published {len(enriched)}, dead letters "
          f"{len(dlq)}; provider calls {calls}; cache errors {cache_errors:.0f}, limiter errors "
          f"{limiter_errors:.0f}; cache Redis used {used / 2**20:.1f} of {limit / 2**20:.1f} MB")
    assert len({m.key for m in enriched}) == TRACKS and not dlq
    assert cache_errors > 0, "the cache's Redis must have refused the cache's writes"
    assert limit == 4 * 2**20 and used >= 0.9 * limit, "the gauges must show it full"
    assert limiter_errors == 0, "the limiter must not notice the full cache Redis"
    assert calls > 0
    for name, stats in report.items():
        assert stats["violations"] == 0, f"{name} limit exceeded: {stats}"
