"""Rate-limit window maths and the report counters, with an injected clock."""

from __future__ import annotations

import pytest

from trackflow.providers.simulator.limits import Recorder, SlidingWindowLimiter, WindowCounter


def test_window_counts_only_the_last_window_s() -> None:
    w = WindowCounter(1.0)
    for t in (0.0, 0.2, 0.5):
        w.add(t)
    assert w.count(0.9) == 3
    assert w.count(1.0) == 2, "an event exactly window_s old has left the window"
    assert w.count(1.6) == 0
    assert w.max_seen == 3


def test_limiter_admits_limit_then_rejects_until_the_oldest_leaves() -> None:
    lim = SlidingWindowLimiter(3, 10.0)
    assert [lim.check(t).allowed for t in (0.0, 1.0, 2.0)] == [True, True, True]
    rejected = lim.check(5.0)
    assert not rejected.allowed
    assert rejected.retry_after_s == pytest.approx(5.0)
    assert lim.check(9.99).allowed is False
    assert lim.check(10.0).allowed is True, "the request at 0.0 left the window at 10.0"
    assert lim.check(10.5).allowed is False


def test_rolling_window_differs_from_fixed_buckets() -> None:
    # A fixed 30 s bucket would allow 3 at t=29 and 3 more at t=31; a rolling window does not.
    lim = SlidingWindowLimiter(3, 30.0)
    assert all(lim.check(29.0 + i * 0.1).allowed for i in range(3))
    assert not lim.check(31.0).allowed
    assert lim.check(59.01).allowed


def test_count_rejected_keeps_a_hammering_client_blocked() -> None:
    lim = SlidingWindowLimiter(1, 1.0, count_rejected=True)
    assert lim.check(0.0).allowed
    for t in (0.5, 1.2, 1.9):  # every 0.7 s: never a clear second
        assert not lim.check(t).allowed
    assert lim.check(3.0).allowed


def test_decision_reports_used_and_remaining() -> None:
    lim = SlidingWindowLimiter(60, 60.0)
    for t in range(10):
        d = lim.check(float(t))
    assert (d.used, d.remaining) == (10, 50)


def test_recorder_report_counts_max_in_window_and_violations() -> None:
    rec = Recorder({"deezer": (2, 1.0, False)})
    for t in (0.0, 0.1, 0.2, 0.3, 1.5):
        rec.admit("deezer", "search", t)
    report = rec.report()["deezer"]
    assert report["requests"] == 5
    assert report["violations"] == 2
    assert report["max_in_window"] == 4
    assert report["max_accepted_in_window"] == 2
    assert (report["limit"], report["window_s"]) == (2, 1.0)
    rec.reset()
    assert rec.report()["deezer"]["requests"] == 0


def test_unenforced_requests_are_counted_but_never_violate() -> None:
    rec = Recorder({"spotify": (1, 1.0, False)})
    for t in (0.0, 0.1, 0.2):
        assert rec.admit("spotify", "search", t, enforce=False).allowed
    report = rec.report()["spotify"]
    assert (report["requests"], report["violations"], report["max_in_window"]) == (3, 0, 3)
