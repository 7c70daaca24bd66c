"""Two-level read-through cache for provider answers: an in-process LRU in front of Redis.

``get_or_fetch(spec, fetch)`` answers from the LRU, then Redis, then calls ``fetch`` and stores
its answer in both. Identical lookups in flight share one fetch (single flight). "Not found"
answers (``None`` or an empty list) are cached too, for a shorter TTL. Values are JSON; each
caller gets its own decoded copy, so mutating an answer cannot corrupt the cache.

Keys: ``<namespace>:v1:<provider>:<kind>:<sha1 of the normalised key>``. Bump ``v1`` when the
shape of cached answers changes.

Redis is an optimisation, never a dependency: on any Redis error the lookup carries on with
``fetch``, the error is counted in ``trackflow_cache_errors_total`` and logged once per outage,
and Redis is skipped for ``outage_skip_s`` so a dead server costs one short timeout per few
seconds, not one per call. redis-py reconnects by itself on the next command after that.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import logging
import time
import unicodedata
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from providers.base import JSON, CallSpec
from streams.metrics import CACHE_ERRORS, CACHE_OPERATION_DURATION, CACHE_REQUESTS

log = logging.getLogger(__name__)

_DAY: Final = 86_400.0
_MISSING: Final = object()


@dataclass(frozen=True, slots=True)
class CacheTtls:
    """How long answers are kept, in seconds."""

    by_kind: Mapping[str, float] = field(
        default_factory=lambda: {
            "isrc": 30 * _DAY,
            "id": 30 * _DAY,
            "search": 1 * _DAY,
            "tags": 7 * _DAY,
            "features": 7 * _DAY,
        }
    )
    """TTL of a found answer per lookup kind."""
    default: float = 1 * _DAY
    """TTL of kinds not listed in ``by_kind``."""
    not_found: float = 3600.0
    """TTL of a "not found" answer (``None`` or empty), never longer than the kind's TTL."""

    def ttl_for(self, kind: str, value: JSON) -> float:
        ttl = self.by_kind.get(kind, self.default)
        if value is None or value == []:
            return min(ttl, self.not_found)
        return ttl


class LruCache:
    """A bounded mapping from key to JSON text with a per-entry expiry; time passed in."""

    def __init__(self, max_entries: int) -> None:
        if max_entries < 0:
            raise ValueError(f"max_entries must not be negative, got {max_entries}")
        self.max_entries = max_entries
        self._entries: OrderedDict[str, tuple[float, str]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str, now: float) -> str | None:
        """The text stored under ``key``, or ``None`` when absent or expired at ``now``."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires_at, text = entry
        if now >= expires_at:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return text

    def set(self, key: str, text: str, expires_at: float) -> None:
        """Store ``text`` until ``expires_at``; evicts the least recently used beyond the bound."""
        if self.max_entries == 0:
            return
        self._entries[key] = (expires_at, text)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def clear(self) -> None:
        self._entries.clear()


def normalise_key(key: str) -> str:
    """The form of a spec key that is hashed: NFC, trimmed; case kept (ids are case-sensitive)."""
    return unicodedata.normalize("NFC", key).strip()


class ProviderCache:
    """Read-through cache of provider answers: in-process LRU, then Redis, then ``fetch``."""

    def __init__(
        self,
        redis_url: str | None,
        *,
        namespace: str = "trackflow",
        lru_size: int = 10_000,
        lru_ttl_s: float = 3600.0,
        ttls: CacheTtls | None = None,
        timeout_s: float = 0.25,
        outage_skip_s: float = 5.0,
        client: aioredis.Redis | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``redis_url=None`` (and no ``client``) gives an LRU-only cache.

        ``timeout_s`` bounds connecting and each Redis command; ``lru_ttl_s`` bounds how long a
        process keeps its own copy (so a purge in Redis reaches every worker within it).
        """
        self.namespace = namespace
        self.ttls = ttls or CacheTtls()
        self.lru = LruCache(lru_size)
        self.lru_ttl_s = lru_ttl_s
        self.outage_skip_s = outage_skip_s
        self._clock = clock
        if client is None and redis_url is not None:
            # No client-side retries: one short timeout per outage window, not ten per call.
            client = aioredis.Redis.from_url(
                redis_url,
                socket_connect_timeout=timeout_s,
                socket_timeout=timeout_s,
                retry=Retry(NoBackoff(), 0),
            )
        self._redis = client
        self._skip_until = 0.0
        self._outage = False
        self._inflight: dict[str, asyncio.Task[str]] = {}

    def key_for(self, spec: CallSpec) -> str:
        """The Redis key of ``spec``'s answer."""
        digest = hashlib.sha1(normalise_key(spec.key).encode("utf-8")).hexdigest()
        return f"{self.namespace}:v1:{spec.provider}:{spec.kind}:{digest}"

    @property
    def redis_available(self) -> bool:
        """False while Redis is skipped after an error."""
        return self._redis is not None and self._clock() >= self._skip_until

    async def get_or_fetch(self, spec: CallSpec, fetch: Callable[[], Awaitable[JSON]]) -> JSON:
        """The cached answer for ``spec``, or ``fetch()``'s answer, cached on the way out.

        Errors from ``fetch`` propagate (to every caller sharing the flight) and are not cached.
        """
        if not spec.cacheable:
            return await fetch()
        key = self.key_for(spec)
        text = self.lru.get(key, self._clock())
        if text is not None:
            CACHE_REQUESTS.labels(spec.provider, "lru", "hit").inc()
            return json.loads(text)
        CACHE_REQUESTS.labels(spec.provider, "lru", "miss").inc()
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.ensure_future(self._load(spec, key, fetch))
            self._inflight[key] = task
            task.add_done_callback(functools.partial(self._flight_done, key))
        else:
            CACHE_REQUESTS.labels(spec.provider, "inflight", "hit").inc()
        # shield: a cancelled caller must not cancel the fetch others are waiting for.
        return json.loads(await asyncio.shield(task))

    async def get_many(self, specs: Iterable[CallSpec]) -> dict[str, JSON]:
        """Cached answers of ``specs`` by :meth:`key_for`, read with one MGET; misses are absent.

        Meant for prefetching a batch: what Redis holds is also put in the LRU, so the
        ``get_or_fetch`` calls that follow do not touch Redis.
        """
        now = self._clock()
        found: dict[str, JSON] = {}
        wanted: dict[str, CallSpec] = {}
        for spec in specs:
            if not spec.cacheable:
                continue
            key = self.key_for(spec)
            if key in found or key in wanted:
                continue
            text = self.lru.get(key, now)
            if text is None:
                wanted[key] = spec
            else:
                CACHE_REQUESTS.labels(spec.provider, "lru", "hit").inc()
                found[key] = json.loads(text)
        if not wanted:
            return found
        values = await self._redis_call("mget", lambda r: r.mget(list(wanted)))
        if values is _MISSING:
            for spec in wanted.values():
                CACHE_REQUESTS.labels(spec.provider, "redis", "skipped").inc()
            return found
        assert isinstance(values, list)
        for (key, spec), raw in zip(wanted.items(), values, strict=True):
            if raw is None:
                CACHE_REQUESTS.labels(spec.provider, "redis", "miss").inc()
                continue
            value = self._from_redis(key, spec, raw)
            if value is not _MISSING:
                found[key] = value
        return found

    async def aclose(self) -> None:
        """Close the Redis connections; in-flight fetches are left to finish."""
        if self._redis is not None:
            await self._redis.aclose()

    # --- internals ---

    async def _load(self, spec: CallSpec, key: str, fetch: Callable[[], Awaitable[JSON]]) -> str:
        raw = await self._redis_call("get", lambda r: r.get(key))
        if raw is _MISSING:
            CACHE_REQUESTS.labels(spec.provider, "redis", "skipped").inc()
        elif raw is not None:
            if self._from_redis(key, spec, raw) is not _MISSING:
                return _decode(raw)
        else:
            CACHE_REQUESTS.labels(spec.provider, "redis", "miss").inc()
        value = await fetch()
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
        ttl = self.ttls.ttl_for(spec.kind, value)
        self.lru.set(key, text, self._clock() + min(ttl, self.lru_ttl_s))
        await self._redis_call("set", lambda r: r.set(key, text, ex=max(1, round(ttl))))
        return text

    def _from_redis(self, key: str, spec: CallSpec, raw: bytes | str) -> Any:
        """Decode a value read from Redis and keep it in the LRU; ``_MISSING`` if unreadable."""
        text = _decode(raw)
        try:
            value = json.loads(text)
        except ValueError:
            # Written by something else, or truncated: a miss, refetched and overwritten.
            CACHE_ERRORS.labels("decode").inc()
            CACHE_REQUESTS.labels(spec.provider, "redis", "miss").inc()
            log.warning("cache undecodable value provider=%s kind=%s", spec.provider, spec.kind)
            return _MISSING
        CACHE_REQUESTS.labels(spec.provider, "redis", "hit").inc()
        ttl = self.ttls.ttl_for(spec.kind, value)
        self.lru.set(key, text, self._clock() + min(ttl, self.lru_ttl_s))
        return value

    def _flight_done(self, key: str, task: asyncio.Task[str]) -> None:
        if self._inflight.get(key) is task:
            del self._inflight[key]
        if not task.cancelled():
            task.exception()  # retrieved: every waiter may have gone away

    async def _redis_call(
        self, operation: str, call: Callable[[aioredis.Redis], Awaitable[Any]]
    ) -> Any:
        """Run one Redis command; ``_MISSING`` when Redis is skipped or the command failed."""
        if self._redis is None or self._clock() < self._skip_until:
            return _MISSING
        started = time.perf_counter()
        try:
            result = await call(self._redis)
        except (aioredis.RedisError, OSError) as exc:
            CACHE_ERRORS.labels(operation).inc()
            self._skip_until = self._clock() + self.outage_skip_s
            if not self._outage:
                self._outage = True
                # Never log the URL: it may carry a password.
                log.warning(
                    "cache redis unavailable operation=%s error_class=%s skip_s=%s",
                    operation,
                    type(exc).__name__,
                    self.outage_skip_s,
                )
            return _MISSING
        finally:
            CACHE_OPERATION_DURATION.labels(operation).observe(time.perf_counter() - started)
        if self._outage:
            self._outage = False
            log.info("cache redis available again operation=%s", operation)
        return result


def _decode(raw: bytes | str) -> str:
    return raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw
