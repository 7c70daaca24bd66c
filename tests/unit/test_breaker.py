"""Circuit breaker state machine, with time passed in explicitly."""

from __future__ import annotations

import json

import pytest

from trackflow.providers.breaker import CircuitBreaker, State, Transition
from trackflow.providers.policy import BreakerConfig

T0 = 1_700_000_000.0


def breaker(**overrides: float) -> CircuitBreaker:
    return CircuitBreaker(BreakerConfig(**overrides))  # type: ignore[arg-type]


def open_by_consecutive_failures(b: CircuitBreaker, now: float) -> Transition:
    transition = None
    for _ in range(b.config.consecutive_failures):
        assert b.allow(now).permitted
        transition = b.record_failure(now)
    assert transition is not None, "the breaker should have opened"
    return transition


def test_closed_breaker_permits_calls() -> None:
    decision = breaker().allow(T0)
    assert decision.permitted and decision.state is State.CLOSED and not decision.probe


def test_opens_on_consecutive_failures() -> None:
    b = breaker(consecutive_failures=3)
    assert b.record_failure(T0) is None
    assert b.record_failure(T0) is None
    transition = b.record_failure(T0)
    assert transition == Transition(State.CLOSED, State.OPEN, T0, "consecutive_failures")
    assert b.state is State.OPEN


def test_a_success_resets_the_consecutive_count() -> None:
    b = breaker(consecutive_failures=3, failure_rate_threshold=1.0)
    for _ in range(10):
        b.record_failure(T0)
        b.record_failure(T0)
        b.record_success(T0)
    assert b.state is State.CLOSED


def test_opens_on_failure_rate_once_minimum_calls_are_in_the_window() -> None:
    b = breaker(
        window_size=20, minimum_calls=5, failure_rate_threshold=0.5, consecutive_failures=99
    )
    # success, failure alternating: 50% failures
    assert b.record_success(T0) is None
    assert b.record_failure(T0) is None
    assert b.record_success(T0) is None
    assert b.record_failure(T0) is None, "4 calls are below the minimum of 5"
    transition = b.record_failure(T0)  # 3 of 5 failed
    assert transition is not None and transition.reason == "failure_rate"
    assert b.state is State.OPEN


def test_failure_rate_below_threshold_keeps_it_closed() -> None:
    b = breaker(
        window_size=20, minimum_calls=5, failure_rate_threshold=0.5, consecutive_failures=99
    )
    for _ in range(50):  # 1 failure in 3 calls
        b.record_success(T0)
        b.record_success(T0)
        b.record_failure(T0)
    assert b.state is State.CLOSED
    assert b.failure_rate() == pytest.approx(7 / 20, abs=0.06)


def test_window_slides_old_failures_out() -> None:
    b = breaker(window_size=4, minimum_calls=4, failure_rate_threshold=0.75, consecutive_failures=9)
    for outcome in ["f", "f", "s", "s", "s", "f", "f"]:
        (b.record_failure if outcome == "f" else b.record_success)(T0)
    # window now s, s, f, f: 50% though 4 of 7 calls failed overall
    assert b.state is State.CLOSED
    assert b.failure_rate() == 0.5


def test_opens_on_slow_call_rate() -> None:
    b = breaker(slow_call_s=2.0, slow_call_rate_threshold=0.8, minimum_calls=5)
    for _ in range(3):
        b.record_success(T0, duration_s=3.0)
    b.record_success(T0, duration_s=0.1)
    assert b.state is State.CLOSED
    transition = b.record_success(T0, duration_s=2.0)  # 4 of 5 slow, 80%
    assert transition is not None and transition.reason == "slow_call_rate"


def test_not_found_answers_recorded_as_success_never_open_it() -> None:
    b = breaker()
    for _ in range(100):
        b.record_success(T0)  # what a NotFound is recorded as
        b.record_neutral()  # what a FeatureUnavailable is recorded as
    assert b.state is State.CLOSED and b.failure_rate() == 0.0


def test_open_breaker_refuses_with_the_time_left() -> None:
    b = breaker(open_base_s=5.0)
    open_by_consecutive_failures(b, T0)
    decision = b.allow(T0 + 2)
    assert not decision.permitted
    assert decision.wait_s == pytest.approx(3.0)
    assert decision.state is State.OPEN


def test_half_open_after_the_open_period_limits_probes_in_flight() -> None:
    b = breaker(open_base_s=5.0, half_open_max_probes=2)
    open_by_consecutive_failures(b, T0)
    first = b.allow(T0 + 5)
    assert first.permitted and first.probe
    assert first.transition == Transition(State.OPEN, State.HALF_OPEN, T0 + 5, "open_elapsed")
    second = b.allow(T0 + 5)
    assert second.permitted and second.probe and second.transition is None
    third = b.allow(T0 + 5)
    assert not third.permitted, "only 2 probes may be in flight"
    assert third.state is State.HALF_OPEN and third.wait_s > 0
    b.release_probe()
    assert b.allow(T0 + 5).permitted, "a released probe slot can be used again"


def test_half_open_closes_after_k_successful_probes() -> None:
    b = breaker(half_open_max_probes=1, half_open_successes=2)
    open_by_consecutive_failures(b, T0)
    assert b.allow(T0 + 5).permitted
    assert b.record_success(T0 + 5.1) is None
    assert b.allow(T0 + 5.2).permitted
    transition = b.record_success(T0 + 5.3)
    assert transition == Transition(State.HALF_OPEN, State.CLOSED, T0 + 5.3, "probes_succeeded")
    assert b.allow(T0 + 5.4) == (True, 0.0, State.CLOSED, False, None)


def test_a_failed_probe_reopens_with_a_doubled_open_period() -> None:
    b = breaker(open_base_s=5.0, open_cap_s=300.0)
    open_by_consecutive_failures(b, T0)
    assert b.open_until == T0 + 5
    now = T0
    expected = [10.0, 20.0, 40.0, 80.0, 160.0, 300.0, 300.0]
    for period in expected:
        now = b.open_until
        assert b.allow(now).probe
        transition = b.record_failure(now)
        assert transition is not None and transition.reason == "probe_failed"
        assert b.open_until - now == pytest.approx(period)


def test_closing_resets_the_open_backoff() -> None:
    b = breaker(open_base_s=5.0, half_open_successes=1)
    open_by_consecutive_failures(b, T0)
    b.allow(T0 + 5)
    b.record_failure(T0 + 5)  # second trip: 10 s
    b.allow(T0 + 15)
    b.record_success(T0 + 15)
    assert b.state is State.CLOSED
    open_by_consecutive_failures(b, T0 + 20)
    assert b.open_until == T0 + 25, "after a recovery the first open period is the base again"


def test_retry_after_longer_than_the_backoff_wins() -> None:
    b = breaker(consecutive_failures=1, open_base_s=5.0)
    b.record_failure(T0, retry_after=120.0)
    assert b.open_until == T0 + 120
    assert b.allow(T0 + 60).wait_s == pytest.approx(60.0)


def test_retry_after_shorter_than_the_backoff_does_not_shorten_it() -> None:
    b = breaker(consecutive_failures=1, open_base_s=5.0)
    b.record_failure(T0, retry_after=1.0)
    assert b.open_until == T0 + 5


def test_retry_after_reaching_an_open_breaker_extends_it() -> None:
    b = breaker(consecutive_failures=1, open_base_s=5.0)
    b.record_failure(T0)
    assert b.record_failure(T0 + 1, retry_after=30.0) is None
    assert b.open_until == T0 + 31


def test_absurd_retry_after_is_clamped() -> None:
    b = breaker(consecutive_failures=1, max_retry_after_s=3600.0)
    b.record_failure(T0, retry_after=1e12)
    assert b.open_until == T0 + 3600


def test_late_answers_while_open_do_not_close_it() -> None:
    b = breaker()
    open_by_consecutive_failures(b, T0)
    assert b.record_success(T0 + 1) is None
    assert b.state is State.OPEN


def test_late_answer_in_half_open_without_probes_is_ignored() -> None:
    b = breaker(half_open_successes=1)
    open_by_consecutive_failures(b, T0)
    b.allow(T0 + 5)
    b.release_probe()
    assert b.record_success(T0 + 5) is None, "not a probe: must not close"
    assert b.record_failure(T0 + 5) is None, "not a probe: must not reopen"
    assert b.state is State.HALF_OPEN


def test_a_slow_probe_counts_as_a_failed_probe() -> None:
    b = breaker(slow_call_s=2.0)
    open_by_consecutive_failures(b, T0)
    b.allow(T0 + 5)
    transition = b.record_success(T0 + 8, duration_s=3.0)
    assert transition is not None and transition.to_state is State.OPEN


def test_lost_probe_slots_are_freed_after_the_probe_timeout() -> None:
    b = breaker(half_open_max_probes=1, probe_timeout_s=60.0)
    open_by_consecutive_failures(b, T0)
    assert b.allow(T0 + 5).permitted  # this caller never reports back
    assert not b.allow(T0 + 30).permitted
    assert b.allow(T0 + 66).permitted, "a probe lost for longer than the timeout frees its slot"


def test_open_state_survives_a_round_trip_through_the_table() -> None:
    b = breaker(open_base_s=5.0)
    open_by_consecutive_failures(b, T0)
    b.allow(T0 + 5)
    b.record_failure(T0 + 5)  # second trip
    saved = json.loads(json.dumps(b.to_dict()))

    restored = CircuitBreaker.from_dict(saved, b.config)
    assert restored.state is State.OPEN
    assert restored.open_until == T0 + 15
    assert restored.trips == 2
    assert not restored.allow(T0 + 10).permitted, "a restarted worker must not hammer the provider"
    assert restored.allow(T0 + 15).probe
    restored.record_failure(T0 + 15)
    assert restored.open_until == T0 + 35, "the backoff carries on from the restored trip count"


def test_half_open_round_trip_drops_probes_that_died_with_the_process() -> None:
    b = breaker(half_open_max_probes=1, half_open_successes=2)
    open_by_consecutive_failures(b, T0)
    b.allow(T0 + 5)
    b.record_success(T0 + 5)
    b.allow(T0 + 6)  # in flight when the worker died
    restored = CircuitBreaker.from_dict(b.to_dict(), b.config)
    assert restored.state is State.HALF_OPEN and restored.probe_successes == 1
    assert restored.allow(T0 + 7).permitted, "the dead probe's slot must not stay taken"


def test_closed_window_survives_a_round_trip() -> None:
    b = breaker(consecutive_failures=99)
    for outcome in [True, False, True, True]:
        (b.record_success if outcome else b.record_failure)(T0, duration_s=6.0)
    restored = CircuitBreaker.from_dict(b.to_dict(), b.config)
    assert restored.failure_rate() == 0.25
    assert restored.slow_call_rate() == 1.0
    assert restored.record_failure(T0) is not None, "5th call, 2/5 failed and all slow"


def test_missing_or_unknown_state_gives_a_closed_breaker() -> None:
    assert CircuitBreaker.from_dict(None).state is State.CLOSED
    assert CircuitBreaker.from_dict({"v": 42, "state": "open"}).state is State.CLOSED


def test_invalid_config_is_rejected() -> None:
    with pytest.raises(ValueError):
        BreakerConfig(minimum_calls=30, window_size=20)
    with pytest.raises(ValueError):
        BreakerConfig(failure_rate_threshold=0)
    with pytest.raises(ValueError):
        BreakerConfig(half_open_max_probes=0)
