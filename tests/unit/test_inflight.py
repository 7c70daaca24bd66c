"""In-flight processing: acks strictly in offset order, per-key order, fatal errors stop."""

from __future__ import annotations

import asyncio
import contextvars
import random

import pytest

from trackflow.agents.inflight import InFlight, OffsetTracker


def test_tracker_releases_only_the_finished_prefix() -> None:
    t: OffsetTracker[int] = OffsetTracker()
    for off in (10, 11, 12, 13):
        t.start(off, off)
    assert t.finish(12) == [], "12 must wait for 10 and 11"
    assert t.finish(11) == []
    assert t.oldest_unfinished == 10
    assert t.finish(10) == [10, 11, 12]
    assert t.oldest_unfinished == 13
    assert t.finish(13) == [13]
    assert t.oldest_unfinished is None


def test_tracker_refuses_offsets_out_of_order() -> None:
    t: OffsetTracker[int] = OffsetTracker()
    t.start(5, 5)
    with pytest.raises(ValueError):
        t.start(5, 5)


async def test_acks_come_in_offset_order_although_work_finishes_out_of_order() -> None:
    acked: list[int] = []
    rng = random.Random(7)

    async def handler(offset: int) -> None:
        await asyncio.sleep(rng.random() / 100)

    async def fatal(exc: BaseException) -> None:
        raise AssertionError(f"no record should fail: {exc!r}")

    flight: InFlight[int] = InFlight(handler, acked.append, max_in_flight=16, on_fatal=fatal)
    for off in range(200):
        await flight.submit("p0", off, f"k{off % 7}", off)
    await flight.drain()
    assert acked == list(range(200)), "every record must be acked once, in offset order"


async def test_never_more_than_max_in_flight_per_partition() -> None:
    running = 0
    peak = 0

    async def handler(_: int) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.002)
        running -= 1

    async def fatal(exc: BaseException) -> None:
        raise AssertionError(exc)

    flight: InFlight[int] = InFlight(handler, lambda _: None, max_in_flight=4, on_fatal=fatal)
    for off in range(50):
        await flight.submit("p0", off, off, off)
    await flight.drain()
    assert peak == 4, f"expected at most 4 records in flight, saw {peak}"


async def test_records_with_the_same_key_finish_in_order() -> None:
    finished: list[int] = []

    async def handler(off: int) -> None:
        await asyncio.sleep(0.02 if off == 0 else 0)
        finished.append(off)

    async def fatal(exc: BaseException) -> None:
        raise AssertionError(exc)

    flight: InFlight[int] = InFlight(handler, lambda _: None, max_in_flight=8, on_fatal=fatal)
    await flight.submit("p0", 0, b"same", 0)
    await flight.submit("p0", 1, b"other", 1)
    await flight.submit("p0", 2, b"same", 2)
    await flight.drain()
    assert finished.index(0) < finished.index(2), "same key: offset 0 must finish before 2"
    assert finished[0] == 1, "a different key must not wait"


async def test_an_unhandled_error_is_fatal_and_the_record_is_not_acked() -> None:
    acked: list[int] = []
    fatal_seen: list[BaseException] = []

    async def handler(off: int) -> None:
        if off == 1:
            raise RuntimeError("bug")

    async def fatal(exc: BaseException) -> None:
        fatal_seen.append(exc)

    flight: InFlight[int] = InFlight(handler, acked.append, max_in_flight=8, on_fatal=fatal)
    for off in range(3):
        await flight.submit("p0", off, off, off)
    await flight.drain()
    assert acked == [0], "nothing at or after the failed offset may be acked"
    assert fatal_seen and isinstance(fatal_seen[0], RuntimeError)
    with pytest.raises(RuntimeError):
        await flight.submit("p0", 3, 3, 3)


async def test_revoked_partition_acks_nothing_more() -> None:
    acked: list[int] = []
    gate = asyncio.Event()

    async def handler(_: int) -> None:
        await gate.wait()

    async def fatal(exc: BaseException) -> None:
        raise AssertionError(exc)

    flight: InFlight[int] = InFlight(handler, acked.append, max_in_flight=8, on_fatal=fatal)
    await flight.submit("p0", 0, 0, 0)
    flight.revoke({"p0"})
    gate.set()
    await asyncio.sleep(0.01)
    assert acked == []


async def test_close_cancels_records_in_flight_without_acking_them() -> None:
    acked: list[int] = []
    started: list[int] = []
    finished_early = asyncio.Event()

    async def handler(n: int) -> None:
        started.append(n)
        if n == 0:
            finished_early.set()
            return
        await asyncio.sleep(3600)  # e.g. waiting for a rate-limit slot

    async def fatal(exc: BaseException) -> None:
        raise AssertionError(f"shutdown is not a failure: {exc!r}")

    flight: InFlight[int] = InFlight(handler, acked.append, max_in_flight=8, on_fatal=fatal)
    for n in range(3):
        await flight.submit("p0", n, n, n)
    await finished_early.wait()
    await asyncio.sleep(0)
    await asyncio.wait_for(flight.close(), 1.0)
    assert acked == [0], "only the record that finished before the shutdown is acked"
    assert flight.in_flight() == 0
    await flight.submit("p0", 3, 3, 3)
    await asyncio.sleep(0.01)
    assert started == [0, 1, 2], "nothing starts once closed"


async def test_a_full_partition_queues_instead_of_holding_up_the_others() -> None:
    release = {"slow": asyncio.Event(), "fast": asyncio.Event()}
    release["fast"].set()
    acked: list[tuple[str, int]] = []

    async def handler(item: tuple[str, int]) -> None:
        await release[item[0]].wait()

    async def fatal(exc: BaseException) -> None:
        raise AssertionError(exc)

    flight: InFlight[tuple[str, int]] = InFlight(handler, acked.append, max_in_flight=2,
                                                 max_queued=3, on_fatal=fatal)
    # The slow partition gets 2 running + 2 queued, and submit did not wait.
    for off in range(4):
        await asyncio.wait_for(flight.submit("slow", off, off, ("slow", off)), 0.1)
    for off in range(3):
        await asyncio.wait_for(flight.submit("fast", off, off, ("fast", off)), 0.1)
    await asyncio.sleep(0.01)
    assert acked == [("fast", 0), ("fast", 1), ("fast", 2)], "the other partition went on"
    assert flight.in_flight() == 4
    # One more queued record reaches max_queued; the next one for a full partition waits.
    await asyncio.wait_for(flight.submit("slow", 4, 4, ("slow", 4)), 0.1)
    blocked = asyncio.ensure_future(flight.submit("slow", 5, 5, ("slow", 5)))
    await asyncio.sleep(0.01)
    assert not blocked.done(), "memory is bounded: the stream waits once max_queued wait"
    release["slow"].set()
    await asyncio.wait_for(blocked, 1.0)
    await flight.drain()
    assert [a for a in acked if a[0] == "slow"] == [("slow", n) for n in range(6)]
    assert flight.in_flight() == 0


async def test_a_queued_record_runs_in_the_context_it_was_received_in() -> None:
    received_as: contextvars.ContextVar[int] = contextvars.ContextVar("received_as")
    seen: dict[int, int] = {}

    async def handler(n: int) -> None:
        await asyncio.sleep(0.001)
        seen[n] = received_as.get()

    async def fatal(exc: BaseException) -> None:
        raise AssertionError(exc)

    flight: InFlight[int] = InFlight(handler, lambda _: None, max_in_flight=1, on_fatal=fatal)
    for n in range(4):
        received_as.set(n)  # as Faust sets its current event before handing one over
        await flight.submit("p0", n, n, n)
    await flight.drain()
    assert seen == {0: 0, 1: 1, 2: 2, 3: 3}


async def test_an_offset_delivered_again_while_in_flight_is_ignored() -> None:
    release = asyncio.Event()
    handled: list[int] = []
    acked: list[int] = []

    async def handler(n: int) -> None:
        handled.append(n)
        await release.wait()

    async def fatal(exc: BaseException) -> None:
        raise AssertionError(exc)

    flight: InFlight[int] = InFlight(handler, acked.append, max_in_flight=4, on_fatal=fatal)
    for off in (0, 1, 2, 1, 2):  # 1 and 2 again, as after a seek back
        await flight.submit("p0", off, off, off)
    release.set()
    await flight.drain()
    assert handled == [0, 1, 2] and acked == [0, 1, 2]


class Inliner:
    """``inline`` for the tracker: even offsets are finished inline with an acknowledgement
    the test resolves (or fails), offsets in ``later`` get a coroutine, the rest None."""

    def __init__(self, later: set[int] = frozenset()) -> None:  # type: ignore[assignment]
        self.acks: dict[int, asyncio.Future[None]] = {}
        self.later = later
        self.recovered: list[tuple[int, BaseException]] = []
        self.handled: list[int] = []
        self.fail_recovery = False

    async def handler(self, off: int) -> None:
        self.handled.append(off)

    async def inline(self, off: int) -> asyncio.Future[None] | asyncio.Task[None] | object:
        if off in self.later:
            return self.handler(off)
        if off % 2:
            return None
        fut = self.acks[off] = asyncio.get_running_loop().create_future()
        return fut

    async def recover(self, off: int, exc: BaseException) -> None:
        if self.fail_recovery:
            raise RuntimeError("broker gone")
        self.recovered.append((off, exc))


async def _no_fatal(exc: BaseException) -> None:
    raise AssertionError(f"no record should fail: {exc!r}")


def _flight(inl: Inliner, acked: list[int], fatal: object = _no_fatal,
            max_in_flight: int = 64) -> InFlight[int]:
    return InFlight(inl.handler, acked.append, max_in_flight=max_in_flight,
                    on_fatal=fatal, inline=inl.inline, recover=inl.recover)  # type: ignore[arg-type]


async def test_records_finished_inline_are_acked_in_offset_order_with_the_others() -> None:
    inl, acked = Inliner(later={4}), []
    flight = _flight(inl, acked)
    for off in range(8):
        await flight.submit("p0", off, f"k{off}", off)
    await asyncio.sleep(0)
    assert acked == [], "offset 0 waits for its acknowledgement"
    for off in (6, 2):
        inl.acks[off].set_result(None)
    await asyncio.sleep(0)
    assert acked == [], "acknowledged out of order: still nothing before offset 0"
    inl.acks[0].set_result(None)
    await asyncio.sleep(0)
    assert acked[:4] == [0, 1, 2, 3]
    assert 4 not in inl.acks and 4 in inl.handled, "offset 4's coroutine ran as a task"
    await flight.drain()
    assert acked == list(range(8))
    assert sorted(inl.handled) == [1, 3, 4, 5, 7], "odd offsets (None) go to the handler"
    assert sorted(inl.acks) == [0, 2, 6]


async def test_a_key_with_a_running_task_is_not_finished_inline() -> None:
    inl, acked = Inliner(), []
    gate = asyncio.Event()

    async def slow(off: int) -> None:
        await gate.wait()
        inl.handled.append(off)

    flight: InFlight[int] = InFlight(slow, acked.append, max_in_flight=8, on_fatal=_no_fatal,
                                     inline=inl.inline, recover=inl.recover)
    await flight.submit("p0", 1, b"same", 1)  # odd: a task, held by the gate
    await flight.submit("p0", 2, b"same", 2)  # even, but its key has a running task
    await flight.submit("p0", 4, b"other", 4)
    assert sorted(inl.acks) == [4], "offset 2 must wait behind offset 1 of its key"
    gate.set()
    inl.acks[4].set_result(None)
    await flight.drain()
    assert inl.handled == [1, 2], "same key: offset 1 finishes before 2"
    assert acked == [1, 2, 4]


async def test_a_failed_acknowledgement_is_recovered_before_the_record_is_acked() -> None:
    inl, acked = Inliner(), []
    flight = _flight(inl, acked)
    for off in (0, 2):
        await flight.submit("p0", off, off, off)
    inl.acks[0].set_exception(ValueError("too large"))
    inl.acks[2].set_result(None)
    await flight.drain()
    assert [(o, type(e)) for o, e in inl.recovered] == [(0, ValueError)]
    assert acked == [0, 2]


async def test_a_failed_recovery_is_fatal_and_nothing_from_there_is_acked() -> None:
    inl, acked, fatal_seen = Inliner(), [], []

    async def fatal(exc: BaseException) -> None:
        fatal_seen.append(exc)

    inl.fail_recovery = True
    flight = _flight(inl, acked, fatal)
    for off in (0, 2, 4):
        await flight.submit("p0", off, off, off)
    inl.acks[0].set_result(None)
    inl.acks[2].set_exception(OSError("gone"))
    inl.acks[4].set_result(None)
    await flight.drain()
    assert acked == [0], "the record whose recovery failed, and those after it, stay unacked"
    assert fatal_seen and isinstance(fatal_seen[0], RuntimeError)


async def test_an_acknowledgement_after_a_revoke_acks_nothing() -> None:
    inl, acked = Inliner(), []
    flight = _flight(inl, acked)
    await flight.submit("p0", 0, 0, 0)
    await flight.submit("p0", 2, 2, 2)
    flight.revoke({"p0"})
    inl.acks[0].set_result(None)
    inl.acks[2].set_exception(OSError("gone"))
    await asyncio.sleep(0)
    await flight.drain()
    assert acked == [] and inl.recovered == [], "a revoked partition's new owner reads them"


async def test_inline_records_count_against_the_in_flight_bound() -> None:
    inl, acked = Inliner(), []
    flight = _flight(inl, acked, max_in_flight=2)
    for off in (0, 2, 4, 6):
        await flight.submit("p0", off, off, off)
    assert sorted(inl.acks) == [0, 2], "two in flight at most: the others wait in the queue"
    assert flight.in_flight() == 4
    inl.acks[0].set_result(None)
    inl.acks[2].set_result(None)
    await flight.drain()
    assert acked == [0, 2, 4, 6]
    assert inl.handled == [4, 6], "queued records start as tasks"


def test_inline_needs_a_recovery() -> None:
    with pytest.raises(ValueError):
        InFlight(Inliner().handler, lambda _: None, max_in_flight=1, on_fatal=_no_fatal,
                 inline=Inliner().inline)


async def test_background_records_take_no_place_of_the_others_and_are_bounded() -> None:
    release = asyncio.Event()
    running = {"background": 0, "fresh": 0}
    peak = 0
    handled: list[int] = []
    acked: list[int] = []

    async def handler(off: int) -> None:
        nonlocal peak
        kind = "background" if off < 20 else "fresh"
        running[kind] += 1
        peak = max(peak, running["background"])
        if kind == "background":
            await release.wait()
        handled.append(off)
        running[kind] -= 1

    flight: InFlight[int] = InFlight(handler, acked.append, max_in_flight=2, max_background=3,
                                     on_fatal=_no_fatal)
    for off in range(20):
        await asyncio.wait_for(flight.submit("p0", off, f"b{off}", off, background=True), 0.1)
    for off in range(20, 30):
        await asyncio.wait_for(flight.submit("p0", off, f"f{off}", off), 0.1)
    await asyncio.sleep(0.02)
    assert handled == list(range(20, 30)), "fresh records must run while background ones wait"
    assert peak == 3, f"expected 3 background records at most at once, saw {peak}"
    assert acked == [], "nothing passes the oldest unfinished record"
    release.set()
    await flight.drain()
    assert acked == list(range(30)), "every record acked once, in offset order"
    assert flight.in_flight() == 0


async def test_a_later_record_with_a_waiting_background_records_key_waits_for_it() -> None:
    release = asyncio.Event()
    order: list[str] = []

    async def handler(item: str) -> None:
        if item.startswith("replay"):
            await release.wait()
        order.append(item)

    flight: InFlight[str] = InFlight(handler, lambda _: None, max_in_flight=4, max_background=1,
                                     on_fatal=_no_fatal)
    await flight.submit("p0", 0, "other", "replay-other", background=True)
    await flight.submit("p0", 1, "k", "replay-k", background=True)  # waits for a place
    await flight.submit("p0", 2, "k", "fresh-k")
    await asyncio.sleep(0.01)
    assert order == [], "the fresh record of key k must wait for the replay of k"
    release.set()
    await flight.drain()
    assert order.index("replay-k") < order.index("fresh-k")


async def test_background_records_waiting_count_as_queued_and_bound_memory() -> None:
    release = asyncio.Event()

    async def handler(_: int) -> None:
        await release.wait()

    flight: InFlight[int] = InFlight(handler, lambda _: None, max_in_flight=4, max_queued=3,
                                     max_background=1, on_fatal=_no_fatal)
    for off in range(4):  # one running, three waiting
        await asyncio.wait_for(flight.submit("p0", off, None, off, background=True), 0.1)
    blocked = asyncio.ensure_future(flight.submit("p0", 4, None, 4, background=True))
    await asyncio.sleep(0.01)
    assert not blocked.done(), "the stream must wait once max_queued records wait"
    release.set()
    await asyncio.wait_for(blocked, 1.0)
    await flight.drain()


async def test_a_background_record_revoked_while_waiting_never_runs() -> None:
    release = asyncio.Event()
    handled: list[int] = []
    acked: list[int] = []

    async def handler(off: int) -> None:
        await release.wait()
        handled.append(off)

    flight: InFlight[int] = InFlight(handler, acked.append, max_in_flight=4, max_queued=2,
                                     max_background=1, on_fatal=_no_fatal)
    await flight.submit("p0", 0, None, 0, background=True)
    await flight.submit("p0", 1, None, 1, background=True)
    await flight.submit("p0", 2, None, 2, background=True)
    flight.revoke({"p0"})
    release.set()
    await asyncio.sleep(0.02)
    assert handled == [0], "only the record that had a place ran; the waiting ones never do"
    assert acked == [], "a revoked partition acks nothing"
    # The waiting records' count left with the partition: max_queued records fit again.
    for off in range(2):
        await asyncio.wait_for(flight.submit("p1", off, None, off, background=True), 0.1)
    await flight.drain()
