"""The resilient gate with a fake clock: breaker, pacing, pauses, retries, persistence."""

from __future__ import annotations

import asyncio
import itertools
import math
import random
from typing import Any

import pytest

from trackflow.providers.base import CallSpec
from trackflow.providers.breaker import BreakerConfig, State
from trackflow.providers.context import call_deadline, enter_record
from trackflow.providers.errors import FeatureUnavailable, NotFound, TransientError
from trackflow.providers.gate import BreakerOpen, ProviderPolicy, RateLimitWait, ResilientGate


class FakeTime:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def make_gate(t: FakeTime, state: dict[str, Any] | None = None, **policy: Any) -> ResilientGate:
    defaults: dict[str, Any] = {"rate": 10.0, "rate_slack_s": 0.0, "max_attempts": 1,
                                "breaker": BreakerConfig(minimum_calls=5, consecutive_failures=5)}
    defaults.update(policy)
    return ResilientGate("spotify", ProviderPolicy(**defaults), partitions=4,
                         state=state if state is not None else {}, clock=t.clock,
                         sleep=t.sleep, rng=random.Random(1))


SPEC = CallSpec("spotify", "search", "q")


def failing(message: str = "503", **kw: Any) -> Any:
    async def fetch() -> Any:
        raise TransientError("spotify", message, **kw)
    return fetch


async def ok() -> list[dict[str, str]]:
    return [{"id": "x"}]


async def test_breaker_opens_after_consecutive_failures_and_then_refuses_without_calling() -> None:
    t = FakeTime()
    gate = make_gate(t)
    enter_record(1)
    for _ in range(5):
        with pytest.raises(TransientError):
            await gate.run(SPEC, failing())
    assert gate.breaker_state(1) is State.OPEN
    calls = 0

    async def counted() -> list[Any]:
        nonlocal calls
        calls += 1
        return []

    with pytest.raises(BreakerOpen):
        await gate.run(SPEC, counted)
    assert calls == 0, "an open breaker must not let the call through"


async def test_breaker_state_survives_a_new_gate_on_the_same_table() -> None:
    t = FakeTime()
    table: dict[str, Any] = {}
    gate = make_gate(t, table)
    enter_record(2)
    for _ in range(5):
        with pytest.raises(TransientError):
            await gate.run(SPEC, failing())
    restarted = make_gate(t, table)
    assert "spotify/2" in table, "state is keyed by provider and partition"
    with pytest.raises(BreakerOpen):
        await restarted.run(SPEC, ok)
    assert restarted.breaker_state(2) is State.OPEN


async def test_not_found_and_feature_unavailable_do_not_count_as_failures() -> None:
    t = FakeTime()
    gate = make_gate(t)
    enter_record(0)
    for exc in [NotFound("spotify", "no"), FeatureUnavailable("spotify", "403")] * 5:
        async def fetch(exc: Exception = exc) -> Any:
            raise exc
        with pytest.raises(type(exc)):
            await gate.run(SPEC, fetch)
    assert gate.breaker_state(0) is State.CLOSED


async def test_calls_of_one_partition_are_paced_at_its_share_of_the_rate() -> None:
    t = FakeTime()
    gate = make_gate(t, rate=10.0)  # 4 partitions -> one call per 0.4 s per partition
    enter_record(3)
    times = []
    for _ in range(5):
        await gate.run(SPEC, ok)
        times.append(t.now)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert all(g == pytest.approx(0.4) for g in gaps), f"expected 0.4 s apart, got {gaps}"


async def test_a_limit_answer_pauses_the_partition_for_retry_after() -> None:
    t = FakeTime()
    gate = make_gate(t, rate=100.0)
    enter_record(0)
    with pytest.raises(TransientError):
        await gate.run(SPEC, failing("429", retry_after=7.0, rate_limited=True))
    before = t.now
    await gate.run(SPEC, ok)
    assert t.now - before >= 7.0, "the next call must wait for Retry-After"


async def test_a_slot_past_the_callers_deadline_fails_fast_without_taking_the_slot() -> None:
    t = FakeTime()
    gate = make_gate(t, rate=100.0)
    enter_record(0)
    with pytest.raises(TransientError):
        await gate.run(SPEC, failing("429", retry_after=60.0, rate_limited=True))
    with call_deadline(t.now + 2.0), pytest.raises(RateLimitWait):
        await gate.run(SPEC, ok)
    assert t.sleeps == [], "a call that cannot make its deadline must not sleep"
    # Without a deadline the call waits out the pause: waiting is backpressure, not failure.
    before = t.now
    assert await gate.run(SPEC, ok) == [{"id": "x"}]
    assert t.now - before >= 60.0 - 1e-6


async def test_without_a_deadline_calls_wait_however_far_their_slot_is() -> None:
    t = FakeTime()
    gate = make_gate(t, rate=1.0, max_wait_s=0.5)
    enter_record(0)
    started = t.now
    for _ in range(5):
        await gate.run(SPEC, ok)
    # Partition 0 of 4 at 1 call/s owns every 4th second: the 5th call leaves 16 s or more
    # after the first, far past max_wait_s, and nothing failed.
    assert t.now - started >= 16.0 - 4.0


async def test_transient_failures_are_retried_with_backoff_then_succeed() -> None:
    t = FakeTime()
    gate = make_gate(t, max_attempts=3, rate=1000.0, retry_budget_ratio=1.0)
    enter_record(0)
    answers: list[Any] = [TransientError("spotify", "502"), TransientError("spotify", "502"),
                          [{"id": 1}]]

    async def flaky() -> Any:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert await gate.run(SPEC, flaky) == [{"id": 1}]
    assert not answers, "expected two retries"


async def test_the_retry_budget_stops_an_outage_from_multiplying_load() -> None:
    t = FakeTime()
    gate = make_gate(t, max_attempts=3, rate=1000.0, retry_budget_ratio=0.2,
                     breaker=BreakerConfig(minimum_calls=1000, window_size=1000,
                                           consecutive_failures=1000))
    enter_record(0)
    attempts = 0

    async def down() -> Any:
        nonlocal attempts
        attempts += 1
        raise TransientError("spotify", "503")

    for _ in range(100):
        with pytest.raises(TransientError):
            await gate.run(SPEC, down)
    assert attempts <= 100 * 1.25, f"retries must stay near 20 % of calls, saw {attempts} attempts"


@pytest.mark.parametrize(("rate", "window"), [(1.0, 1.0), (10.0, 1.0), (20.0, 1.0),
                                              (10.0, 5.0), (50.0, 30.0), (200.0, 1.0)])
@pytest.mark.parametrize("slack", [0.05, 0.1, 0.5])
def test_late_calls_stay_within_the_limit_of_any_window(rate: float, window: float,
                                                        slack: float) -> None:
    from trackflow.providers.gate import late_tolerance, paced_rate

    limit = round(rate * window)
    gap = 1 / paced_rate(rate, window, slack)
    tol = late_tolerance(slack)
    assert 0 < tol < slack
    # Worst case for a closed window of `window` seconds: its first call left `tol` late and
    # reached the provider after almost the other half of the slack, its last call left and
    # arrived on time. Calls of slots within window + that much can share the window.
    shrink = tol + 0.999 * (slack - tol)
    worst = math.floor((window + shrink) / gap + 1e-9) + 1
    assert worst <= limit, f"{worst} calls could land in one window of {window} s"
    assert gap * limit == pytest.approx(window + slack), "the window is paced as window + slack"


def test_the_slack_costs_short_windows_more_than_long_ones() -> None:
    from trackflow.providers.gate import paced_rate

    assert paced_rate(1.0, 1.0, 0.1) == pytest.approx(1 / 1.1)
    assert paced_rate(50.0, 30.0, 0.1) / 50.0 == pytest.approx(30 / 30.1)


async def test_a_call_waiting_for_its_slot_is_refused_when_the_breaker_opens_meanwhile() -> None:
    t = FakeTime()
    gate = make_gate(t, breaker=BreakerConfig(minimum_calls=1, consecutive_failures=1))
    enter_record(1)
    fail_now, blocking, release = asyncio.Event(), False, asyncio.Event()

    async def sleep(seconds: float) -> None:
        t.now += seconds
        if blocking:
            await release.wait()

    gate._sleep = sleep  # the waits for rate-limit slots block until released

    async def fails_when_told() -> Any:
        await fail_now.wait()
        raise TransientError("spotify", "503")

    calls = 0

    async def counted() -> list[Any]:
        nonlocal calls
        calls += 1
        return []

    first = asyncio.ensure_future(gate.run(SPEC, fails_when_told))
    for _ in range(20):
        await asyncio.sleep(0)  # the first call is out, waiting for its answer
    blocking = True
    second = asyncio.ensure_future(gate.run(SPEC, counted))
    for _ in range(20):
        await asyncio.sleep(0)  # permitted while closed, now waiting for its slot
    assert not second.done(), "the second call should be waiting for its slot"
    fail_now.set()
    with pytest.raises(TransientError):
        await first
    assert gate.breaker_state(1) is State.OPEN
    release.set()
    with pytest.raises(BreakerOpen):
        await second
    assert calls == 0, "a call permitted before the breaker opened must not go out after it"
