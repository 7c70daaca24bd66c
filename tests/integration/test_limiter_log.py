"""The global limiter's log of calls sent, on its scripts in a real Redis (no broker needed).

A committed call counts for the whole hold until its answer settles it to count less, so a
call still without an answer keeps its place however long it takes, and an answered one frees
its place when its own end comes, whichever worker sent it.
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


async def commit(limiter: GlobalLimiter, member: str) -> Any:
    return await limiter.commit("musicbrainz", limit=2, member=member, hold_s=3.0)


async def test_a_call_counts_the_hold_until_settled_then_its_own_window(
        limiter: GlobalLimiter) -> None:
    for member in ("a", "b"):
        r = await commit(limiter, member)
        assert r is not None and r.granted, "expected two calls in an empty log to go"
    r = await commit(limiter, "c")
    assert r is not None and not r.granted, "expected a third call to be refused"
    assert 2.8 < r.wait_s <= 3.0, f"expected about 3 s until an unanswered call ends: {r}"
    # "a" is answered: it counts 1.1 s from its commit; "b" has no answer yet.
    await limiter.settle("musicbrainz", member="a", shorten_s=1.9)
    r = await commit(limiter, "c")
    assert r is not None and not r.granted and 0.9 < r.wait_s <= 1.1, (
        f"expected about 1.1 s until the settled call ends, got {r}")
    await asyncio.sleep(r.wait_s + 0.05)
    assert (await commit(limiter, "c")).granted, "expected room once the settled call ended"
    r = await commit(limiter, "d")
    assert r is not None and not r.granted, "the call without an answer must still count"
