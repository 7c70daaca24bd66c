"""Reprocessor decides: park a dead letter, or wait for its retry time and replay it to tracks.raw.

The clock is injected and ``asyncio.sleep`` is replaced, so a wait of minutes takes no time: the
tests move the clock and let the waiting task run a few loop turns.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import pytest

from tests.unit.fakes import Event, Message, Sender
from trackflow.agents import reprocess
from trackflow.agents.deadletter import (
    ERROR_PREFIXES,
    H_HISTORY,
    H_PARKED_AT,
    H_PARKED_REASON,
    H_RAW_ATTEMPT,
    Failure,
    Origin,
    dead_letter_headers,
)
from trackflow.agents.reprocess import SLEEP_SLICE_S, Reprocessor
from trackflow.agents.retry_schedule import (
    ATTEMPTS_EXHAUSTED,
    DONE,
    NO_ERROR_HEADERS,
    NOT_RETRYABLE,
    WAITING,
    schedule_key,
)
from trackflow.streams.settings import DlqSettings, Settings

_real_sleep = asyncio.sleep

NOW = 1_700_000_000.0
NOW_MS = int(NOW * 1000)
NOT_BEFORE_MS = NOW_MS + 60_000
"""The retry time the dead letters below ask for: a minute after they failed."""
DLQ = DlqSettings(max_attempts=3, backoff_base_s=30, backoff_cap_s=600, breaker_jitter_s=0)
ORIGIN = Origin("tracks.raw", 3, 42, NOW_MS - 5_000, "trackflow")
CT = ("content-type", b"application/json")
VALUE = b'{"track_id": "t1", "artist": "A", "title": "B"}'
DLQ_PARTITION, DLQ_OFFSET = 0, 5
KEY = schedule_key(DLQ_PARTITION, DLQ_OFFSET)


class LowestRng:
    """Every draw is the lowest possible: no backoff jitter, no breaker jitter."""

    def uniform(self, a: float, b: float) -> float:
        return a


class FakeTime:
    """A clock the test moves, and a sleep that only yields to the loop and records the ask."""

    def __init__(self, now: float = NOW) -> None:
        self.now = now
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        await _real_sleep(0)


@pytest.fixture
def fake_time(monkeypatch: pytest.MonkeyPatch) -> FakeTime:
    fake = FakeTime()
    # _sleep_until calls asyncio.sleep through the module: replace it for this test only.
    monkeypatch.setattr(reprocess.asyncio, "sleep", fake.sleep)
    return fake


@pytest.fixture
def spawn() -> Iterator[Callable[[Coroutine[Any, Any, None]], asyncio.Task[None]]]:
    """Start a handle() in its own task, as InFlight does; cancelled if a test leaves it."""
    tasks: list[asyncio.Task[None]] = []

    def start(coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.ensure_future(coro)
        tasks.append(task)
        return task

    yield start
    for task in tasks:
        task.cancel()


async def _let_it_run(turns: int = 20) -> None:
    for _ in range(turns):
        await _real_sleep(0)


def _dead_letter(*, retryable: bool = True, attempt: int = 1,
                 not_before_ms: int | None = NOT_BEFORE_MS) -> Message:
    failure = Failure("provider:spotify", "TransientError", "503 from spotify",
                      "provider_unavailable", retryable, "spotify")
    headers = dead_letter_headers([CT], failure, ORIGIN, attempt=attempt, now_ms=NOW_MS,
                                  not_before_ms=not_before_ms if retryable else None)
    return Message(VALUE, b"t1", headers, topic="tracks.dlq", partition=DLQ_PARTITION,
                   offset=DLQ_OFFSET, timestamp=NOW)


class Breaker:
    """``breaker_open_until`` answering one time for every provider, and noting who asked."""

    def __init__(self, open_until: float = 0.0) -> None:
        self.open_until = open_until
        self.asked: list[tuple[str, int]] = []

    def __call__(self, provider: str, partition: int) -> float:
        self.asked.append((provider, partition))
        return self.open_until


def _reprocessor(sender: Sender, fake_time: FakeTime, table: dict[str, Any], *,
                 breaker: Breaker | None = None) -> Reprocessor:
    return Reprocessor(send=sender, settings=Settings(), dlq=DLQ, table=table,
                       breaker_open_until=breaker or Breaker(), clock=fake_time.clock,
                       rng=LowestRng())  # type: ignore[arg-type]


# --- parked ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(("msg", "reason"), [
    (_dead_letter(retryable=False), NOT_RETRYABLE),
    # max_attempts=3 passes in all: attempt 3 failed, a replay would be the fourth.
    (_dead_letter(attempt=3), ATTEMPTS_EXHAUSTED),
    (Message(VALUE, b"t1", [CT], topic="tracks.dlq", partition=DLQ_PARTITION,
             offset=DLQ_OFFSET), NO_ERROR_HEADERS),
], ids=["not-retryable", "attempts-exhausted", "no-error-headers"])
async def test_a_dead_letter_that_must_not_be_retried_is_parked_with_its_reason(
        fake_time: FakeTime, msg: Message, reason: str) -> None:
    sender, table = Sender(), {}
    await _reprocessor(sender, fake_time, table).handle(Event(msg))
    assert len(sender.sent) == 1, f"expected one parked record, got {sender.sent!r}"
    topic, key, value, headers = sender.sent[0]
    assert (topic, key, value) == ("tracks.dlq.parked", b"t1", VALUE), (
        "expected the dead letter's key and bytes on tracks.dlq.parked")
    assert headers == [*msg.headers, (H_PARKED_REASON, reason.encode()),
                       (H_PARKED_AT, str(NOW_MS).encode())], (
        f"expected every dead-letter header kept, then parked reason {reason} and the clock's "
        "time")
    assert table == {}, "a parked dead letter needs no schedule entry"
    assert fake_time.sleeps == [], "parking must not wait"


# --- scheduled and replayed -----------------------------------------------------------------------

async def test_a_retryable_dead_letter_waits_in_the_table_then_is_replayed_as_the_next_attempt(
        fake_time: FakeTime, spawn: Any) -> None:
    sender, table = Sender(clock=fake_time.clock), {}
    msg = _dead_letter(attempt=2)
    task = spawn(_reprocessor(sender, fake_time, table).handle(Event(msg)))
    await _let_it_run()
    assert sender.sent == [], "nothing may be replayed before the not-before time"
    assert table[KEY] == {"not_before": NOT_BEFORE_MS, "provider": "spotify", "attempt": 2,
                          "state": WAITING}, "expected a waiting schedule entry"

    fake_time.now = NOT_BEFORE_MS / 1000 - 0.5
    await _let_it_run()
    assert sender.sent == [], "half a second early is still too early"

    fake_time.now = NOT_BEFORE_MS / 1000
    await asyncio.wait_for(task, 1)
    assert len(sender.sent) == 1, f"expected one replay, got {sender.sent!r}"
    topic, key, value, headers = sender.sent[0]
    assert (topic, key, value) == ("tracks.raw", b"t1", VALUE), (
        "expected the original key and bytes back on tracks.raw")
    assert sender.sent_at == [NOT_BEFORE_MS / 1000]
    assert headers[0] == CT, "expected the original content-type kept"
    assert dict(headers)[H_RAW_ATTEMPT] == b"3", "attempt 2 failed: expected the replay as 3"
    assert not [k for k, _ in headers if k.startswith(ERROR_PREFIXES) and k != H_HISTORY], (
        "expected the error headers folded into the history on the replay")
    [entry] = json.loads(dict(headers)[H_HISTORY])
    assert (entry["attempt"], entry["stage"], entry["reason"]) == (
        2, "provider:spotify", "provider_unavailable"), "expected the failure in the history"
    assert table[KEY]["state"] == DONE, "expected the entry marked done after the replay"


async def test_a_long_wait_is_slept_in_slices_of_at_most_one_second(
        fake_time: FakeTime, spawn: Any) -> None:
    sender, table = Sender(), {}
    task = spawn(_reprocessor(sender, fake_time, table).handle(Event(_dead_letter())))
    await _let_it_run()
    fake_time.now = NOT_BEFORE_MS / 1000 - 0.25
    await _let_it_run()
    assert fake_time.sleeps, "expected the reprocessor to sleep while it waits"
    assert max(fake_time.sleeps) <= SLEEP_SLICE_S, "expected no single sleep over one second"
    assert fake_time.sleeps[-1] == pytest.approx(0.25), "expected the last slice to be what is left"
    fake_time.now = NOT_BEFORE_MS / 1000
    await asyncio.wait_for(task, 1)
    assert len(sender.sent) == 1


async def test_a_dead_letter_already_done_in_the_table_is_not_replayed_again(
        fake_time: FakeTime) -> None:
    fake_time.now = NOT_BEFORE_MS / 1000 + 3600  # long due
    done = {"not_before": NOT_BEFORE_MS, "provider": "spotify", "attempt": 1, "state": DONE}
    sender, table = Sender(), {KEY: dict(done)}
    await asyncio.wait_for(_reprocessor(sender, fake_time, table).handle(
        Event(_dead_letter())), 1)
    assert sender.sent == [], "a dead letter whose replay was published must not be replayed"
    assert table == {KEY: done}, "expected the done entry left as it was"


async def test_a_redelivered_waiting_dead_letter_keeps_the_retry_time_of_its_table_entry(
        fake_time: FakeTime, spawn: Any) -> None:
    first_time = NOT_BEFORE_MS + 120_000  # drawn before a restart, later than the header says
    waiting = {"not_before": first_time, "provider": "spotify", "attempt": 1, "state": WAITING}
    sender, table = Sender(), {KEY: dict(waiting)}
    task = spawn(_reprocessor(sender, fake_time, table).handle(Event(_dead_letter())))
    fake_time.now = NOT_BEFORE_MS / 1000
    await _let_it_run()
    assert sender.sent == [], "expected the table's retry time, not the header's, to count"
    assert table[KEY] == waiting, "expected the waiting entry not to be rewritten"
    fake_time.now = first_time / 1000
    await asyncio.wait_for(task, 1)
    assert [s[0] for s in sender.sent] == ["tracks.raw"], "expected one replay once due"


async def test_a_due_retry_waits_while_the_providers_breaker_is_open(
        fake_time: FakeTime, spawn: Any) -> None:
    breaker_until = NOT_BEFORE_MS / 1000 + 30
    breaker = Breaker(open_until=breaker_until)
    sender, table = Sender(clock=fake_time.clock), {}
    task = spawn(_reprocessor(sender, fake_time, table, breaker=breaker).handle(
        Event(_dead_letter())))
    fake_time.now = NOT_BEFORE_MS / 1000  # due, but spotify's breaker is open
    await _let_it_run()
    assert sender.sent == [], "nothing may be replayed while the provider's breaker is open"
    assert breaker.asked and set(breaker.asked) == {("spotify", ORIGIN.partition)}, (
        "expected the breaker asked for the failing provider on the original partition")
    assert table[KEY]["state"] == WAITING

    fake_time.now = breaker_until - 0.1
    await _let_it_run()
    assert sender.sent == [], "still open a tenth of a second before its end"

    fake_time.now = breaker_until
    await asyncio.wait_for(task, 1)
    assert [s[0] for s in sender.sent] == ["tracks.raw"], "expected the replay once it closed"
    assert sender.sent_at == [breaker_until]
    assert table[KEY]["state"] == DONE
