"""Acks of an agent's records reach Faust only through its in-flight tracker, never from the
stream itself (Faust acks the events its stream skips around a rebalance)."""

from __future__ import annotations

import asyncio
from typing import Any

import faust
from faust.events import Event
from faust.types.tuples import TP, ConsumerMessage

from trackflow.agents.runner import run_agent

TOPIC = "t.refresh"
TP0 = TP(TOPIC, 0)


def event(app: faust.App, offset: int, generation_id: int) -> Any:
    message = ConsumerMessage(TOPIC, 0, offset, 0.0, 0, [], f"k{offset}".encode(), b"{}", None,
                              tp=TP0, generation_id=generation_id)
    return Event(app, message.key, message.value, message.headers, message)


async def test_an_event_faust_skips_after_a_rebalance_is_not_committed_past_its_redelivery(
        ) -> None:
    app = faust.App("t-acks", broker="kafka://127.0.0.1:9", store="memory://",
                    autodiscover=False)
    topic = app.topic(TOPIC, key_type=bytes, value_type=bytes, key_serializer="raw",
                      value_serializer="raw", partitions=1)
    due = asyncio.Event()  # the second request is not due yet

    async def handler(ev: Any) -> None:
        if ev.message.offset == 11:
            await due.wait()

    async def on_fatal(exc: BaseException) -> None:
        raise AssertionError(f"no record may fail here: {exc!r}")

    inflight = run_agent(app, topic, name="t", handler=handler, max_in_flight=10,
                         max_queued=100, on_fatal=on_fatal, key_of=lambda msg: msg.key).inflight
    consumer: Any = app.consumer  # its offset bookkeeping is what the commit reads
    app.topics.acking_topics.add(TOPIC)  # Faust does it when the agent's stream subscribes
    # After a rebalance Faust seeks to the committed offset, 10. Offset 11, fetched in the
    # generation before, is read by the stream afterwards: Faust skips it and acks it itself,
    # as its stream does (``event.ack()`` on a skipped value, whatever ``noack()`` says).
    consumer._committed_offset[TP0] = 10
    event(app, 11, generation_id=1).ack()
    # The redeliveries of the new generation: 10 finishes, 11 waits for its due time.
    await inflight.submit(TP0, 10, b"k10", event(app, 10, generation_id=2))
    await inflight.submit(TP0, 11, b"k11", event(app, 11, generation_id=2))
    await asyncio.sleep(0.01)
    assert consumer._new_offset(TP0) == 11, \
        "the commit must stop at offset 11, whose redelivery is still waiting"
    due.set()
    await inflight.drain()
    assert consumer._new_offset(TP0) == 12, "once 11 is handled its offset is committed"
