"""The global limiter's log of calls sent, on its script in a real Redis (no broker needed).

Gates widen the log's window by the delays they measure, so callers of one provider ask with
different windows: a caller with a short window must neither erase the calls a wider one
still counts nor let a call through that the wider window refuses.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from trackflow.providers.limiter import GlobalLimiter

pytestmark = pytest.mark.integration


@pytest.fixture
async def limiter(services: Any) -> AsyncIterator[GlobalLimiter]:
    lim = GlobalLimiter(str(services.redis_url),
                        namespace=f"trackflow-test-{uuid.uuid4().hex[:12]}")
    yield lim
    await lim.aclose()


async def commit(limiter: GlobalLimiter, window_s: float) -> Any:
    return await limiter.commit("musicbrainz", window_s=window_s, limit=3, keep_s=3.0,
                                memory_s=30.0)


async def test_a_short_window_counts_the_widest_one_asked_for_and_erases_nothing(
        limiter: GlobalLimiter) -> None:
    for _ in range(3):
        r = await commit(limiter, 2.0)
        assert r is not None and r.granted, "expected three calls in an empty log to go"
    assert not (await commit(limiter, 2.0)).granted, "expected a fourth call to be refused"
    await asyncio.sleep(1.2)
    # 1.2 s on, the three calls are outside a 1.1 s window but inside the 2 s one a slower
    # gate asked for: a call after them must count that window.
    r = await commit(limiter, 1.1)
    assert r is not None and not r.granted, (
        "expected a caller with a 1.1 s window to be refused while a 2 s window asked for "
        "lately still holds three calls")
    assert 0.5 < r.wait_s <= 0.8 + 0.05, f"expected about 0.8 s to wait, got {r.wait_s:.3f}"
    assert len(await limiter._commit_redis.zrange(limiter.key("musicbrainz") + ":sent", 0, -1)
               ) >= 3, "a short window's commit must not erase calls a wider window counts"
    await asyncio.sleep(r.wait_s + 0.05)
    r = await commit(limiter, 1.1)
    assert r is not None and r.granted, "expected room once the oldest call left the 2 s window"
