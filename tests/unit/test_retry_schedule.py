"""The DLQ retry schedule: park or retry, when, the history header, and which entries to forget."""

from __future__ import annotations

import json
import math
import random

import pytest

from trackflow.agents.deadletter import (
    H_HISTORY,
    H_PARKED_AT,
    H_PARKED_REASON,
    H_RAW_ATTEMPT,
    MAX_HISTORY,
    Failure,
    Origin,
    dead_letter_headers,
    extend_history,
    parked_headers,
    replay_headers,
)
from trackflow.agents.retry_schedule import (
    ATTEMPTS_EXHAUSTED,
    BAD_ERROR_HEADERS,
    DONE,
    NO_ERROR_HEADERS,
    NOT_RETRYABLE,
    WAITING,
    DlqSettings,
    Park,
    Retry,
    Waiting,
    breaker_wait_s,
    decide,
    done_entry,
    parse_key,
    prunable,
    schedule_key,
    waiting_entry,
)

SETTINGS = DlqSettings(max_attempts=5, backoff_base_s=30, backoff_cap_s=3600)
ORIGIN = Origin("tracks.raw", 3, 42, 1_000, "trackflow")
CT = ("content-type", b"application/json")


def dead_letter(*, retryable: bool = True, attempt: int = 1, now_ms: int = 1_000_000,
                not_before_ms: int | None = None,
                extra: list[tuple[str, bytes]] | None = None) -> list[tuple[str, bytes]]:
    failure = Failure("provider:spotify", "TransientError", "503", "provider_unavailable",
                      retryable, "spotify" if retryable else None)
    return dead_letter_headers([CT, *(extra or [])], failure, ORIGIN, attempt=attempt,
                               now_ms=now_ms, not_before_ms=not_before_ms)


def test_not_retryable_is_parked() -> None:
    assert decide(dead_letter(retryable=False), SETTINGS, now_ms=0) == Park(NOT_RETRYABLE)


def test_the_last_attempt_is_parked_and_the_one_before_is_retried() -> None:
    assert decide(dead_letter(attempt=5), SETTINGS, now_ms=0) == Park(ATTEMPTS_EXHAUSTED)
    assert decide(dead_letter(attempt=9), SETTINGS, now_ms=0) == Park(ATTEMPTS_EXHAUSTED)
    assert isinstance(decide(dead_letter(attempt=4), SETTINGS, now_ms=0), Retry)


def test_a_record_without_error_headers_is_parked_not_dropped() -> None:
    assert decide([], SETTINGS, now_ms=0) == Park(NO_ERROR_HEADERS)
    assert decide(None, SETTINGS, now_ms=0) == Park(NO_ERROR_HEADERS)
    assert decide([CT], SETTINGS, now_ms=0) == Park(NO_ERROR_HEADERS)


def test_an_unreadable_attempt_is_parked_rather_than_retried_for_ever() -> None:
    headers = [(k, b"many" if k == "trackflow.errors.attempt" else v) for k, v in dead_letter()]
    assert decide(headers, SETTINGS, now_ms=0) == Park(BAD_ERROR_HEADERS)


@pytest.mark.parametrize("attempt", [1, 2, 3, 4])
def test_retry_time_is_last_failure_plus_full_jitter_backoff(attempt: int) -> None:
    rng = random.Random(attempt)
    ceiling_ms = min(3600, 30 * 2 ** (attempt - 1)) * 1000
    times = []
    for _ in range(300):
        d = decide(dead_letter(attempt=attempt, now_ms=1_000_000), SETTINGS, now_ms=5_000_000,
                   rng=rng)
        assert isinstance(d, Retry)
        assert d.attempt == attempt and d.provider == "spotify" and d.partition == 3
        times.append(d.not_before_ms)
    assert min(times) >= 1_000_000, "a retry must never be due before the failure"
    assert max(times) <= 1_000_000 + ceiling_ms, f"attempt {attempt} must wait <= {ceiling_ms} ms"
    # Full jitter: the draws spread over the whole range instead of clustering at the ceiling.
    assert min(times) < 1_000_000 + ceiling_ms * 0.1 < 1_000_000 + ceiling_ms * 0.9 < max(times)


def test_the_cap_bounds_late_attempts() -> None:
    settings = DlqSettings(max_attempts=50, backoff_base_s=30, backoff_cap_s=60)
    d = decide(dead_letter(attempt=20, now_ms=0), settings, now_ms=0, rng=random.Random(1))
    assert isinstance(d, Retry) and d.not_before_ms <= 60_000


def test_a_later_not_before_header_wins() -> None:
    d = decide(dead_letter(now_ms=1_000_000, not_before_ms=9_000_000), SETTINGS, now_ms=0,
               rng=random.Random(0))
    assert isinstance(d, Retry) and d.not_before_ms == 9_000_000


def test_an_earlier_not_before_header_does_not_shorten_the_backoff() -> None:
    class Top:
        def uniform(self, a: float, b: float) -> float:
            return b

    d = decide(dead_letter(now_ms=1_000_000, not_before_ms=1_000_001), SETTINGS, now_ms=0,
               rng=Top())
    assert isinstance(d, Retry) and d.not_before_ms == 1_030_000


def test_breaker_wait_is_zero_when_closed_and_spread_when_open() -> None:
    assert breaker_wait_s(0.0, 100.0, 2.0, random.Random(0)) == 0.0
    assert breaker_wait_s(99.0, 100.0, 2.0, random.Random(0)) == 0.0
    waits = [breaker_wait_s(110.0, 100.0, 2.0, random.Random(i)) for i in range(50)]
    assert all(10.0 <= w <= 12.0 for w in waits)
    assert len(set(waits)) > 1, "waits after an open breaker must be jittered"


def test_schedule_keys_are_partition_scoped() -> None:
    assert schedule_key(3, 42) == "3/42"
    assert parse_key("3/42") == (3, 42)
    assert parse_key("spotify/3") is None
    assert parse_key("nope") is None


def test_entries_go_from_waiting_to_done() -> None:
    entry = waiting_entry(Retry(2, 1_234, "deezer", 1))
    assert entry == {"not_before": 1_234, "provider": "deezer", "attempt": 2, "state": WAITING}
    assert done_entry(entry)["state"] == DONE
    assert json.loads(json.dumps(entry)) == entry, "entries must survive the JSON changelog"


def test_only_done_entries_below_the_oldest_unfinished_offset_are_pruned() -> None:
    states = {10: DONE, 11: WAITING, 12: DONE, 13: DONE, 14: WAITING}
    assert prunable(states, oldest_unfinished=13) == [10, 12]
    assert prunable(states, oldest_unfinished=11) == [10]
    assert prunable(states, oldest_unfinished=10) == []
    # Unknown bound (nothing registered in flight): keep everything.
    assert prunable(states, oldest_unfinished=None) == []


def test_waiting_entries_below_the_committed_position_are_stale() -> None:
    # Offset 11 was committed past before a crash: only its "done" write was lost.
    states = {10: DONE, 11: WAITING, 14: WAITING}
    assert prunable(states, oldest_unfinished=14, first_delivered=12) == [10, 11]
    assert prunable(states, oldest_unfinished=14, first_delivered=11) == [10]


def test_replay_headers_keep_content_type_raise_the_attempt_and_carry_the_history() -> None:
    out = replay_headers(dead_letter(attempt=2, now_ms=7_000, extra=[(H_RAW_ATTEMPT, b"2")]),
                         attempt=3)
    assert CT in out, "content-type must survive a replay"
    assert [v for k, v in out if k == H_RAW_ATTEMPT] == [b"3"]
    assert not [k for k, _ in out if k.startswith("__connect.errors.")]
    assert [k for k, _ in out if k.startswith("trackflow.errors.")] == [H_HISTORY]
    history = json.loads(dict(out)[H_HISTORY])
    assert history == [{"attempt": 2, "stage": "provider:spotify",
                        "reason": "provider_unavailable", "error_class": "TransientError",
                        "at_ms": 7_000}]


def test_history_survives_a_second_failure_and_grows() -> None:
    first = replay_headers(dead_letter(attempt=1, now_ms=1_000), attempt=2)
    # The replayed record fails again: the enrichment agent dead-letters it with its headers.
    second_dl = dead_letter_headers(first, Failure("provider:deezer", "TransientError", "timeout",
                                                   "timeout", True, "deezer"),
                                    ORIGIN, attempt=2, now_ms=2_000)
    assert sum(1 for k, _ in second_dl if k == H_HISTORY) == 1
    history = json.loads(dict(replay_headers(second_dl, attempt=3))[H_HISTORY])
    assert [(e["attempt"], e["stage"], e["at_ms"]) for e in history] == [
        (1, "provider:spotify", 1_000), (2, "provider:deezer", 2_000)]


def test_history_is_capped_at_the_last_ten() -> None:
    headers = dead_letter(attempt=1, now_ms=0)
    for attempt in range(2, 16):
        headers = dead_letter_headers(replay_headers(headers, attempt=attempt),
                                      Failure("validate", "X", "m", f"r{attempt}", True),
                                      ORIGIN, attempt=attempt, now_ms=attempt)
    history = json.loads(extend_history(headers))
    assert len(history) == MAX_HISTORY
    assert [e["attempt"] for e in history] == list(range(6, 16)), "the newest ten must be kept"


def test_an_unreadable_history_is_started_afresh() -> None:
    history = json.loads(extend_history([*dead_letter(), (H_HISTORY, b"{not json")]))
    assert len(history) == 1


def test_parked_headers_keep_everything_and_say_why() -> None:
    headers = dead_letter(retryable=False)
    out = parked_headers(headers, reason=NOT_RETRYABLE, now_ms=123)
    assert out[:len(headers)] == headers
    assert dict(out)[H_PARKED_REASON] == b"not_retryable"
    assert dict(out)[H_PARKED_AT] == b"123"


def test_the_oldest_waiting_letter_is_found_as_letters_come_and_go() -> None:
    rng = random.Random(7)
    waiting = Waiting()
    model: dict[tuple[int, int], float] = {}
    for step in range(20_000):
        key = (rng.randrange(4), rng.randrange(500))
        if rng.random() < 0.55:
            since = rng.uniform(0, 1000)
            waiting.add(key, since)
            model[key] = since
        else:
            waiting.discard(key)
            model.pop(key, None)
        assert len(waiting) == len(model)
        assert waiting.oldest() == min(model.values(), default=None), step
    assert len(waiting._heap) <= 2 * len(model) + 65, "stale entries are dropped"


class Counted(float):
    """A time that counts how often it is compared."""

    comparisons = 0

    def __lt__(self, other: object) -> bool:
        Counted.comparisons += 1
        return float(self) < float(other)  # type: ignore[arg-type]

    def __eq__(self, other: object) -> bool:
        Counted.comparisons += 1
        return float(self) == other

    __hash__ = float.__hash__


def test_oldest_does_not_scan_every_waiting_letter() -> None:
    n = 20_000
    waiting = Waiting()
    for offset in range(n):
        waiting.add((0, offset), Counted(offset))
    Counted.comparisons = 0
    for offset in range(n):  # letters leave in order, the gauge read after each
        waiting.discard((0, offset))
        waiting.oldest()
    assert waiting.oldest() is None
    # A scan per read is n * n / 2 = 2e8 comparisons; the heap's pops are about n * log2(n).
    assert Counted.comparisons < 4 * n * math.log2(n), Counted.comparisons
