"""Token-bucket rate limiting as pure state: no I/O, no asyncio, time passed in as ``now``.

A :class:`TokenBucket` holds ``rate`` tokens per second up to ``capacity`` (the burst). The gate
asks :meth:`TokenBucket.try_acquire` for a permit and, when refused, sleeps the ``wait_s`` it is
told. A 429/503/quota answer pauses the provider with :meth:`TokenBucket.pause_until` (until
Retry-After, or a backoff when the answer gives none) and empties the bucket, so traffic resumes
at the steady rate instead of in a burst.

State survives restarts: it lives in a changelogged Faust table, one entry per provider and
partition (:func:`bucket_key`, e.g. ``spotify/3``), as the dict :meth:`TokenBucket.to_dict`
returns. Times are wall-clock seconds (``time.time()``) because the state crosses processes.
Rate and capacity are not stored: they come from the current settings on restore, so a lowered
limit applies at once. A restored bucket never grants more than ``capacity`` however long the
worker was down, and a clock that went backwards refills nothing.

Splitting a global limit. A provider allows R calls per second for our whole app. Every topic
partition gets its own bucket with rate R/P and burst B/P (:func:`partition_share`): whichever
worker owns a partition owns its bucket, so the sum never exceeds R however many workers run and
however partitions move in a rebalance. The trade-off: budget is stranded on idle partitions. With
traffic on 2 of 8 partitions the app uses at most 2R/8 of the limit; skewed keys make it worse. The
alternative (a shared counter in Redis) needs a round trip per call and fails with Redis; here a
stranded budget only makes us slower, never over the limit. Choose P (and the key spread) so
partitions are busy alike. The burst per partition is at least one token, otherwise a partition
could never call; with B < P the bursts sum to P, the long-run rate still to R.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

# Float refills such as 10 * 0.1 land a hair below 1.0; a permit must not be refused for that.
_EPSILON = 1e-9

# Bumped when the dict layout changes; from_dict accepts what it knows.
_STATE_VERSION = 1


def partition_share(rate: float, burst: float, partitions: int) -> tuple[float, float]:
    """Split a global ``rate`` (per second) and ``burst`` evenly over ``partitions`` buckets.

    Returns ``(rate_per_partition, burst_per_partition)``; the burst is at least one token.
    """
    if partitions < 1:
        raise ValueError(f"partitions must be at least 1, got {partitions}")
    if rate <= 0:
        raise ValueError(f"rate must be positive, got {rate}")
    if burst < 1:
        raise ValueError(f"burst must be at least 1, got {burst}")
    return rate / partitions, max(1.0, burst / partitions)


def bucket_key(provider: str, partition: int) -> str:
    """Table key of one provider's bucket for one partition (always written from that partition)."""
    return f"{provider}/{partition}"


@dataclass(slots=True)
class TokenBucket:
    """A token bucket. Methods change it in place; write it back to the table after each change."""

    rate: float
    """Tokens added per second."""
    capacity: float
    """Most tokens the bucket holds: the burst."""
    tokens: float
    """Tokens available at ``updated_at``."""
    updated_at: float
    """Wall-clock time (seconds) the tokens were last brought up to date."""
    paused_until: float = 0.0
    """No permits, and no refill, before this wall-clock time (a limited answer paused us)."""

    def __post_init__(self) -> None:
        if self.rate <= 0 or not math.isfinite(self.rate):
            raise ValueError(f"rate must be a positive number, got {self.rate}")
        if self.capacity < 1 or not math.isfinite(self.capacity):
            raise ValueError(f"capacity must be at least 1, got {self.capacity}")
        self.tokens = min(max(self.tokens, 0.0), self.capacity)

    @classmethod
    def full(cls, rate: float, capacity: float, now: float) -> TokenBucket:
        """A new bucket holding ``capacity`` tokens (a provider nobody has called yet)."""
        return cls(rate=rate, capacity=capacity, tokens=capacity, updated_at=now)

    def refill(self, now: float) -> None:
        """Add the tokens earned since ``updated_at`` (none while paused), up to ``capacity``."""
        start = max(self.updated_at, self.paused_until)
        if now > start:
            self.tokens = min(self.capacity, self.tokens + (now - start) * self.rate)
        # A clock that went backwards moves updated_at back too: the skew earns nothing, and
        # refilling resumes from the new clock instead of stalling until the old time comes back.
        self.updated_at = now

    def available(self, now: float) -> float:
        """Tokens a permit could use at ``now``, without changing the bucket (for gauges)."""
        if now < self.paused_until:
            return 0.0
        start = max(self.updated_at, self.paused_until)
        return min(self.capacity, self.tokens + max(0.0, now - start) * self.rate)

    def wait_time(self, now: float, n: float = 1) -> float:
        """Seconds from ``now`` until ``n`` tokens would be available, without taking them."""
        self._check_n(n)
        if now < self.paused_until:
            # Nothing accrues during the pause: after it, the missing tokens still take time.
            missing = max(0.0, n - self.tokens)
            return (self.paused_until - now) + missing / self.rate
        missing = n - self.available(now)
        return 0.0 if missing <= _EPSILON else missing / self.rate

    def try_acquire(self, now: float, n: float = 1) -> tuple[bool, float]:
        """Take ``n`` tokens if available: ``(True, 0.0)``, else ``(False, seconds to wait)``.

        A refusal takes nothing: the caller sleeps ``wait_s`` and asks again (others may have
        taken the tokens meanwhile, in which case it is told to wait again).
        """
        self._check_n(n)
        self.refill(now)
        if now < self.paused_until:
            return False, self.wait_time(now, n)
        if self.tokens + _EPSILON >= n:
            self.tokens = max(0.0, self.tokens - n)
            return True, 0.0
        return False, (n - self.tokens) / self.rate

    def pause_until(self, until: float) -> None:
        """Grant nothing before ``until`` (wall clock) and empty the bucket.

        Called on a 429/503/quota answer with ``now + Retry-After``, or ``now + backoff`` when
        the answer gives none. A pause never shortens an earlier, longer one.
        """
        if until > self.paused_until:
            self.paused_until = until
        self.tokens = 0.0

    def is_paused(self, now: float) -> bool:
        return now < self.paused_until

    def to_dict(self) -> dict[str, Any]:
        """The state as a small JSON-able dict (rate and capacity come from settings)."""
        return {
            "v": _STATE_VERSION,
            "tokens": self.tokens,
            "updated_at": self.updated_at,
            "paused_until": self.paused_until,
        }

    @classmethod
    def from_dict(
        cls, data: dict[str, Any] | None, *, rate: float, capacity: float, now: float
    ) -> TokenBucket:
        """Restore a bucket saved by :meth:`to_dict` under the current ``rate`` and ``capacity``.

        ``None`` or an unreadable dict gives a full bucket. The tokens are capped at ``capacity``
        and the bucket is refilled to ``now``, so downtime earns at most ``capacity`` tokens.
        """
        if not data or data.get("v") != _STATE_VERSION:
            return cls.full(rate, capacity, now)
        bucket = cls(
            rate=rate,
            capacity=capacity,
            tokens=float(data.get("tokens", capacity)),
            updated_at=float(data.get("updated_at", now)),
            paused_until=float(data.get("paused_until", 0.0)),
        )
        bucket.refill(now)
        return bucket

    def _check_n(self, n: float) -> None:
        if n <= 0 or n > self.capacity:
            raise ValueError(f"cannot acquire {n} tokens from a bucket of capacity {self.capacity}")


# --- interleaved slots: how the gate actually paces calls ---------------------------------------
#
# A token bucket per partition still lets every partition spend its burst at the same instant:
# with P partitions the app can send P calls at once, which is a violation for a provider that
# allows one call per second (MusicBrainz). The gate therefore paces with *slots*: the provider's
# global rate R defines instants k/R on the wall clock, and slot k belongs to partition k mod P.
# Calls from all partitions are then at least 1/R apart, whichever worker owns which partition,
# with no burst at all; each partition gets R/P (the same stranded-budget trade-off as above). A
# partition remembers when its last slot was (``last_slot_at`` in its table entry), so a
# restarted worker never reuses a slot, even after the rate was changed. Workers on different
# hosts rely on NTP-synchronised clocks; the safety margin applied to R
# (ProviderPolicy.rate_margin) absorbs skew and scheduling jitter.


def slot_time(slot: int, rate: float) -> float:
    """Wall-clock time of global slot ``slot`` at ``rate`` calls per second."""
    return slot / rate


def next_slot(now: float, *, rate: float, partition: int, partitions: int,
              after: float | None = None) -> int:
    """The first slot at or after ``now`` that belongs to ``partition`` and is later than
    ``after`` (the time of the last slot the partition took, which survives restarts and rate
    changes because it is a time, not an index)."""
    if rate <= 0:
        raise ValueError(f"rate must be positive, got {rate}")
    if not 0 <= partition < partitions:
        raise ValueError(f"partition {partition} outside 0..{partitions - 1}")
    first = math.ceil(now * rate - _EPSILON)
    if after is not None:
        # ``after`` is a slot time k / rate; with epoch-sized k the product carries rounding
        # error far above any epsilon, so round to recover k rather than floor (which could
        # hand the same slot out twice). After a rate change rounding only errs on the late side.
        first = max(first, round(after * rate) + 1)
    # Round up to the next slot whose index is congruent to the partition.
    return first + (partition - first) % partitions
