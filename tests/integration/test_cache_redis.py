"""The provider cache against a real Redis at ``REDIS_URL``.

Locally: ``redis-server --port 6390 --save '' --daemonize yes`` then
``REDIS_URL=redis://127.0.0.1:6390/0 pytest -m integration tests/integration/test_cache_redis.py``.

The outage test puts a TCP proxy between the cache and Redis and stops and restarts the proxy:
to the client that is exactly a Redis going away (connections severed, then refused) and coming
back, without the test needing to own the Redis process behind ``REDIS_URL``.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis.asyncio as aioredis
from prometheus_client import REGISTRY

from trackflow.providers.base import CallSpec
from trackflow.providers.cache import ProviderCache

pytestmark = pytest.mark.integration

@pytest.fixture
def redis_url(services: Any) -> str:
    """The suite's Redis: REDIS_URL when set, else the one the ``services`` fixture started."""
    return str(services.redis_url)


@pytest.fixture
async def namespace(redis_url: str) -> AsyncIterator[str]:
    """A namespace of this test's own; its keys are deleted afterwards."""
    ns = f"trackflow-test-{uuid.uuid4().hex[:12]}"
    yield ns
    client = aioredis.Redis.from_url(redis_url)
    try:
        keys = [k async for k in client.scan_iter(match=f"{ns}:*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


@pytest.fixture
async def make_cache(redis_url: str, namespace: str) -> AsyncIterator[Callable[..., ProviderCache]]:
    """``make_cache(**kwargs)``: a ProviderCache on REDIS_URL (or ``url=``), closed afterwards."""
    made: list[ProviderCache] = []

    def factory(url: str | None = None, **kwargs: Any) -> ProviderCache:
        cache = ProviderCache(url or redis_url, namespace=namespace, **kwargs)
        made.append(cache)
        return cache

    yield factory
    for cache in made:
        await cache.aclose()


class Fetch:
    """A fetch function that counts its calls."""

    def __init__(self, value: Any, delay_s: float = 0.0) -> None:
        self.value = value
        self.delay_s = delay_s
        self.calls = 0

    async def __call__(self) -> Any:
        self.calls += 1
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        return self.value


def errors_total(operation: str) -> float:
    value = REGISTRY.get_sample_value("trackflow_cache_errors_total", {"operation": operation})
    return value or 0.0


async def test_read_through_fetches_once_and_shares_the_answer_through_redis(
    make_cache: Callable[..., ProviderCache], redis_url: str
) -> None:
    spec = CallSpec("deezer", "isrc", "USRC17607839")
    fetch = Fetch([{"deezer_id": 3135556, "bpm": 123.4}])
    first = make_cache()
    assert await first.get_or_fetch(spec, fetch) == fetch.value
    assert await first.get_or_fetch(spec, fetch) == fetch.value

    other_worker = make_cache()  # empty LRU: must be served by Redis
    assert await other_worker.get_or_fetch(spec, fetch) == fetch.value
    assert fetch.calls == 1, "the answer should be fetched once and then read from the cache"

    client = aioredis.Redis.from_url(redis_url)
    try:
        ttl = await client.ttl(first.key_for(spec))
    finally:
        await client.aclose()
    assert 30 * 86_400 - 5 <= ttl <= 30 * 86_400, f"an ISRC answer should live 30 days, ttl={ttl}"


async def test_not_found_is_cached_with_the_short_ttl(
    make_cache: Callable[..., ProviderCache], redis_url: str
) -> None:
    spec = CallSpec("spotify", "search", "nobody - nothing at all")
    fetch = Fetch([])
    cache = make_cache()
    assert await cache.get_or_fetch(spec, fetch) == []
    assert await make_cache().get_or_fetch(spec, fetch) == []
    assert fetch.calls == 1, "a not-found answer should be cached too"
    client = aioredis.Redis.from_url(redis_url)
    try:
        ttl = await client.ttl(cache.key_for(spec))
    finally:
        await client.aclose()
    assert 3600 - 5 <= ttl <= 3600, f"a not-found answer should live an hour, ttl={ttl}"


async def test_ten_concurrent_identical_lookups_make_one_fetch(
    make_cache: Callable[..., ProviderCache],
) -> None:
    spec = CallSpec("musicbrainz", "search", "daft punk - one more time")
    fetch = Fetch(["0c5b6ddc"], delay_s=0.05)
    cache = make_cache()
    results = await asyncio.gather(*(cache.get_or_fetch(spec, fetch) for _ in range(10)))
    assert results == [["0c5b6ddc"]] * 10
    assert fetch.calls == 1, "10 identical lookups in flight should share one fetch"


async def test_hundreds_of_writes_at_once_wait_for_a_connection_instead_of_failing(
    make_cache: Callable[..., ProviderCache],
) -> None:
    # 300 distinct answers fetched at once are 300 SETs at once: more than the pool holds. A
    # command waits for a free connection; redis-py's default pool raised MaxConnectionsError
    # past 100, which the cache counted as a Redis outage and skipped Redis for its window.
    cache = make_cache(timeout_s=2.0)
    before = errors_total("set")
    specs = [CallSpec("deezer", "isrc", f"USRC1760{i:04d}") for i in range(300)]
    answers = await asyncio.gather(*(cache.get_or_fetch(s, Fetch([{"n": i}]))
                                     for i, s in enumerate(specs)))
    assert answers == [[{"n": i}] for i in range(300)]
    assert errors_total("set") == before, "no write may fail for want of a connection"
    assert cache.redis_available, "a full pool is not a Redis outage"
    fresh = make_cache()  # an empty LRU: every answer must have reached Redis
    assert len(await fresh.get_many(specs)) == 300


async def test_get_many_reads_a_batch_with_one_mget(
    make_cache: Callable[..., ProviderCache],
) -> None:
    specs = [CallSpec("lastfm", "tags", f"artist {i} - title {i}") for i in range(20)]
    writer = make_cache()
    for spec in specs[:12]:
        await writer.get_or_fetch(spec, Fetch({"tags": [spec.key]}))

    reader = make_cache()
    found = await reader.get_many(specs)
    assert found == {reader.key_for(s): {"tags": [s.key]} for s in specs[:12]}
    # The batch warmed the reader's LRU: the lookups that follow need neither Redis nor fetch.
    fetch = Fetch("unused")
    for spec in specs[:12]:
        assert await reader.get_or_fetch(spec, fetch) == {"tags": [spec.key]}
    assert fetch.calls == 0


async def test_concurrent_lookups_are_read_with_one_mget(
    make_cache: Callable[..., ProviderCache],
) -> None:
    specs = [CallSpec("deezer", "isrc", f"BATCH{i:04d}") for i in range(30)]
    writer = make_cache()
    for spec in specs[:20]:
        await writer.get_or_fetch(spec, Fetch({"isrc": spec.key, "title": "Café ☕"}))

    reader = make_cache()  # empty LRU: every lookup goes to Redis
    fetch = Fetch("fetched")
    mgets_before = mget_total()
    results = await asyncio.gather(*(reader.get_or_fetch(s, fetch) for s in specs))

    assert mget_total() == mgets_before + 1, (
        f"30 concurrent lookups should be one MGET, got {mget_total() - mgets_before}")
    assert results == [{"isrc": s.key, "title": "Café ☕"} for s in specs[:20]] + ["fetched"] * 10
    assert fetch.calls == 10, "only the 10 keys Redis did not hold should be fetched"


def mget_total() -> float:
    value = REGISTRY.get_sample_value(
        "trackflow_cache_operation_duration_seconds_count", {"operation": "mget"})
    return value or 0.0


class TcpProxy:
    """Forwards a local port to Redis; ``stop()`` severs every connection and refuses new ones."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()
        await asyncio.sleep(0.05)  # let the pipes notice

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, up_writer))
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.transport.abort()
        self._writers.discard(writer)


@pytest.fixture
async def proxy(redis_url: str) -> AsyncIterator[TcpProxy]:
    parts = urlsplit(redis_url)
    if parts.scheme != "redis":
        pytest.skip(f"the outage test proxies plain TCP; REDIS_URL scheme is {parts.scheme}")
    proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 6379)
    await proxy.start()
    yield proxy
    await proxy.stop()


def via(proxy: TcpProxy, redis_url: str) -> str:
    parts = urlsplit(redis_url)
    netloc = f"127.0.0.1:{proxy.port}"
    if "@" in parts.netloc:
        netloc = parts.netloc.rsplit("@", 1)[0] + "@" + netloc
    return urlunsplit(parts._replace(netloc=netloc))


async def test_redis_outage_falls_back_to_fetch_and_recovers(
    make_cache: Callable[..., ProviderCache], proxy: TcpProxy, redis_url: str
) -> None:
    cache = make_cache(via(proxy, redis_url), outage_skip_s=0.3, timeout_s=0.25)
    cached = CallSpec("deezer", "id", "cached-before-outage")
    await cache.get_or_fetch(cached, Fetch({"id": 1}))

    await proxy.stop()  # Redis goes away mid-test
    errors_before = errors_total("mget") + errors_total("set")
    started = time.monotonic()
    for i in range(30):
        fetch = Fetch({"id": i})
        spec = CallSpec("deezer", "id", f"during-outage-{i}")
        assert await cache.get_or_fetch(spec, fetch) == {"id": i}
        assert fetch.calls == 1, "with Redis down every lookup should still be answered by fetch"
    elapsed = time.monotonic() - started
    tried = errors_total("mget") + errors_total("set") - errors_before
    assert tried > 0, "errors should be counted"
    # Each failed round trip skips Redis for outage_skip_s (0.3 s): over the loop, at most one
    # read and one write per skip window may have tried it, however long the loop took; without
    # the skip, every one of the 30 lookups would wait out a timeout on its read and its write.
    most = 2 * (elapsed / 0.3 + 1)
    assert tried <= most, (f"a dead Redis must be skipped, not tried on every call: {tried} "
                           f"failed round trips in {elapsed:.2f} s, at most {most:.0f} expected")
    assert not cache.redis_available

    await proxy.start()  # Redis is back
    await asyncio.sleep(0.35)  # past the skip window
    cache.lru.clear()  # so the next lookup has to go to Redis
    fetch = Fetch({"id": "refetched"})
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline:
        answer = await cache.get_or_fetch(cached, fetch)
        if fetch.calls == 0:
            break
        cache.lru.clear()
        await asyncio.sleep(0.35)
    assert fetch.calls == 0 and answer == {"id": 1}, "after Redis returns the cache should serve"

    new = CallSpec("deezer", "id", "after-outage")
    await cache.get_or_fetch(new, Fetch({"id": 2}))
    other = make_cache()
    unused = Fetch("unused")
    assert await other.get_or_fetch(new, unused) == {"id": 2}
    assert unused.calls == 0, "answers fetched after recovery should be written to Redis again"
