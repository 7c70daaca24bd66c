"""Consumer lag per partition: exported while assigned, dropped when moved, safe in a rebalance."""

from __future__ import annotations

from aiokafka.errors import IllegalStateError
from faust.types import TP

from trackflow.agents import metrics
from trackflow.agents.stream_metrics import LagExporter

RAW = "lagtest.raw"


class Consumer:
    """The three calls the exporter makes; ``revoke_on_position`` plays a rebalance that lands
    between reading the assignment and asking for a position."""

    def __init__(self, assigned: dict[TP, tuple[int, int]]) -> None:
        self.assigned = assigned  # tp -> (position, end offset)
        self.revoke_on_position: set[TP] = set()

    def assignment(self) -> set[TP]:
        return set(self.assigned)

    async def highwaters(self, *tps: TP) -> dict[TP, int]:
        return {tp: self.assigned[tp][1] for tp in tps}

    async def position(self, tp: TP) -> int:
        if tp in self.revoke_on_position:
            self.assigned.pop(tp, None)
        if tp not in self.assigned:
            raise IllegalStateError(f"Partition {tp} is not assigned")
        return self.assigned[tp][0]


def lag(partition: int) -> float | None:
    for family in metrics.CONSUMER_LAG.collect():
        for sample in family.samples:
            if sample.labels == {"topic": RAW, "partition": str(partition)}:
                return sample.value
    return None


async def test_lag_is_end_minus_position_and_goes_when_the_partition_moves() -> None:
    consumer = Consumer({TP(RAW, 0): (40, 100), TP(RAW, 1): (7, 7), TP("other", 0): (0, 9)})
    exporter = LagExporter({RAW})
    await exporter.tick(consumer)
    assert (lag(0), lag(1)) == (60, 0)
    del consumer.assigned[TP(RAW, 0)]
    await exporter.tick(consumer)
    assert (lag(0), lag(1)) == (None, 0)


async def test_a_partition_revoked_during_the_tick_is_skipped_not_raised() -> None:
    # Seen on a real broker: the worker's timer raised IllegalStateError in a rebalance, and
    # the worker crashed with it.
    consumer = Consumer({TP(RAW, 2): (1, 5), TP(RAW, 3): (2, 9)})
    exporter = LagExporter({RAW})
    await exporter.tick(consumer)
    consumer.revoke_on_position = {TP(RAW, 2)}
    await exporter.tick(consumer)
    assert (lag(2), lag(3)) == (None, 7)
