"""The resilient gate with a fake clock: breaker, pacing, pauses, retries, persistence."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import random
from typing import Any

import pytest

from trackflow.providers.base import CallSpec
from trackflow.providers.breaker import State
from trackflow.providers.context import Priority, call_deadline, call_priority, enter_record
from trackflow.providers.errors import (
    BreakerOpen,
    FeatureUnavailable,
    NotFound,
    RateLimitWait,
    TransientError,
)
from trackflow.providers.gate import ResilientGate
from trackflow.providers.policy import BreakerConfig, ProviderPolicy


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


class CountingTable(dict[str, Any]):
    """A table that counts its writes (each one a changelog record in the worker)."""

    writes = 0

    def __setitem__(self, key: str, value: Any) -> None:
        self.writes += 1
        super().__setitem__(key, value)


async def test_calls_that_change_nothing_are_checkpointed_not_written_each() -> None:
    t = FakeTime()
    table = CountingTable()
    gate = make_gate(t, table, rate=100.0, state_checkpoint_s=5.0)
    enter_record(1)
    for _ in range(1000):  # 40 s of calls at the partition's 25/s
        await gate.run(SPEC, ok)
    # The first call writes the entry, then one checkpoint per 5 s: 9 of 1000 calls.
    assert 8 <= table.writes <= 10, table.writes


async def test_a_breaker_opening_is_written_at_once_whatever_the_checkpoint() -> None:
    t = FakeTime()
    table = CountingTable()
    gate = make_gate(t, table, state_checkpoint_s=3600.0)
    enter_record(2)
    await gate.run(SPEC, ok)
    written = table.writes
    for _ in range(5):
        with pytest.raises(TransientError):
            await gate.run(SPEC, failing())
    assert table.writes == written + 1, "the four failures before the trip are not written"
    assert make_gate(t, table).breaker_state(2) is State.OPEN


async def test_a_pause_is_written_at_once() -> None:
    t = FakeTime()
    table = CountingTable()
    gate = make_gate(t, table, state_checkpoint_s=3600.0)
    enter_record(0)
    await gate.run(SPEC, ok)
    with pytest.raises(TransientError):
        await gate.run(SPEC, failing("429", rate_limited=True, retry_after=30.0))
    assert table["spotify/0"]["paused_until"] >= t.now + 29


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
    from trackflow.providers.pacer import late_tolerance, paced_rate

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
    from trackflow.providers.pacer import paced_rate

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

    gate.pacer.sleep = sleep  # the waits for rate-limit slots block until released

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


class FakeLimiter:
    """The GCRA queue of providers.limiter in Python, on the fake clock; can go down."""

    def __init__(self, t: FakeTime, horizon_s: float = 5.0) -> None:
        self.t = t
        self.horizon_s = horizon_s
        self.tat = 0.0
        self.down = False
        self.floors: list[float] = []
        self._members = itertools.count()

    @property
    def available(self) -> bool:
        return not self.down

    async def reserve(self, provider: str, *, interval_s: float, ahead_s: float,
                      floor: float = 0.0, priority: Priority = Priority.FRESH) -> Any:
        """Below fresh, only the idle rule (no minimum shares: the real script's are tested
        against Redis in tests/integration/test_limiter_priority.py)."""
        from trackflow.providers.limiter import Reservation

        if self.down:
            return None
        self.floors.append(floor)
        now = self.t.now
        self.tat = max(self.tat, floor)
        slot = max(self.tat, now)
        lead = interval_s if priority is not Priority.FRESH else min(ahead_s, self.horizon_s)
        if slot - now > lead:
            return Reservation(False, slot - now, slot - now - lead)
        self.tat = slot + interval_s
        return Reservation(True, slot - now)

    def reach_s(self, interval_s: float) -> float:
        return self.horizon_s + 2 * interval_s

    async def commit(self, provider: str, *, limit: int, member: str = "",
                     hold_s: float = 0.0, window_s: float = 0.0) -> Any:
        """The log of calls sent: each call counts until its own end (``hold_s`` after its
        commit, or ``window_s`` for a gate that gives no hold)."""
        from trackflow.providers.limiter import Reservation

        if self.down:
            return None
        now = self.t.now
        self.sent = {m: end for m, end in getattr(self, "sent", {}).items() if end > now}
        if len(self.sent) >= limit:
            ends = sorted(self.sent.values())
            return Reservation(False, ends[len(ends) - limit] - now)
        self.sent[member or f"m{next(self._members)}"] = now + (hold_s or window_s)
        return Reservation(True, 0.0)

    async def settle(self, provider: str, *, member: str, shorten_s: float) -> None:
        if not self.down and member in getattr(self, "sent", {}) and shorten_s > 0:
            self.sent[member] -= shorten_s


def limited_gate(t: FakeTime, limiter: FakeLimiter, **policy: Any) -> ResilientGate:
    return ResilientGate("spotify", ProviderPolicy(**{"rate": 10.0, "rate_slack_s": 0.0,
                                                      "max_attempts": 1, **policy}),
                         partitions=8, state={}, clock=t.clock, sleep=t.sleep,
                         rng=random.Random(1), limiter=limiter)  # type: ignore[arg-type]


class VirtualTime(FakeTime):
    """A fake clock for concurrent callers: a sleep resumes when the clock reaches its end,
    and :meth:`run` moves the clock to the next wake-up once every caller is asleep."""

    def __init__(self) -> None:
        super().__init__()
        self._timers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    async def sleep(self, seconds: float) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._timers, (self.now + max(0.0, seconds), next(self._seq), fut))
        await fut

    async def run(self, *coros: Any) -> None:
        tasks = [asyncio.ensure_future(c) for c in coros]
        while not all(t.done() for t in tasks):
            for _ in range(20):  # let every caller run until it sleeps again
                await asyncio.sleep(0)
            if self._timers:
                when, _, fut = heapq.heappop(self._timers)
                self.now = max(self.now, when)
                fut.set_result(None)
        await asyncio.gather(*tasks)


async def against_a_provider(freeze_s: float) -> tuple[list[float], float]:
    """300 calls of 20 concurrent callers through the gate to a provider allowing 10 calls in
    any 1 s, which stops reading for ``freeze_s`` out of every 3 s (a frozen process, a busy
    machine) and stamps what arrived meanwhile when it wakes. Returns the times (s from the
    start) of the calls it counted over its limit, and how long the calls took."""
    from trackflow.providers.simulator.limits import SlidingWindowLimiter

    t = VirtualTime()
    start = t.now
    gate = limited_gate(t, FakeLimiter(t), rate=10.0, window_s=1.0, rate_slack_s=0.1)
    provider = SlidingWindowLimiter(limit=10, window_s=1.0)
    over: list[float] = []

    def read_at(at: float) -> float:
        phase = (at - start) % 3.0
        return at - phase + freeze_s if phase < freeze_s else at

    async def fetch() -> list[dict[str, str]]:
        await t.sleep(read_at(t.now + 0.005) - t.now)
        if not provider.check(t.now).allowed:
            over.append(round(t.now - start, 3))
        await t.sleep(0.01)
        return [{"id": "x"}]

    async def caller() -> None:
        enter_record(3)
        for _ in range(15):
            await gate.run(SPEC, fetch)

    await t.run(*(caller() for _ in range(20)))
    return over, t.now - start


async def test_a_provider_that_freezes_never_sees_more_than_its_limit() -> None:
    # With every call counted for the window plus the fixed 0.1 s slack only, the late stamps
    # bunch with the next window's prompt calls: 35 calls over the limit.
    over, _ = await against_a_provider(freeze_s=0.45)
    assert not over, (f"expected no call over the provider's 10 per 1 s, got {len(over)}, "
                      f"the first {over[:3]} s in")


async def test_a_prompt_provider_gets_the_rate_the_fixed_slack_allows() -> None:
    over, took = await against_a_provider(freeze_s=0.0)
    # 300 calls at 10 per 1.1 s: 29.9 s from the first to the last.
    assert not over and took < 300 * 0.11 + 0.1, (
        f"expected 300 calls in about 33 s with nothing over the limit, took {took:.2f} s, "
        f"{len(over)} over")


async def test_with_the_global_limiter_one_partition_gets_the_whole_rate() -> None:
    t = FakeTime()
    gate = limited_gate(t, FakeLimiter(t), rate_slack_s=0.1)
    enter_record(3)
    sent: list[float] = []

    async def stamp() -> list[dict[str, str]]:
        sent.append(t.now)
        return [{"id": "x"}]

    for _ in range(50):
        await gate.run(SPEC, stamp)
    gaps = [b - a for a, b in itertools.pairwise(sent)]
    # 10 calls per 1 s window, paced as if it were 1.1 s long.
    assert min(gaps) >= 0.11 - 1e-6, "calls must stay one interval apart"
    # Per-partition slots would give partition 3 of 8 one call per 0.88 s. On the fake clock
    # every 11th call meets the sent-log's window edge exactly and goes one slot later.
    assert (sent[-1] - sent[0]) / 49 < 0.11 * 1.1, "one partition must get the rate"


async def test_a_slot_beyond_the_horizon_is_asked_for_again_not_reserved() -> None:
    t = FakeTime()
    limiter = FakeLimiter(t, horizon_s=1.0)
    limiter.tat = t.now + 3.0  # the queue is 3 s long
    gate = limited_gate(t, limiter)
    enter_record(0)
    started = t.now
    await gate.run(SPEC, ok)
    assert t.now - started == pytest.approx(3.0), "the call leaves at the end of the queue"
    with call_deadline(t.now + 0.05), pytest.raises(RateLimitWait):
        limiter.tat = t.now + 2.0
        await gate.run(SPEC, ok)
    assert limiter.tat == pytest.approx(t.now + 2.0), "a refused call must not take a slot"


async def test_when_redis_is_gone_the_fallback_waits_out_the_horizon_then_paces_per_partition(
) -> None:
    t = FakeTime()
    limiter = FakeLimiter(t, horizon_s=5.0)
    gate = limited_gate(t, limiter, rate=8.0)
    enter_record(0)
    await gate.run(SPEC, ok)
    limiter.down = True
    down_at = t.now
    sent: list[float] = []

    async def stamp() -> list[dict[str, str]]:
        sent.append(t.now)
        return [{"id": "x"}]

    for _ in range(3):
        await gate.run(SPEC, stamp)
    assert sent[0] >= down_at + 5.0, "the fallback must not meet slots Redis handed out"
    assert [b - a for a, b in itertools.pairwise(sent)] == pytest.approx([1.0, 1.0]), \
        "the fallback gives partition 0 of 8 one slot in 8 at 8/s"
    limiter.down = False
    await gate.run(SPEC, ok)
    assert limiter.floors[-1] >= sent[-1] + 1 / 8 - 1e-6, \
        "back on Redis, the queue must start after the last fallback slot"


async def test_calls_below_fresh_take_only_slots_nobody_queued_for() -> None:
    t = FakeTime()
    limiter = FakeLimiter(t, horizon_s=5.0)
    gate = limited_gate(t, limiter)
    enter_record(0)
    limiter.tat = t.now + 3.0  # fresh calls have queued 3 s of slots
    asked: list[Priority] = []
    real = limiter.reserve

    async def spy(provider: str, **kw: Any) -> Any:
        asked.append(kw["priority"])
        return await real(provider, **kw)

    limiter.reserve = spy  # type: ignore[method-assign]
    with call_priority(Priority.REFRESH):
        await gate.run(SPEC, ok)
    assert asked[0] is Priority.REFRESH, "the call asks at its own priority"
    assert len(asked) >= 2, "refused while the queue was long, it asked again later"
    assert t.now >= 1_700_000_003.0 - 0.1, "it went only once the fresh calls' queue was gone"


async def test_a_caller_that_waited_its_turn_to_ask_is_not_woken_before_its_slot() -> None:
    from trackflow.providers.limiter import Reservation

    t = VirtualTime()

    class Turns(FakeLimiter):
        """Refuses the first ask for a second (its caller keeps the turn meanwhile), then
        grants slots half a second ahead; records when each call commits."""

        def __init__(self, t: FakeTime) -> None:
            super().__init__(t)
            self.asks = 0
            self.slots: list[float] = []
            self.commits: list[float] = []

        async def reserve(self, provider: str, **kw: Any) -> Any:
            self.asks += 1
            if self.asks == 1:
                return Reservation(False, 1.0, 1.0)
            self.slots.append(self.t.now + 0.5)
            return Reservation(True, 0.5)

        async def commit(self, provider: str, **kw: Any) -> Any:
            self.commits.append(self.t.now)
            return await super().commit(provider, **kw)

    limiter = Turns(t)
    gate = ResilientGate("spotify", ProviderPolicy(rate=10.0, rate_slack_s=0.0, max_attempts=1),
                         partitions=8, state={}, clock=t.clock, sleep=t.sleep,
                         rng=random.Random(1), limiter=limiter)  # type: ignore[arg-type]

    async def call() -> None:
        enter_record(0)
        with call_priority(Priority.REFRESH):
            await gate.run(SPEC, ok)

    await t.run(call(), call())
    # The second caller asked once the first gave its turn up, a second after it began to
    # wait: timed from its wait, it woke half a second early, found the calls before its slot
    # still counting on the provider's window and lost the slot (a quarter of the refreshes'
    # minimum share on a busy provider).
    assert len(limiter.commits) == 2
    assert all(c >= s - 1e-9 for c, s in zip(sorted(limiter.commits), sorted(limiter.slots),
                                               strict=True)), (limiter.commits, limiter.slots)


async def test_below_fresh_one_caller_at_a_time_asks_the_limiter() -> None:
    from trackflow.providers.limiter import Reservation

    class Counting(FakeLimiter):
        """Refuses the first asks, counting how many are in flight at once."""

        def __init__(self, t: FakeTime) -> None:
            super().__init__(t)
            self.active = self.most = self.asks = 0

        async def reserve(self, provider: str, **kw: Any) -> Any:
            self.active += 1
            self.most = max(self.most, self.active)
            self.asks += 1
            await asyncio.sleep(0.001)
            self.active -= 1
            if self.asks <= 30:
                return Reservation(False, 1.0, 0.002)
            return Reservation(True, 0.0)

    async def run(priority: Priority) -> int:
        t = FakeTime()
        limiter = Counting(t)
        # Real time here (the callers must interleave): the slack lets a call leave a little
        # after its commit.
        gate = ResilientGate("spotify", ProviderPolicy(rate=10.0, rate_slack_s=0.2,
                                                       max_attempts=1),
                             partitions=8, state={}, limiter=limiter,
                             rng=random.Random(1))

        async def call() -> None:
            enter_record(0)
            with call_priority(priority):
                await gate.run(SPEC, ok)

        await asyncio.gather(*(call() for _ in range(10)))
        return limiter.most

    assert await run(Priority.REFRESH) == 1, \
        "refreshes waiting for budget must take turns asking, not poll Redis all at once"
    assert await run(Priority.FRESH) > 1, "fresh calls ask at once (they reserve ahead)"
