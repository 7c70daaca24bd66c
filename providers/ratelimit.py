"""Rate-limit pacing as pure functions: which wall-clock slot a call may leave in. No I/O.

A provider allows R calls per second for our whole application, however many workers run. A
token bucket per partition (R/P each) would keep the long-run sum under R but still let every
partition spend its burst at the same instant: with P partitions the app could send P calls at
once, a violation for a provider that allows one call per second (MusicBrainz). So calls are
paced with *slots*: R defines instants k/R on the wall clock, and slot k belongs to partition
k mod P. Calls of all partitions are then at least 1/R apart, whichever worker owns which
partition, with no burst at all.

The trade-off is the usual one of splitting a rate over partitions: each partition gets R/P,
and a partition with no traffic strands its share (traffic on 2 of 8 partitions uses at most 2/8
of the allowance). That is why the gate paces with the global limiter in Redis
(:mod:`providers.limiter`) and uses these slots only as its durable fallback while Redis is
unreachable: a stranded share only makes us slower, never over the limit.

State survives restarts: the gate (:mod:`providers.gate`) keeps, per provider and partition in a
changelogged Faust table, when the partition's last slot was (a time, not an index, so a changed
rate cannot strand the partition) and until when a limit answer paused the provider. Workers on
different hosts rely on NTP-synchronised clocks; the gate paces as if the provider's window were
``rate_slack_s`` longer, to absorb skew and scheduling jitter.
"""

from __future__ import annotations

import math

# Float products such as 10 * 0.1 land a hair off an integer; a slot must not be lost for that.
_EPSILON = 1e-9


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
