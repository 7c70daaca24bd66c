"""A seek in the middle of a fetched batch: Faust's real fetch loop and offset bookkeeping, with
the broker replaced by the batches it would return."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import faust
from aiokafka.structs import ConsumerRecord
from faust.types.tuples import TP

from trackflow.streams.app import fence_seeks

TOPIC = "t.refresh"
TP0 = TP(TOPIC, 0)
OTHER = TP("t.raw", 0)
"""Another partition in the same batches: the seek lands while one of its records is read."""
COMMITTED = 2
WAITING = 5
"""A refresh request still waiting for its due time when the commits below run."""


def records(tp: TP, first: int, last: int) -> list[Any]:
    return [ConsumerRecord(tp.topic, tp.partition, offset, 0, 0, b"k", b"{}", None, 1, 2, [])
            for offset in range(first, last + 1)]


def batch(first: int, last: int) -> dict[TP, list[Any]]:
    return {TP0: records(TP0, first, last), OTHER: records(OTHER, 100, 100 + last - first)}


def commit(consumer: Any) -> int:
    """What the commit timer would commit by now (it runs several times between acks)."""
    for _ in range(3):
        offset = consumer._new_offset(TP0)
        if offset is not None and consumer._should_commit(TP0, offset):
            consumer._committed_offset[TP0] = offset
    return int(consumer._committed_offset[TP0])


async def run(fenced: bool, *, during_fetch: bool = False) -> tuple[list[int], int]:
    app = faust.App("t-fence", broker="kafka://127.0.0.1:9", store="memory://",
                    autodiscover=False)
    app.topics.acking_topics.update({TOPIC, OTHER.topic})
    consumer: Any = app.consumer
    fetcher = SimpleNamespace(_stopped=asyncio.Event())
    # After a restart the fetch starts at the committed offset and its first batch is being
    # read when Faust's recovery seeks the stream partitions to their committed offsets; the
    # broker then returns the records from the seek's offset again.
    # ``during_fetch``: the seek starts after a first batch was read and ends while the next
    # one, from the position before the seek, is being fetched.
    batches = iter([batch(COMMITTED, 4), batch(5, 7), batch(COMMITTED, 7)] if during_fetch
                   else [batch(COMMITTED, 7), batch(COMMITTED, 7)])
    broker_answers = asyncio.Event()
    requests = 0

    async def wait_next_records(timeout: float) -> Any:
        nonlocal requests
        requests += 1
        records = next(batches, None)
        if records is None:
            fetcher._stopped.set()
        if during_fetch and requests == 2:
            broker_answers.set()
            for _ in range(10):  # the seek finishes
                await asyncio.sleep(0)
        return records, None

    async def no_seek(tp: Any, offset: int) -> None:
        return None

    async def seek_to_committed() -> dict[TP, int]:
        if during_fetch:
            await broker_answers.wait()
        return {TP0: COMMITTED}

    consumer._wait_next_records = wait_next_records
    consumer._seek = no_seek
    consumer.seek_to_committed = seek_to_committed
    consumer.assignment = lambda: {TP0, OTHER}
    consumer.highwater = lambda tp: 8
    consumer.flow_active = True
    consumer._committed_offset[TP0] = COMMITTED
    if fenced:
        fence_seeks(app)
    delivered: list[Any] = []
    seeked = False
    seeking: list[Any] = []

    async def on_message(message: Any) -> None:
        nonlocal seeked
        if message.tp == TP0:
            delivered.append(message)
        elif len(delivered) == 3 and not seeked:
            # The seek lands after three records of the partition were read.
            seeked = True
            if during_fetch:
                seeking.append(asyncio.ensure_future(consumer.perform_seek()))
            else:
                await consumer.perform_seek()

    consumer.callback = on_message
    await consumer._drain_messages(fetcher)
    await asyncio.gather(*seeking)
    # The handlers finish in offset order (agents.inflight) up to the waiting request.
    committed = COMMITTED
    done: set[int] = set()
    for message in delivered:
        if message.offset < WAITING and message.offset not in done:
            done.add(message.offset)
            consumer.ack(message)
            committed = max(committed, commit(consumer))
    return [m.offset for m in delivered], committed


async def test_records_fetched_before_a_seek_are_read_again_and_not_committed_unhandled(
        ) -> None:
    offsets, committed = await run(fenced=True)
    assert committed <= WAITING, \
        f"committed {committed}: past offset {WAITING}, whose handler has not finished"
    assert offsets[:3] == [2, 3, 4] and offsets[3:] == [2, 3, 4, 5, 6, 7], \
        "the rest of the first batch is dropped and read again from the seek's offset"


async def test_without_the_fence_faust_commits_past_the_record_after_the_seek() -> None:
    # What the fence is for: Faust takes the rest of the batch for a hole after the seek's
    # offset, acks the hole, and drops the records read again from the seek's offset.
    offsets, committed = await run(fenced=False)
    assert committed > WAITING
    assert offsets == [2, 3, 4, 5, 6, 7, 7]


async def test_records_fetched_while_a_seek_runs_are_read_again_and_not_committed_unhandled(
        ) -> None:
    offsets, committed = await run(fenced=True, during_fetch=True)
    assert committed <= WAITING, \
        f"committed {committed}: past offset {WAITING}, whose handler has not finished"
    assert offsets == [2, 3, 4, 2, 3, 4, 5, 6, 7]
    _, committed = await run(fenced=False, during_fetch=True)
    assert committed > WAITING, "what the fence is for: Faust commits past the waiting one"
