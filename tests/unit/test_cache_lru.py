"""The in-process LRU and the cache's logic without a real Redis."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable
from typing import Any, TypeVar

import pytest
import redis.asyncio as aioredis
from prometheus_client import REGISTRY
from redis.exceptions import OutOfMemoryError

from trackflow.providers.base import CallSpec
from trackflow.providers.cache import LruCache, ProviderCache, normalise_key
from trackflow.providers.context import current_record, enter_record, leave_record
from trackflow.providers.policy import CacheTtls

DAY = 86_400.0
T = TypeVar("T")


def sample(name: str, labels: dict[str, str]) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class FakeRedis:
    """Just the commands the cache uses; ``down`` makes every command fail like a dead server.

    ``mgets`` records the keys of each MGET; ``mget_gate``, when set, holds MGETs until it opens;
    ``mget_error`` makes MGET raise it instead of answering.
    """

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}
        self.ttls: dict[str, int] = {}
        self.down = False
        self.commands: list[str] = []
        self.mgets: list[list[str]] = []
        self.mget_gate: asyncio.Event | None = None
        self.mget_error: Exception | None = None

    def _check(self, name: str) -> None:
        self.commands.append(name)
        if self.down:
            raise aioredis.ConnectionError("Connection refused")

    async def mget(self, keys: list[str]) -> list[bytes | None]:
        self._check("mget")
        self.mgets.append(list(keys))
        if self.mget_gate is not None:
            await self.mget_gate.wait()
        if self.mget_error is not None:
            raise self.mget_error
        return [self.data.get(k) for k in keys]

    async def set(self, key: str, value: str, ex: int) -> bool:
        self._check("set")
        self.data[key] = value.encode()
        self.ttls[key] = ex
        return True

    async def aclose(self) -> None:
        pass


def make_cache(**kwargs: Any) -> tuple[ProviderCache, FakeRedis, Clock]:
    fake, clock = FakeRedis(), Clock()
    cache = ProviderCache(None, client=fake, clock=clock, **kwargs)  # type: ignore[arg-type]
    return cache, fake, clock


def fetcher(value: Any) -> tuple[list[int], Any]:
    calls: list[int] = []

    async def fetch() -> Any:
        calls.append(1)
        return value

    return calls, fetch


# --- LruCache ---


def test_lru_returns_what_was_stored_until_it_expires() -> None:
    lru = LruCache(10)
    lru.set("a", "1", expires_at=100.0)
    assert lru.get("a", 99.9) == "1"
    assert lru.get("a", 100.0) is None, "an entry is gone at its expiry time"
    assert len(lru) == 0, "an expired entry is dropped when seen"


def test_lru_evicts_the_least_recently_used_beyond_its_bound() -> None:
    lru = LruCache(2)
    lru.set("a", "1", 1e9)
    lru.set("b", "2", 1e9)
    assert lru.get("a", 0) == "1"  # a is now more recent than b
    lru.set("c", "3", 1e9)
    assert lru.get("b", 0) is None, "b was least recently used and should be evicted"
    assert lru.get("a", 0) == "1" and lru.get("c", 0) == "3"
    assert len(lru) == 2


def test_lru_overwrite_refreshes_value_and_expiry() -> None:
    lru = LruCache(2)
    lru.set("a", "1", 10.0)
    lru.set("a", "2", 20.0)
    assert lru.get("a", 15.0) == "2"


def test_lru_of_size_zero_stores_nothing() -> None:
    lru = LruCache(0)
    lru.set("a", "1", 1e9)
    assert lru.get("a", 0) is None


# --- keys and TTLs ---


def test_key_format_hashes_the_normalised_key() -> None:
    cache = ProviderCache(None)
    spec = CallSpec("spotify", "isrc", "  GBAYE0601498 ")
    digest = hashlib.sha1(b"GBAYE0601498").hexdigest()
    assert cache.key_for(spec) == f"trackflow:v1:spotify:isrc:{digest}"
    assert cache.key_for(CallSpec("spotify", "id", "AbC")) != cache.key_for(
        CallSpec("spotify", "id", "abc")
    ), "ids are case-sensitive"


def test_normalise_key_composes_unicode() -> None:
    assert normalise_key("Beyonce\u0301") == normalise_key("Beyonc\u00e9")


def test_ttl_per_kind_and_shorter_for_not_found() -> None:
    ttls = CacheTtls()
    assert ttls.ttl_for("isrc", [{"x": 1}]) == 30 * DAY
    assert ttls.ttl_for("search", [{"x": 1}]) == 1 * DAY
    assert ttls.ttl_for("tags", {"tags": []}) == 7 * DAY
    assert ttls.ttl_for("isrc", []) == 3600
    assert ttls.ttl_for("isrc", None) == 3600
    assert ttls.ttl_for("unknown-kind", 1) == 1 * DAY
    short = CacheTtls(by_kind={"search": 60.0}, not_found=3600.0)
    assert short.ttl_for("search", None) == 60.0, "not found never outlives a found answer"


# --- ProviderCache with a fake Redis ---


async def test_read_through_stores_in_redis_and_lru_with_the_kind_ttl() -> None:
    cache, fake, _ = make_cache()
    spec = CallSpec("deezer", "isrc", "USRC17607839")
    calls, fetch = fetcher([{"id": 3135556}])
    assert await cache.get_or_fetch(spec, fetch) == [{"id": 3135556}]
    assert await cache.get_or_fetch(spec, fetch) == [{"id": 3135556}]
    assert len(calls) == 1, "the second lookup should be served from the cache"
    key = cache.key_for(spec)
    assert fake.ttls[key] == 30 * DAY
    assert fake.commands == ["mget", "set"], "the second lookup should not reach Redis"


async def test_not_found_is_cached_with_the_short_ttl() -> None:
    cache, fake, _ = make_cache()
    spec = CallSpec("deezer", "search", "nobody - nothing")
    calls, fetch = fetcher([])
    assert await cache.get_or_fetch(spec, fetch) == []
    assert await cache.get_or_fetch(spec, fetch) == []
    assert len(calls) == 1 and fake.ttls[cache.key_for(spec)] == 3600


async def test_lru_entries_expire_and_are_refilled_from_redis() -> None:
    cache, fake, clock = make_cache(lru_ttl_s=60.0)
    spec = CallSpec("lastfm", "tags", "a - b")
    calls, fetch = fetcher({"tags": ["house"]})
    await cache.get_or_fetch(spec, fetch)
    clock.now += 61
    assert await cache.get_or_fetch(spec, fetch) == {"tags": ["house"]}
    assert len(calls) == 1 and fake.commands == ["mget", "set", "mget"]


async def test_callers_get_copies_so_mutating_an_answer_cannot_corrupt_the_cache() -> None:
    cache, _, _ = make_cache()
    spec = CallSpec("spotify", "id", "4uLU6hMCjMI75M1A2tKUQC")
    _, fetch = fetcher({"genres": ["pop"]})
    first = await cache.get_or_fetch(spec, fetch)
    first["genres"].append("corrupted")
    assert await cache.get_or_fetch(spec, fetch) == {"genres": ["pop"]}


async def test_uncacheable_specs_bypass_the_cache() -> None:
    cache, fake, _ = make_cache()
    spec = CallSpec("spotify", "token", "client-credentials", cacheable=False)
    calls, fetch = fetcher({"access_token": "secret"})
    await cache.get_or_fetch(spec, fetch)
    await cache.get_or_fetch(spec, fetch)
    assert len(calls) == 2 and fake.commands == [], "tokens must never be stored"


async def test_identical_lookups_in_flight_share_one_fetch() -> None:
    cache = ProviderCache(None)  # LRU only
    spec = CallSpec("musicbrainz", "search", "daft punk - one more time")
    release = asyncio.Event()
    calls = 0

    async def fetch() -> list[str]:
        nonlocal calls
        calls += 1
        await release.wait()
        return ["mbid"]

    waiters = [asyncio.create_task(cache.get_or_fetch(spec, fetch)) for _ in range(10)]
    await asyncio.sleep(0)
    release.set()
    assert await asyncio.gather(*waiters) == [["mbid"]] * 10
    assert calls == 1, "10 identical lookups in flight should make one fetch"


async def test_a_failed_fetch_reaches_every_waiter_and_is_not_cached() -> None:
    cache = ProviderCache(None)
    spec = CallSpec("discogs", "search", "x")
    calls = 0

    async def fetch() -> None:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0)
        raise RuntimeError("boom")

    results = await asyncio.gather(
        *(cache.get_or_fetch(spec, fetch) for _ in range(3)), return_exceptions=True
    )
    assert all(isinstance(r, RuntimeError) for r in results) and calls == 1
    with pytest.raises(RuntimeError):
        await cache.get_or_fetch(spec, fetch)
    assert calls == 2, "a failure must not be cached"


async def test_a_cancelled_caller_does_not_cancel_the_shared_fetch() -> None:
    cache = ProviderCache(None)
    spec = CallSpec("deezer", "id", "42")
    release = asyncio.Event()

    async def fetch() -> int:
        await release.wait()
        return 42

    first = asyncio.create_task(cache.get_or_fetch(spec, fetch))
    second = asyncio.create_task(cache.get_or_fetch(spec, fetch))
    await asyncio.sleep(0)
    first.cancel()
    release.set()
    assert await second == 42


async def test_get_many_reads_with_one_mget_and_warms_the_lru() -> None:
    cache, fake, _ = make_cache()
    specs = [CallSpec("deezer", "isrc", f"ISRC{i}") for i in range(5)]
    for spec in specs[:3]:
        _, fetch = fetcher({"isrc": spec.key})
        await cache.get_or_fetch(spec, fetch)
    cache.lru.clear()
    fake.commands.clear()

    found = await cache.get_many([*specs, specs[0]])
    assert found == {cache.key_for(s): {"isrc": s.key} for s in specs[:3]}
    assert fake.commands == ["mget"], "a batch should be one MGET"
    assert await cache.get_many(specs[:3]) == found
    assert fake.commands == ["mget"], "what the MGET found should now come from the LRU"


async def test_redis_errors_fall_back_to_fetch_skip_redis_and_log_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cache, fake, clock = make_cache(outage_skip_s=5.0)
    fake.down = True
    errors_before = sample("trackflow_cache_errors_total", {"operation": "mget"})
    caplog.set_level(logging.INFO, logger="trackflow.providers.cache")

    for i in range(20):
        _, fetch = fetcher(i)
        lookup = cache.get_or_fetch(CallSpec("spotify", "id", str(i)), fetch)
        assert await within(lookup, "a lookup with Redis down") == i
    assert fake.commands == ["mget"], "after one error Redis is skipped, not tried per call"
    assert sample("trackflow_cache_errors_total", {"operation": "mget"}) == errors_before + 1
    assert not cache.redis_available

    clock.now += 6
    _, fetch = fetcher("x")
    await cache.get_or_fetch(CallSpec("spotify", "id", "later"), fetch)
    assert fake.commands == ["mget", "mget"], "Redis is tried again after the skip window"
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, "one outage should log one warning, not one per call"

    fake.down = False
    clock.now += 6
    _, fetch = fetcher("y")
    await cache.get_or_fetch(CallSpec("spotify", "id", "recovered"), fetch)
    assert fake.commands[-2:] == ["mget", "set"]
    assert any("available again" in r.getMessage() for r in caplog.records)


async def test_a_full_redis_refusing_writes_is_still_read_and_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cache, fake, _ = make_cache(outage_skip_s=5.0)
    fake.data[cache.key_for(CallSpec("spotify", "id", "kept"))] = b'"from redis"'
    refused = 0

    async def full(key: str, value: str, ex: int) -> bool:
        nonlocal refused
        fake.commands.append("set")
        refused += 1
        raise OutOfMemoryError("command not allowed when used memory > 'maxmemory'.")

    fake.set = full  # type: ignore[method-assign]
    caplog.set_level(logging.INFO, logger="trackflow.providers.cache")
    errors_before = sample("trackflow_cache_errors_total", {"operation": "set"})
    for i in range(3):
        _, fetch = fetcher(i)
        assert await within(cache.get_or_fetch(CallSpec("spotify", "id", str(i)), fetch),
                            "a lookup with Redis full") == i
    assert refused == 3, "every write is tried: a full Redis is not a Redis down"
    assert cache.redis_available
    _, fetch = fetcher("fetched")
    assert await cache.get_or_fetch(CallSpec("spotify", "id", "kept"), fetch) == "from redis", \
        "what Redis holds is still read"
    assert sample("trackflow_cache_errors_total", {"operation": "set"}) == errors_before + 3
    full_logs = [r for r in caplog.records if "cache_redis_full" in r.getMessage()]
    assert len(full_logs) == 1 and "allkeys-lru" in full_logs[0].getMessage()


async def test_undecodable_redis_value_is_a_miss_and_gets_overwritten() -> None:
    cache, fake, _ = make_cache()
    spec = CallSpec("deezer", "id", "7")
    fake.data[cache.key_for(spec)] = b"not json{"
    calls, fetch = fetcher({"id": 7})
    assert await cache.get_or_fetch(spec, fetch) == {"id": 7}
    assert len(calls) == 1 and fake.data[cache.key_for(spec)] == b'{"id":7}'


# --- batched Redis reads ---


def mget_count() -> float:
    return sample("trackflow_cache_operation_duration_seconds_count", {"operation": "mget"})


async def within(awaitable: Awaitable[T], what: str, timeout_s: float = 2.0) -> T:
    """``awaitable``'s result; a plain test failure instead of a hang."""
    try:
        return await asyncio.wait_for(awaitable, timeout_s)
    except TimeoutError:
        pytest.fail(f"{what} should have been answered within {timeout_s}s, but hung")


def stored(cache: ProviderCache, fake: FakeRedis, specs: list[CallSpec]) -> None:
    """Put ``{"key": spec.key}`` in the fake Redis for each spec."""
    for spec in specs:
        fake.data[cache.key_for(spec)] = f'{{"key":"{spec.key}"}}'.encode()


async def test_concurrent_lookups_in_one_iteration_are_read_with_one_mget() -> None:
    cache, fake, _ = make_cache()
    specs = [CallSpec("deezer", "isrc", f"ISRC{i}") for i in range(8)]
    stored(cache, fake, specs[:5])
    calls, fetch = fetcher("fetched")
    mgets_before = mget_count()

    results = await asyncio.gather(*(cache.get_or_fetch(s, fetch) for s in specs))

    assert results == [{"key": s.key} for s in specs[:5]] + ["fetched"] * 3, (
        "each caller should get the value of its own key")
    assert fake.mgets == [[cache.key_for(s) for s in specs]], (
        f"8 concurrent lookups should be one MGET of 8 keys, got {fake.mgets}")
    assert "get" not in fake.commands
    assert len(calls) == 3, "only the 3 keys Redis did not hold should be fetched"
    assert mget_count() == mgets_before + 1, "the MGET duration should be observed once per batch"


async def test_more_keys_than_max_batch_are_split_into_several_mgets() -> None:
    cache, fake, _ = make_cache(max_batch=4)
    specs = [CallSpec("deezer", "id", str(i)) for i in range(10)]
    stored(cache, fake, specs)
    calls, fetch = fetcher("fetched")

    results = await asyncio.gather(*(cache.get_or_fetch(s, fetch) for s in specs))

    assert results == [{"key": s.key} for s in specs]
    assert [len(keys) for keys in fake.mgets] == [4, 4, 2], (
        f"10 keys with max_batch=4 should be MGETs of 4, 4 and 2 keys, got {fake.mgets}")
    assert sorted(k for keys in fake.mgets for k in keys) == sorted(cache.key_for(s) for s in specs)
    assert calls == []


async def test_a_key_wanted_twice_in_one_batch_is_read_once() -> None:
    cache, fake, _ = make_cache()
    a, b = CallSpec("lastfm", "tags", "a - x"), CallSpec("lastfm", "tags", "b - y")
    stored(cache, fake, [a, b])
    calls, fetch = fetcher("fetched")

    # get_many does not share get_or_fetch's flights, so the same key is enqueued twice.
    results = await asyncio.gather(
        cache.get_or_fetch(a, fetch), cache.get_or_fetch(a, fetch),
        cache.get_many([a, b, a]), cache.get_or_fetch(b, fetch),
    )

    assert results == [
        {"key": a.key}, {"key": a.key},
        {cache.key_for(a): {"key": a.key}, cache.key_for(b): {"key": b.key}},
        {"key": b.key},
    ]
    assert fake.mgets == [[cache.key_for(a), cache.key_for(b)]], (
        f"one MGET with each key once expected, got {fake.mgets}")
    assert calls == []


async def test_a_failed_mget_sends_every_lookup_to_fetch_and_skips_redis() -> None:
    cache, fake, _ = make_cache(outage_skip_s=5.0)
    specs = [CallSpec("spotify", "id", f"down-{i}") for i in range(6)]
    stored(cache, fake, specs)
    fake.down = True
    errors_before = sample("trackflow_cache_errors_total", {"operation": "mget"})
    skipped_before = sample("trackflow_cache_requests_total",
                            {"provider": "spotify", "level": "redis", "result": "skipped"})
    calls, fetch = fetcher("fetched")

    results = await within(
        asyncio.gather(*(cache.get_or_fetch(s, fetch) for s in specs)), "every lookup")

    assert results == ["fetched"] * 6, "with the MGET failing every lookup should be fetched"
    assert len(calls) == 6
    assert fake.commands == ["mget"], "one failed MGET, then Redis skipped (no SET either)"
    assert sample("trackflow_cache_errors_total", {"operation": "mget"}) == errors_before + 1
    assert sample("trackflow_cache_requests_total",
                  {"provider": "spotify", "level": "redis", "result": "skipped"}
                  ) == skipped_before + 6
    assert not cache.redis_available


async def test_an_unexpected_mget_error_is_counted_and_lookups_still_fetch(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cache, fake, _ = make_cache()
    fake.mget_error = RuntimeError("client bug")
    errors_before = sample("trackflow_cache_errors_total", {"operation": "mget"})
    calls, fetch = fetcher("fetched")

    results = await within(asyncio.gather(
        *(cache.get_or_fetch(CallSpec("deezer", "id", str(i)), fetch) for i in range(3))),
        "every lookup")

    assert results == ["fetched"] * 3, "a bug in the batch must not fail the lookups"
    assert len(calls) == 3
    assert sample("trackflow_cache_errors_total", {"operation": "mget"}) == errors_before + 1
    assert any("cache mget failed" in r.getMessage() for r in caplog.records)


async def test_a_cancelled_reader_does_not_cancel_the_batch_for_the_others() -> None:
    cache, fake, _ = make_cache()
    specs = [CallSpec("deezer", "isrc", f"C{i}") for i in range(3)]
    stored(cache, fake, specs)
    fake.mget_gate = asyncio.Event()
    calls, fetch = fetcher("fetched")

    prefetch = asyncio.create_task(cache.get_many(specs))  # shares every key of the batch
    lookups = [asyncio.create_task(cache.get_or_fetch(s, fetch)) for s in specs]
    cancelled = lookups[1]
    for _ in range(5):
        await asyncio.sleep(0)
    assert len(fake.mgets) == 1, "the MGET should be in flight"
    prefetch.cancel()
    cancelled.cancel()
    await asyncio.sleep(0)
    fake.mget_gate.set()

    assert await within(lookups[0], "a lookup that was not cancelled") == {"key": specs[0].key}
    assert await within(lookups[2], "a lookup that was not cancelled") == {"key": specs[2].key}
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    with pytest.raises(asyncio.CancelledError):
        await prefetch
    assert fake.mgets == [[cache.key_for(s) for s in specs]] and calls == []
    assert cache.lru.get(cache.key_for(specs[1]), cache.clock()) == f'{{"key":"{specs[1].key}"}}', (
        "the cancelled caller's lookup should still complete and fill the LRU")


async def test_answers_read_in_a_batch_are_reported_to_answers_used() -> None:
    cache, fake, clock = make_cache(lru_ttl_s=60.0)
    specs = [CallSpec("deezer", "isrc", f"U{i}") for i in range(3)]
    stored(cache, fake, specs)
    _, fetch = fetcher("fetched")
    token = enter_record(0)
    used = current_record().answers
    try:
        await asyncio.gather(*(cache.get_or_fetch(s, fetch) for s in specs))
    finally:
        leave_record(token)
    assert len(fake.mgets) == 1
    assert used.answers == 3
    assert used.expires_at == clock.now + 60.0, "expiry should be the LRU entries' expiry"


def test_max_batch_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_batch"):
        ProviderCache(None, max_batch=0)
