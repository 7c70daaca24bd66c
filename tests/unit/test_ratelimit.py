"""Token bucket maths, with time passed in explicitly."""

from __future__ import annotations

import json

import pytest

from providers.ratelimit import TokenBucket, bucket_key, partition_share

T0 = 1_700_000_000.0  # a wall-clock time


def test_new_bucket_grants_its_burst_then_refuses_with_the_wait_for_one_token() -> None:
    bucket = TokenBucket.full(rate=2.0, capacity=3, now=T0)
    assert [bucket.try_acquire(T0)[0] for _ in range(3)] == [True, True, True]
    granted, wait_s = bucket.try_acquire(T0)
    assert not granted, "a bucket emptied by its burst should refuse"
    assert wait_s == pytest.approx(0.5), "at 2 tokens/s one token takes 0.5 s"


def test_refill_follows_the_rate_and_stops_at_capacity() -> None:
    bucket = TokenBucket(rate=10.0, capacity=5, tokens=0, updated_at=T0)
    bucket.refill(T0 + 0.3)
    assert bucket.tokens == pytest.approx(3.0)
    bucket.refill(T0 + 100)
    assert bucket.tokens == 5, "tokens must never exceed capacity"


def test_waiting_the_advised_time_is_enough() -> None:
    bucket = TokenBucket(rate=0.1, capacity=1, tokens=0, updated_at=T0)
    granted, wait_s = bucket.try_acquire(T0)
    assert not granted and wait_s == pytest.approx(10.0)
    # 10 * 0.1 is a hair below 1.0 in floats; the permit must still be granted.
    assert bucket.try_acquire(T0 + wait_s) == (True, 0.0)


def test_acquiring_several_tokens_and_the_wait_for_the_missing_ones() -> None:
    bucket = TokenBucket(rate=1.0, capacity=10, tokens=2, updated_at=T0)
    granted, wait_s = bucket.try_acquire(T0, n=5)
    assert not granted and wait_s == pytest.approx(3.0)
    assert bucket.tokens == 2, "a refusal must not take tokens"
    assert bucket.try_acquire(T0 + 3, n=5) == (True, 0.0)
    assert bucket.tokens == pytest.approx(0.0)


def test_asking_for_more_than_capacity_is_an_error_not_an_endless_wait() -> None:
    bucket = TokenBucket.full(rate=1.0, capacity=2, now=T0)
    with pytest.raises(ValueError):
        bucket.try_acquire(T0, n=3)


def test_pause_refuses_until_its_end_and_empties_the_bucket() -> None:
    bucket = TokenBucket.full(rate=1.0, capacity=10, now=T0)
    bucket.pause_until(T0 + 30)
    granted, wait_s = bucket.try_acquire(T0 + 10)
    assert not granted
    assert wait_s == pytest.approx(21.0), "20 s of pause left, then one token at 1/s"
    assert bucket.available(T0 + 29) == 0.0
    # Nothing accrued during the pause: after it, tokens come at the steady rate, not a burst.
    assert bucket.available(T0 + 32) == pytest.approx(2.0)
    assert bucket.try_acquire(T0 + 31) == (True, 0.0)
    assert bucket.try_acquire(T0 + 31)[0] is False


def test_a_shorter_pause_does_not_cut_a_longer_one() -> None:
    bucket = TokenBucket.full(rate=1.0, capacity=1, now=T0)
    bucket.pause_until(T0 + 60)
    bucket.pause_until(T0 + 5)
    assert bucket.paused_until == T0 + 60
    assert bucket.is_paused(T0 + 59) and not bucket.is_paused(T0 + 60)


def test_restored_bucket_never_bursts_beyond_capacity_after_a_long_downtime() -> None:
    bucket = TokenBucket.full(rate=5.0, capacity=4, now=T0)
    for _ in range(4):
        bucket.try_acquire(T0)
    saved = json.loads(json.dumps(bucket.to_dict()))  # what the changelog stores

    restored = TokenBucket.from_dict(saved, rate=5.0, capacity=4, now=T0 + 86_400)
    grants = sum(restored.try_acquire(T0 + 86_400)[0] for _ in range(100))
    assert grants == 4, "a day of downtime must earn at most one burst (capacity)"


def test_restored_bucket_keeps_what_it_had_spent() -> None:
    bucket = TokenBucket.full(rate=1.0, capacity=10, now=T0)
    for _ in range(10):
        bucket.try_acquire(T0)
    restored = TokenBucket.from_dict(bucket.to_dict(), rate=1.0, capacity=10, now=T0 + 2)
    assert restored.tokens == pytest.approx(2.0), "a quick restart must not refill the bucket"


def test_restored_bucket_is_capped_by_a_lowered_capacity() -> None:
    saved = TokenBucket.full(rate=1.0, capacity=100, now=T0).to_dict()
    restored = TokenBucket.from_dict(saved, rate=1.0, capacity=10, now=T0)
    assert restored.tokens == 10


def test_restored_pause_still_holds() -> None:
    bucket = TokenBucket.full(rate=1.0, capacity=5, now=T0)
    bucket.pause_until(T0 + 120)
    restored = TokenBucket.from_dict(bucket.to_dict(), rate=1.0, capacity=5, now=T0 + 60)
    granted, wait_s = restored.try_acquire(T0 + 60)
    assert not granted and wait_s == pytest.approx(61.0)


def test_missing_or_unknown_state_gives_a_full_bucket() -> None:
    assert TokenBucket.from_dict(None, rate=1.0, capacity=3, now=T0).tokens == 3
    assert TokenBucket.from_dict({"v": 99}, rate=1.0, capacity=3, now=T0).tokens == 3


def test_clock_going_backwards_earns_nothing_and_does_not_stall() -> None:
    bucket = TokenBucket(rate=1.0, capacity=10, tokens=0, updated_at=T0)
    bucket.refill(T0 - 50)  # restored on a host whose clock is behind
    assert bucket.tokens == 0
    bucket.refill(T0 - 48)
    assert bucket.tokens == pytest.approx(2.0), "refill resumes from the new clock"


def test_invalid_settings_are_rejected() -> None:
    with pytest.raises(ValueError):
        TokenBucket.full(rate=0, capacity=1, now=T0)
    with pytest.raises(ValueError):
        TokenBucket.full(rate=1, capacity=0.5, now=T0)


def test_partition_share_splits_rate_so_the_sum_is_the_global_rate() -> None:
    rate, burst = partition_share(80.0, 40.0, 8)
    assert (rate, burst) == (10.0, 5.0)
    assert rate * 8 == 80.0


def test_partition_share_keeps_at_least_one_token_of_burst() -> None:
    rate, burst = partition_share(2.0, 4.0, 8)
    assert rate == 0.25
    assert burst == 1.0, "a partition with a burst below one token could never call"


def test_partition_share_rejects_nonsense() -> None:
    for args in [(1.0, 1.0, 0), (0.0, 1.0, 1), (1.0, 0.5, 1)]:
        with pytest.raises(ValueError):
            partition_share(*args)


def test_every_partition_bucket_together_stays_within_the_global_rate() -> None:
    rate, burst = partition_share(10.0, 8.0, 4)
    buckets = [TokenBucket.full(rate, burst, T0) for _ in range(4)]
    grants = 0
    now = T0
    for _ in range(6000):  # 60 s in 10 ms steps, every partition asking all the time
        now += 0.01
        grants += sum(b.try_acquire(now)[0] for b in buckets)
    assert grants <= 10.0 * 60 + 8, "all partitions together must not exceed R*t + burst"


def test_bucket_key_is_partition_scoped() -> None:
    assert bucket_key("spotify", 3) == "spotify/3"
