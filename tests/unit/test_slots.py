"""Interleaved slots: the whole app never calls a provider faster than its rate."""

from __future__ import annotations

import itertools
import random

import pytest

from trackflow.providers.ratelimit import next_slot, slot_time


def test_slots_of_all_partitions_are_at_least_one_interval_apart() -> None:
    rate, partitions = 1.0, 8
    rng = random.Random(1)
    taken: list[float] = []
    last: dict[int, float | None] = dict.fromkeys(range(partitions))
    now = 1_700_000_000.0
    for _ in range(400):
        p = rng.randrange(partitions)
        now += rng.random() * 0.3
        k = next_slot(now, rate=rate, partition=p, partitions=partitions, after=last[p])
        last[p] = slot_time(k, rate)
        assert k % partitions == p, "a slot must belong to the partition that takes it"
        assert slot_time(k, rate) >= now - 1e-9, "a slot is never in the past"
        taken.append(slot_time(k, rate))
    taken.sort()
    gaps = [b - a for a, b in itertools.pairwise(taken)]
    assert min(gaps) >= 1 / rate - 1e-9, f"two calls closer than 1/R: {min(gaps)}"


def test_a_partition_never_reuses_a_slot() -> None:
    k1 = next_slot(100.0, rate=10, partition=3, partitions=4)
    k2 = next_slot(100.0, rate=10, partition=3, partitions=4, after=slot_time(k1, 10))
    assert k2 == k1 + 4


def test_a_changed_rate_does_not_push_slots_into_the_future() -> None:
    now = 1_700_000_000.0
    k_fast = next_slot(now, rate=19.0, partition=0, partitions=2)
    k_slow = next_slot(now + 1, rate=18.0, partition=0, partitions=2,
                       after=slot_time(k_fast, 19.0))
    assert slot_time(k_slow, 18.0) - (now + 1) < 1.0, "a lower rate must not strand the partition"


def test_a_busy_partition_gets_its_share() -> None:
    rate, partitions = 50.0, 5
    after, now, calls = None, 0.0, 0
    while True:
        k = next_slot(now, rate=rate, partition=2, partitions=partitions, after=after)
        after = slot_time(k, rate)
        if slot_time(k, rate) >= 10.0:
            break
        calls += 1
    assert calls == pytest.approx(10 * rate / partitions, abs=1)
