"""Two-level read-through cache for provider answers: an in-process LRU in front of Redis.

``get_or_fetch(spec, fetch)`` answers from the LRU, then Redis, then calls ``fetch`` and stores
its answer in both. Identical lookups in flight share one fetch (single flight). "Not found"
answers (``None`` or an empty list) are cached too, for a shorter TTL. Values are JSON; each
caller gets its own decoded copy, so mutating an answer cannot corrupt the cache.

Keys: ``<namespace>:v1:<provider>:<kind>:<sha1 of the normalised key>``. Bump ``v1`` when the
shape of cached answers changes.

Redis reads are batched, DataLoader-style: the keys that concurrent lookups miss in the LRU
during one event-loop iteration are read with one MGET (each key once), sent at the end of that
iteration or as soon as ``max_batch`` keys wait, whichever comes first.

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
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, Final

import redis.asyncio as aioredis
from redis.exceptions import OutOfMemoryError

from trackflow.providers.base import JSON, CallSpec
from trackflow.providers.context import record_or_none
from trackflow.providers.metrics import CACHE_ERRORS, CACHE_OPERATION_DURATION, CACHE_REQUESTS
from trackflow.providers.policy import CacheTtls
from trackflow.providers.redis_client import redis_client

log = logging.getLogger(__name__)

_MISSING: Final = object()


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

    def expires_at(self, key: str) -> float | None:
        """When ``key``'s entry expires, or None when absent."""
        entry = self._entries.get(key)
        return entry[0] if entry is not None else None

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
        max_batch: int = 100,
        max_connections: int = 64,
        client: aioredis.Redis | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``redis_url=None`` (and no ``client``) gives an LRU-only cache.

        ``timeout_s`` bounds connecting and each Redis command; ``lru_ttl_s`` bounds how long a
        process keeps its own copy (so a purge in Redis reaches every worker within it).
        ``max_batch`` bounds the keys of one MGET; ``max_connections`` the connections to Redis,
        beyond which a command waits (within ``timeout_s``) for one to be free.
        """
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        self.namespace = namespace
        self.ttls = ttls or CacheTtls()
        self.lru = LruCache(lru_size)
        self.lru_ttl_s = lru_ttl_s
        self.outage_skip_s = outage_skip_s
        self.max_batch = max_batch
        self._clock = clock
        if client is None and redis_url is not None:
            client = redis_client(redis_url, max_connections=max_connections,
                                  timeout_s=timeout_s)
        self._redis = client
        self._skip_until = 0.0
        self._outage = False
        self._full = False  # the last write was refused for want of memory
        self._inflight: dict[str, asyncio.Task[str]] = {}
        # Keys waiting for the next MGET, each with the future its readers wait on.
        self._batch: dict[str, asyncio.Future[Any]] = {}
        self._flush_handle: asyncio.Handle | None = None
        self._batch_tasks: set[asyncio.Task[None]] = set()  # strong refs until they finish

    def key_for(self, spec: CallSpec) -> str:
        """The Redis key of ``spec``'s answer."""
        digest = hashlib.sha1(normalise_key(spec.key).encode("utf-8")).hexdigest()
        return f"{self.namespace}:v1:{spec.provider}:{spec.kind}:{digest}"

    @property
    def clock(self) -> Callable[[], float]:
        """The clock of every expiry this cache hands out (see :class:`AnswersUsed`)."""
        return self._clock

    @property
    def client(self) -> aioredis.Redis | None:
        """The Redis client (None: an LRU-only cache)."""
        return self._redis

    @property
    def uses_redis(self) -> bool:
        """Whether this cache has Redis behind its LRU (available now or not)."""
        return self._redis is not None

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
        else:
            CACHE_REQUESTS.labels(spec.provider, "lru", "miss").inc()
            task = self._inflight.get(key)
            if task is None:
                # The read joins this iteration's batch now, not when the task first runs.
                task = asyncio.ensure_future(self._load(spec, key, self._read([key]), fetch))
                self._inflight[key] = task
                task.add_done_callback(functools.partial(self._flight_done, key))
            else:
                CACHE_REQUESTS.labels(spec.provider, "inflight", "hit").inc()
            # shield: a cancelled caller must not cancel the fetch others are waiting for.
            text = await asyncio.shield(task)
        record = record_or_none()
        if record is not None:
            used = record.answers
            used.answers += 1
            # Not kept in the LRU (size 0, or evicted already): nothing derived may be kept.
            used.expires_at = min(used.expires_at, self.lru.expires_at(key) or self._clock())
        return json.loads(text)

    async def get_many(self, specs: Iterable[CallSpec]) -> dict[str, JSON]:
        """Cached answers of ``specs`` by :meth:`key_for`; misses are absent.

        Meant for prefetching a batch: what Redis holds is also put in the LRU, so the
        ``get_or_fetch`` calls that follow do not touch Redis. The LRU's misses join the
        current MGET batch.
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
        values = await self._read(list(wanted))
        for (key, spec), raw in zip(wanted.items(), values, strict=True):
            if raw is _MISSING:
                CACHE_REQUESTS.labels(spec.provider, "redis", "skipped").inc()
            elif raw is None:
                CACHE_REQUESTS.labels(spec.provider, "redis", "miss").inc()
                continue
            value = self._from_redis(key, spec, raw)
            if value is not _MISSING:
                found[key] = value
        return found

    def shared_key(self, kind: str, key: str) -> str:
        """A Redis key of this namespace for a value other than a provider answer (a waterfall
        result, say): ``<namespace>:v1:<kind>:<sha1 of key>``."""
        return f"{self.namespace}:v1:{kind}:{hashlib.sha1(key.encode('utf-8')).hexdigest()}"

    async def read_text(self, key: str) -> str | None:
        """The text Redis holds at ``key``, read with this iteration's MGET; None when it holds
        none, or Redis is unavailable (nothing is kept in the LRU)."""
        [raw] = await self._read([key])
        return None if raw is None or raw is _MISSING else _decode(raw)

    async def write_text(self, key: str, text: str, ttl_s: float) -> None:
        """Store ``text`` at ``key`` in Redis for ``ttl_s`` seconds (at least 1 ms); a Redis
        error is counted and logged as for answers, never raised."""
        px = max(1, round(ttl_s * 1000))
        await self._redis_call("set", lambda r: r.set(key, text, px=px))

    async def aclose(self) -> None:
        """Close the Redis connections; in-flight fetches are left to finish."""
        if self._redis is not None:
            await self._redis.aclose()

    # --- internals ---

    async def _load(
        self,
        spec: CallSpec,
        key: str,
        read: Awaitable[list[Any]],
        fetch: Callable[[], Awaitable[JSON]],
    ) -> str:
        [raw] = await read
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

    def _read(self, keys: Sequence[str]) -> asyncio.Future[list[Any]]:
        """The raw values of ``keys`` (None when absent), read by the MGETs of this iteration.

        An entry is ``_MISSING`` when Redis was skipped or its MGET failed.
        """
        if not self.redis_available:
            skipped: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
            skipped.set_result([_MISSING] * len(keys))
            return skipped
        # shield: a cancelled reader must not cancel a read other lookups share.
        return asyncio.shield(asyncio.gather(*(self._enqueue(key) for key in keys)))

    def _enqueue(self, key: str) -> asyncio.Future[Any]:
        future = self._batch.get(key)
        if future is None:
            loop = asyncio.get_running_loop()
            future = self._batch[key] = loop.create_future()
            if len(self._batch) >= self.max_batch:
                self._flush()
            elif self._flush_handle is None:
                # After the lookups already scheduled in this iteration have enqueued theirs.
                self._flush_handle = loop.call_soon(self._flush)
        return future

    def _flush(self) -> None:
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        batch, self._batch = self._batch, {}
        task = asyncio.ensure_future(self._read_batch(batch))
        self._batch_tasks.add(task)
        task.add_done_callback(self._batch_tasks.discard)

    async def _read_batch(self, batch: dict[str, asyncio.Future[Any]]) -> None:
        """One MGET for ``batch``; every reader gets an answer, ``_MISSING`` on any failure."""
        values: Any = _MISSING
        try:
            values = await self._redis_call("mget", lambda r: r.mget(list(batch)))
        except Exception as exc:
            # Not an outage (_redis_call absorbs those) but a bug; it must not fail the lookups.
            CACHE_ERRORS.labels("mget").inc()
            log.error("cache mget failed keys=%s error_class=%s", len(batch), type(exc).__name__,
                      exc_info=True)
        finally:
            # Also when this task is cancelled: no reader may hang; each carries on to its fetch.
            if values is _MISSING:
                values = [_MISSING] * len(batch)
            for future, raw in zip(batch.values(), values, strict=True):
                future.set_result(raw)

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
            if isinstance(exc, OutOfMemoryError):
                # Full, and refusing writes (maxmemory with noeviction): reads still work, so
                # Redis is not skipped; the answer stays in the LRU only.
                if not self._full:
                    self._full = True
                    log.warning("event=cache_redis_full operation=%s: Redis refuses writes at "
                                "its maxmemory; give the cache's Redis maxmemory-policy "
                                "allkeys-lru", operation)
                return _MISSING
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
        if self._full and operation == "set":
            self._full = False
            log.info("event=cache_redis_writable operation=set")
        return result


def _decode(raw: bytes | str) -> str:
    return raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw
