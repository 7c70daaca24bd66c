"""The Redis client the cache and the limiter connect with.

A pool that waits for a free connection (up to ``timeout_s``) instead of redis-py's default,
which raises ``MaxConnectionsError`` the moment more than 100 commands are in flight: a stalled
worker that resumed with a few hundred cache reads at once took that for a Redis outage and
stopped using the cache for its skip window. No client-side retries: one short timeout per
outage window, not ten per call.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from trackflow.providers import metrics

log = logging.getLogger("trackflow.providers.redis_client")


def redis_client(redis_url: str, *, max_connections: int, timeout_s: float) -> aioredis.Redis:
    """A client for ``redis_url`` whose connecting, waiting for a pooled connection and each
    command are bounded by ``timeout_s``."""
    pool = aioredis.BlockingConnectionPool.from_url(
        redis_url, max_connections=max_connections, timeout=timeout_s,
        socket_connect_timeout=timeout_s, socket_timeout=timeout_s)
    return aioredis.Redis(connection_pool=pool, retry=Retry(NoBackoff(), 0))


class RedisMemory:
    """Exports how full the Redis of each role is (``trackflow_redis_memory_*``).

    The cache's Redis should evict (``allkeys-lru`` with a ``maxmemory``): full, it drops old
    answers. The limiter's must not (``noeviction``): an evicted log of calls sent lets calls
    over a provider's limit, and when the two share one Redis a full cache also refuses the
    limiter's writes, and pacing falls back to a share of the rate per partition.
    """

    def __init__(self, clients: Mapping[str, aioredis.Redis]) -> None:
        self.clients = dict(clients)
        for role in self.clients:
            for gauge in (metrics.REDIS_MEMORY_USED, metrics.REDIS_MEMORY_MAX,
                          metrics.REDIS_EVICTING):
                gauge.labels(role=role)
        self._failed: set[str] = set()

    async def tick(self) -> None:
        for role, client in self.clients.items():
            try:
                info = await client.info("memory")
            except (RedisError, OSError) as exc:
                if role not in self._failed:  # once per outage: the cache logs its own errors
                    log.warning("event=redis_memory_unread role=%s error=%s", role,
                                type(exc).__name__)
                self._failed.add(role)
                continue
            self._failed.discard(role)
            metrics.REDIS_MEMORY_USED.labels(role=role).set(int(info.get("used_memory", 0)))
            metrics.REDIS_MEMORY_MAX.labels(role=role).set(int(info.get("maxmemory", 0)))
            policy = str(info.get("maxmemory_policy", "noeviction"))
            metrics.REDIS_EVICTING.labels(role=role).set(0 if policy == "noeviction" else 1)
