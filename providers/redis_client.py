"""The Redis client the cache and the limiter connect with.

A pool that waits for a free connection (up to ``timeout_s``) instead of redis-py's default,
which raises ``MaxConnectionsError`` the moment more than 100 commands are in flight: a stalled
worker that resumed with a few hundred cache reads at once took that for a Redis outage and
stopped using the cache for its skip window. No client-side retries: one short timeout per
outage window, not ten per call.
"""

from __future__ import annotations

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff


def redis_client(redis_url: str, *, max_connections: int, timeout_s: float) -> aioredis.Redis:
    """A client for ``redis_url`` whose connecting, waiting for a pooled connection and each
    command are bounded by ``timeout_s``."""
    pool = aioredis.BlockingConnectionPool.from_url(
        redis_url, max_connections=max_connections, timeout=timeout_s,
        socket_connect_timeout=timeout_s, socket_timeout=timeout_s)
    return aioredis.Redis(connection_pool=pool, retry=Retry(NoBackoff(), 0))
