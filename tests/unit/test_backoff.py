"""Backoff schedule, retry budget and the retry loop; no real sleeping."""

from __future__ import annotations

import random

import pytest

from trackflow.providers.backoff import RetryBudget, backoff_delay, retry_call
from trackflow.providers.errors import NotFound, PermanentError, TransientError


class FixedRng:
    """Returns the given fraction of the range, to pin the jitter."""

    def __init__(self, fraction: float) -> None:
        self.fraction = fraction

    def uniform(self, a: float, b: float) -> float:
        return a + (b - a) * self.fraction


class Recorder:
    def __init__(self) -> None:
        self.sleeps: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)


def test_full_jitter_stays_within_zero_and_the_capped_exponential() -> None:
    rng = random.Random(7)
    for attempt in range(12):
        ceiling = min(30.0, 0.5 * 2**attempt)
        delays = [backoff_delay(attempt, 0.5, 30.0, rng) for _ in range(500)]
        assert all(0.0 <= d <= ceiling for d in delays), f"attempt {attempt}: outside 0..{ceiling}"
        # Full jitter spreads over the whole range, not just near the top.
        assert min(delays) < ceiling * 0.1 and max(delays) > ceiling * 0.9


def test_extremes_of_the_jitter_are_zero_and_the_ceiling() -> None:
    assert backoff_delay(3, 1.0, 100.0, FixedRng(0.0)) == 0.0
    assert backoff_delay(3, 1.0, 100.0, FixedRng(1.0)) == 8.0
    assert backoff_delay(10, 1.0, 100.0, FixedRng(1.0)) == 100.0, "capped"


def test_huge_attempt_numbers_do_not_overflow() -> None:
    assert backoff_delay(10_000, 1.0, 60.0, FixedRng(1.0)) == 60.0


def test_retry_after_is_a_floor() -> None:
    assert backoff_delay(0, 1.0, 10.0, FixedRng(0.5), retry_after=30.0) == 30.0
    assert backoff_delay(5, 1.0, 10.0, FixedRng(1.0), retry_after=2.0) == 10.0


def test_negative_inputs_are_rejected() -> None:
    with pytest.raises(ValueError):
        backoff_delay(-1, 1.0, 1.0)


def test_budget_caps_retries_at_about_twenty_percent_of_calls() -> None:
    budget = RetryBudget(ratio=0.2, window_s=10.0, min_per_s=0.0)
    now = 1000.0
    retries = 0
    for i in range(1000):  # 100 calls/s for 10 s, every call wanting a retry
        now = 1000.0 + i * 0.01
        budget.record_call(now)
        if budget.can_retry(now):
            budget.record_retry(now)
            retries += 1
    assert 190 <= retries <= 200, f"expected about 20% of 1000 calls retried, got {retries}"


def test_budget_minimum_lets_a_quiet_provider_retry_once() -> None:
    budget = RetryBudget(ratio=0.2, window_s=10.0, min_per_s=0.1)
    budget.record_call(0.0)
    assert budget.can_retry(0.0), "one call and 0.1 retries/s over 10 s: one retry allowed"
    budget.record_retry(0.0)
    assert not budget.can_retry(0.0)


def test_budget_recovers_when_the_window_slides_on() -> None:
    budget = RetryBudget(ratio=0.0, window_s=10.0, min_per_s=0.1)
    budget.record_retry(0.0)
    assert not budget.can_retry(5.0)
    assert budget.can_retry(10.5), "the retry from t=0 has left the 10 s window"
    assert budget.totals(10.5) == (0, 0)


async def test_retry_call_retries_transient_errors_with_jittered_sleeps() -> None:
    calls = 0

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise TransientError("deezer", "503")
        return "ok"

    rec = Recorder()
    retried: list[tuple[int, float]] = []
    result = await retry_call(
        flaky,
        max_attempts=5,
        base=1.0,
        cap=10.0,
        sleep=rec.sleep,
        rng=FixedRng(1.0),
        on_retry=lambda n, delay, err: retried.append((n, delay)),
    )
    assert result == "ok" and calls == 3
    assert rec.sleeps == [1.0, 2.0], "ceilings base*2**0 and base*2**1"
    assert retried == [(1, 1.0), (2, 2.0)]


async def test_retry_call_honours_retry_after() -> None:
    attempts = iter([TransientError("spotify", "429", retry_after=7.0, rate_limited=True)])

    async def limited() -> int:
        error = next(attempts, None)
        if error:
            raise error
        return 1

    rec = Recorder()
    assert await retry_call(limited, max_attempts=2, base=0.1, cap=1.0, sleep=rec.sleep) == 1
    assert rec.sleeps == [7.0]


async def test_retry_call_raises_the_last_error_after_max_attempts() -> None:
    errors = [TransientError("lastfm", f"fail {i}") for i in range(3)]
    it = iter(errors)

    async def always_fails() -> None:
        raise next(it)

    gave_up: list[str] = []
    rec = Recorder()
    with pytest.raises(TransientError) as info:
        await retry_call(
            always_fails,
            max_attempts=3,
            sleep=rec.sleep,
            on_give_up=lambda reason, err: gave_up.append(reason),
        )
    assert info.value is errors[2]
    assert len(rec.sleeps) == 2 and gave_up == ["attempts"]


@pytest.mark.parametrize(
    "error", [PermanentError("x", "401"), NotFound("x", "none"), KeyError("k")]
)
async def test_retry_call_does_not_retry_other_errors(error: Exception) -> None:
    calls = 0

    async def fails() -> None:
        nonlocal calls
        calls += 1
        raise error

    with pytest.raises(type(error)):
        await retry_call(fails, max_attempts=5, sleep=Recorder().sleep)
    assert calls == 1


async def test_retry_call_classifies_raw_exceptions() -> None:
    calls = 0

    async def times_out() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise TimeoutError("read timeout")
        return "ok"

    def classify(exc: Exception) -> Exception:
        if isinstance(exc, TimeoutError):
            return TransientError("musicbrainz", "timeout")
        return exc

    rec = Recorder()
    assert await retry_call(times_out, max_attempts=2, classify=classify, sleep=rec.sleep) == "ok"


async def test_retry_call_chains_a_classified_error_it_gives_up_on() -> None:
    async def times_out() -> None:
        raise TimeoutError("read timeout")

    with pytest.raises(TransientError) as info:
        await retry_call(
            times_out,
            max_attempts=1,
            classify=lambda exc: TransientError("musicbrainz", "timeout"),
        )
    assert isinstance(info.value.__cause__, TimeoutError)


async def test_retry_call_stops_when_the_budget_is_spent() -> None:
    budget = RetryBudget(ratio=0.0, window_s=10.0, min_per_s=0.1)  # one retry per window
    last = TransientError("discogs", "503")

    async def fails() -> None:
        raise last

    gave_up: list[str] = []
    rec = Recorder()
    with pytest.raises(TransientError) as info:
        await retry_call(
            fails,
            max_attempts=10,
            budget=budget,
            sleep=rec.sleep,
            clock=lambda: 100.0,
            on_give_up=lambda reason, err: gave_up.append(reason),
        )
    assert info.value is last
    assert len(rec.sleeps) == 1, "the budget allowed exactly one retry"
    assert gave_up == ["budget"]
    assert budget.totals(100.0) == (1, 1)


async def test_retry_call_leaves_long_retry_after_to_the_dead_letter_schedule() -> None:
    async def quota() -> None:
        raise TransientError("lastfm", "quota", retry_after=3600.0, rate_limited=True)

    gave_up: list[str] = []
    rec = Recorder()
    with pytest.raises(TransientError):
        await retry_call(
            quota,
            max_attempts=5,
            max_delay_s=30.0,
            sleep=rec.sleep,
            on_give_up=lambda reason, err: gave_up.append(reason),
        )
    assert rec.sleeps == [] and gave_up == ["retry_after"]


async def test_retry_call_rejects_zero_attempts() -> None:
    async def ok() -> int:
        return 1

    with pytest.raises(ValueError):
        await retry_call(ok, max_attempts=0)
