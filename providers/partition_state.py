"""One provider's state per partition: its circuit breaker, the pause a 429/503/quota answer
imposed, and the last rate-limit slot taken.

The partitions this worker owns are kept in memory (:class:`PartitionStates`); each has one entry
(``spotify/3``) in a mapping the caller provides, a changelogged Faust table in the worker (a
dict in tests), from which a restarted worker or a partition's next owner restores it. The key
carries the partition because a Faust table key must always be written from the same partition.

An entry is written when the partition's course changes (the breaker opens, half-opens or
closes, a trip is counted, a pause starts or grows) and otherwise at most every
``checkpoint_s``: the changelog then grows with the breaker's transitions and a checkpoint per
partition, not with every call the provider answers. What a crash can lose between checkpoints is
the breaker's count of recent outcomes (the next calls count again) and the last slot taken,
which a new owner does not need: slots are points in time, and the calls that held later ones
were cancelled with their records.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, ItemsView, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from trackflow.providers.breaker import CircuitBreaker, State
from trackflow.providers.policy import BreakerConfig

log = logging.getLogger("trackflow.providers.gate")


@dataclass(slots=True)
class PartitionState:
    """One provider's state for one partition (the pacer's :class:`~providers.pacer.SlotState`
    too)."""

    breaker: CircuitBreaker
    paused_until: float = 0.0
    last_slot_at: float | None = None
    saved_course: tuple[Any, ...] | None = None
    """:meth:`course` as last written to the table."""
    saved_at: float = float("-inf")
    """When the entry was last written."""

    def to_dict(self) -> dict[str, Any]:
        return {"breaker": self.breaker.to_dict(), "paused_until": self.paused_until,
                "last_slot_at": self.last_slot_at}

    def course(self) -> tuple[Any, ...]:
        """What a restart or a new owner must not miss: a change is written at once."""
        b = self.breaker
        return b.state, b.trips, b.open_until, self.paused_until


@dataclass(slots=True)
class PartitionStates:
    """One provider's :class:`PartitionState` for each partition this worker owns, restored from
    and saved to ``table``; ``on_change`` runs whenever one is restored, saved or forgotten
    (the gate's gauges)."""

    provider: str
    breaker: BreakerConfig
    table: MutableMapping[str, Any]
    checkpoint_s: float
    clock: Callable[[], float]
    on_change: Callable[[], None]
    _held: dict[int, PartitionState] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self._held)

    def items(self) -> ItemsView[int, PartitionState]:
        return self._held.items()

    def key(self, partition: int) -> str:
        return f"{self.provider}/{partition}"

    def get(self, partition: int) -> PartitionState:
        """The partition's state, restored from the table the first time it is asked for."""
        st = self._held.get(partition)
        if st is None:
            saved = self.table.get(self.key(partition))
            if saved:
                st = PartitionState(CircuitBreaker.from_dict(saved["breaker"], self.breaker),
                                    float(saved.get("paused_until", 0.0)),
                                    saved.get("last_slot_at"))
                st.saved_course = st.course()
                log.info("event=gate_state_restored provider=%s partition=%d breaker=%s",
                         self.provider, partition, st.breaker.state)
            else:
                st = PartitionState(CircuitBreaker(self.breaker))
            self._held[partition] = st
            self.on_change()
        return st

    def save(self, partition: int, st: PartitionState) -> None:
        """Write the partition's entry when its course changed or its checkpoint is due."""
        now = self.clock()
        course = st.course()
        if course != st.saved_course or now - st.saved_at >= self.checkpoint_s:
            self.table[self.key(partition)] = st.to_dict()
            st.saved_course, st.saved_at = course, now
        self.on_change()

    def forget(self, partitions: set[int]) -> None:
        """Drop the in-memory state of partitions this worker no longer owns (the table keeps
        it for their next owner)."""
        for p in partitions:
            self._held.pop(p, None)
        self.on_change()

    def _breaker_of(self, partition: int) -> CircuitBreaker | None:
        """The partition's breaker as held, else as the table has it (read-only), else None."""
        st = self._held.get(partition)
        if st is not None:
            return st.breaker
        saved = self.table.get(self.key(partition))
        return CircuitBreaker.from_dict(saved["breaker"], self.breaker) if saved else None

    def breaker_state(self, partition: int) -> State:
        breaker = self._breaker_of(partition)
        return breaker.state if breaker is not None else State.CLOSED

    def open_until(self, partition: int) -> float:
        """When the partition's breaker may let a probe through (0 when not open)."""
        breaker = self._breaker_of(partition)
        return breaker.open_until if breaker and breaker.state is State.OPEN else 0.0
