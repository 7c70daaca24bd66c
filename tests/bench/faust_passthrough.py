"""A Faust app that does nothing but pass records through: the framework's own ceiling.

    python tests/bench/faust_passthrough.py worker -l warn

Run by ``throughput_bench.py --mode faust`` (environment: KAFKA_BOOTSTRAP_SERVERS, BENCH_SOURCE,
BENCH_SINK, BENCH_GROUP, BENCH_WEB_PORT). One agent reads BENCH_SOURCE and hands every record's
key, value and headers to the producer for BENCH_SINK, unchanged: no decoding, validation,
enrichment or encoding. The consumer and producer settings are the worker's (streams/app.py), so
the difference between this and the plain aiokafka loop is what Faust's consume path costs per
record, and the difference between this and the worker is what trackflow adds on top.
"""

from __future__ import annotations

import os
from typing import Any

import faust

app = faust.App(
    os.environ.get("BENCH_GROUP", "bench-faust-passthrough"),
    broker=f"kafka://{os.environ.get('KAFKA_BOOTSTRAP_SERVERS', '127.0.0.1:9092')}",
    key_serializer="raw", value_serializer="raw", store="memory://",
    web_host="127.0.0.1", web_port=int(os.environ.get("BENCH_WEB_PORT", "0")),
    web_bind="127.0.0.1", consumer_auto_offset_reset="earliest", topic_disable_leader=True,
    topic_allow_declare=False, producer_acks=-1, producer_linger_ms=5,
    broker_max_poll_records=2000, stream_wait_empty=False, autodiscover=False,
)
source = app.topic(os.environ.get("BENCH_SOURCE", "bench.in"), key_type=bytes, value_type=bytes,
                   key_serializer="raw", value_serializer="raw")
SINK = os.environ.get("BENCH_SINK", "bench.out")


@app.agent(source, name="bench.passthrough")
async def passthrough(stream: Any) -> None:
    async for event in stream.noack().events():
        msg = event.message
        await app.producer.send(SINK, msg.key, msg.value, None, None, list(msg.headers or ()))
        event.ack()


if __name__ == "__main__":
    app.main()
