"""The transit bound: the longest commit-to-answer delay lately, within the slack and the cap."""

from __future__ import annotations

from trackflow.providers.transit import TransitBound


def test_quiet_calls_keep_the_configured_slack() -> None:
    b = TransitBound(floor_s=0.1, cap_s=2.0)
    for i in range(100):
        b.observe(i * 0.1, i * 0.1 + 0.03)
    assert b.bound(10.0) == 0.1, "delays shorter than the slack must not change the window"


def test_a_long_delay_widens_the_window_for_the_memory_then_no_longer() -> None:
    b = TransitBound(floor_s=0.1, cap_s=2.0, memory_s=30.0)
    b.observe(10.0, 10.45)
    b.observe(11.0, 11.2)
    assert abs(b.bound(12.0) - 0.45) < 1e-9
    assert abs(b.bound(40.5) - 0.2) < 1e-9, "expected the 0.45 s delay forgotten after 30 s"
    assert b.bound(41.3) == 0.1, "expected the slack once every long delay is forgotten"


def test_a_hung_call_widens_the_window_by_the_cap_at_most() -> None:
    b = TransitBound(floor_s=0.1, cap_s=2.0)
    b.observe(0.0, 15.0)
    assert b.longest(15.0) == 15.0
    assert b.bound(15.0) == 2.0
