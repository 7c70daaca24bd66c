"""Waterfall results shared between workers through a real Redis (``agents.results``).

Two waterfalls stand for two workers: each has its own provider cache and result cache, both on
the suite's Redis under one namespace. What one computes, the other reads instead of asking its
providers; it never outlives the answers it came from, and workers of another configuration do
not read it.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis
from prometheus_client import REGISTRY

from tests.unit.test_waterfall import RAW, CachedFake, Clock, Fake, in_record, song
from trackflow.agents.results import ResultCache, result_fingerprint
from trackflow.agents.waterfall import Waterfall
from trackflow.providers.cache import ProviderCache
from trackflow.providers.errors import TransientError
from trackflow.providers.policy import CacheTtls
from trackflow.streams.settings import Settings, load_settings

pytestmark = pytest.mark.integration

ANSWERS = {"musicbrainz": [song(isrc="GBDUW0000059", musicbrainz_recording_id="mbid")],
           "deezer": [song(isrc="GBDUW0000059", bpm=123.0, deezer_id="3135556")]}


@pytest.fixture
async def redis(services: Any) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(str(services.redis_url))
    yield client
    await client.aclose()


@pytest.fixture
async def namespace(redis: aioredis.Redis) -> AsyncIterator[str]:
    """A cache namespace of this test's own; its keys are deleted afterwards."""
    ns = f"trackflow-test-{uuid.uuid4().hex[:12]}"
    yield ns
    keys = [k async for k in redis.scan_iter(match=f"{ns}:*")]
    if keys:
        await redis.delete(*keys)


@pytest.fixture
async def worker(services: Any, namespace: str
                 ) -> AsyncIterator[Callable[..., tuple[Waterfall, dict[str, Fake], Clock]]]:
    """``worker(answers, settings=, wall=, ttls=, asked=)``: a waterfall as a worker builds it,
    its answers through a provider cache on the suite's Redis, in this test's namespace
    (``asked=False``: providers that fail the test if asked)."""
    caches: list[ProviderCache] = []

    def make(answers: dict[str, Any], *, settings: Settings | None = None,
             wall: Callable[[], float] | None = None, ttls: CacheTtls | None = None,
             asked: bool = True) -> tuple[Waterfall, dict[str, Fake], Clock]:
        settings = settings or load_settings(env={})
        clock = Clock()
        cache = ProviderCache(str(services.redis_url), namespace=namespace, clock=clock,
                              ttls=ttls)
        caches.append(cache)
        fakes: dict[str, Fake] = {
            name: CachedFake(name, answer, cache) if asked
            else Fake(name, AssertionError(f"{name} asked"))
            for name, answer in answers.items()}
        order = [n for n in settings.waterfall.order if n in fakes]
        results = ResultCache(100, clock=clock, shared=cache,
                              fingerprint=result_fingerprint(settings, order),
                              **({"wall": wall} if wall else {}))
        return Waterfall(fakes, settings, results=results), fakes, clock

    yield make
    for cache in caches:
        await cache.aclose()


def shared_hits() -> float:
    return REGISTRY.get_sample_value("trackflow_result_cache_requests_total",
                                     {"level": "redis", "result": "hit"}) or 0.0


async def result_keys(redis: aioredis.Redis, namespace: str) -> list[bytes]:
    return [k async for k in redis.scan_iter(match=f"{namespace}:v1:result:*")]


async def test_a_second_worker_reads_the_result_instead_of_asking_its_providers(
        worker: Any, redis: aioredis.Redis, namespace: str) -> None:
    first, _, _ = worker(ANSWERS)
    computed = await in_record(first.enrich(dict(RAW), 1))
    assert computed.failure is None and computed.filled["bpm"].value == 123.0

    second, fakes, _ = worker(ANSWERS, asked=False)
    before = shared_hits()
    read = await in_record(second.enrich({**RAW, "track_id": "another record"}, 1))
    assert shared_hits() == before + 1
    assert all(not f.queries for f in fakes.values()), "no provider may be asked"
    assert read.filled == computed.filled and read.outcomes == computed.outcomes
    assert read.failure is None
    again = await in_record(second.enrich(dict(RAW), 1))
    assert shared_hits() == before + 1, "now kept in process: Redis is not asked again"
    assert again.filled == computed.filled


async def test_a_shared_result_lives_no_longer_than_the_answers_it_came_from(
        worker: Any, redis: aioredis.Redis, namespace: str) -> None:
    # Deezer finds nothing, kept 10 s: the result may live 10 s, in process and in Redis.
    first, _, _ = worker({"musicbrainz": ANSWERS["musicbrainz"], "deezer": []},
                         ttls=CacheTtls(not_found=10.0))
    await in_record(first.enrich(dict(RAW), 1))
    [key] = await result_keys(redis, namespace)
    assert 9_000 < await redis.pttl(key) <= 10_000

    wall = [1e10]
    later, fakes, _ = worker(ANSWERS, wall=lambda: wall[0])
    await in_record(later.enrich(dict(RAW), 1))
    assert all(f.queries for f in fakes.values()), \
        "a result dated past its expiry (clocks apart, or a slow read) is computed again"


async def test_workers_of_another_configuration_do_not_read_each_others_results(
        worker: Any) -> None:
    first, _, _ = worker(ANSWERS)
    await in_record(first.enrich(dict(RAW), 1))
    stricter = load_settings(env={"TRACKFLOW_PROVIDERS__DEEZER__MIN_CONFIDENCE": "0.99"})
    other, fakes, _ = worker(ANSWERS, settings=stricter)
    await in_record(other.enrich(dict(RAW), 1))
    assert all(f.queries for f in fakes.values())
    fewer, fakes, _ = worker({"musicbrainz": ANSWERS["musicbrainz"]})
    await in_record(fewer.enrich(dict(RAW), 1))
    assert fakes["musicbrainz"].queries, "another set of stages: another result"


async def test_an_unreadable_shared_result_is_a_miss_and_is_replaced(
        worker: Any, redis: aioredis.Redis, namespace: str) -> None:
    first, _, _ = worker(ANSWERS)
    computed = await in_record(first.enrich(dict(RAW), 1))
    [key] = await result_keys(redis, namespace)
    await redis.set(key, b'{"expires": "soon", "filled": 3}')
    second, fakes, _ = worker(ANSWERS)
    result = await in_record(second.enrich(dict(RAW), 1))
    assert all(f.queries for f in fakes.values())
    assert result.filled == computed.filled
    third, fakes, _ = worker(ANSWERS, asked=False)
    assert (await in_record(third.enrich(dict(RAW), 1))).filled == computed.filled


async def test_a_result_with_a_failed_stage_is_not_shared(
        worker: Any, redis: aioredis.Redis, namespace: str) -> None:
    first, _, _ = worker({"musicbrainz": ANSWERS["musicbrainz"],
                          "spotify": TransientError("spotify", "503")})
    result = await in_record(first.enrich(dict(RAW), 1))
    assert [o.outcome for o in result.outcomes] == ["matched", "failed"]
    assert await result_keys(redis, namespace) == []
