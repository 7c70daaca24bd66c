"""The Redis memory gauges: how full each role's Redis is and whether it evicts."""

from __future__ import annotations

from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError

from trackflow.providers import metrics
from trackflow.providers.redis_client import RedisMemory


class FakeRedis:
    def __init__(self, info: dict[str, Any] | None) -> None:
        self._info = info
        self.asked = 0

    async def info(self, section: str) -> dict[str, Any]:
        self.asked += 1
        assert section == "memory"
        if self._info is None:
            raise RedisConnectionError("gone")
        return self._info


def value(gauge: Any, role: str) -> float:
    return float(gauge.labels(role=role)._value.get())


async def test_each_roles_memory_and_policy_are_exported() -> None:
    cache = FakeRedis({"used_memory": 510_000_000, "maxmemory": 536_870_912,
                       "maxmemory_policy": "allkeys-lru"})
    limiter = FakeRedis({"used_memory": 1_000_000, "maxmemory": 67_108_864,
                         "maxmemory_policy": "noeviction"})
    exporter = RedisMemory({"cache": cache, "limiter": limiter})  # type: ignore[dict-item]
    await exporter.tick()
    assert value(metrics.REDIS_MEMORY_USED, "cache") == 510_000_000
    assert value(metrics.REDIS_MEMORY_MAX, "cache") == 536_870_912
    assert value(metrics.REDIS_EVICTING, "cache") == 1
    assert value(metrics.REDIS_EVICTING, "limiter") == 0


async def test_an_unreachable_redis_leaves_the_last_figures_and_logs_once(caplog: Any) -> None:
    gone = FakeRedis(None)
    exporter = RedisMemory({"limiter": gone})  # type: ignore[dict-item]
    await exporter.tick()
    await exporter.tick()
    assert gone.asked == 2
    assert caplog.text.count("event=redis_memory_unread") == 1
