"""The client's ``latest_only`` read of a compacted topic: memory and time against N tracks.

For each N the script produces N distinct keys to a fresh topic, each key twice (two versions of
``--value-bytes`` bytes, the size of an EnrichedTrack record), then reads the topic in a child
process with ``TrackConsumer(latest_only=True, from_beginning=True)`` until it has handed out
the N latest versions. Printed per N: the child's peak RSS (VmHWM) and its growth over the same
child reading nothing (its imports), the time of the read, and the records handed out. Nothing
is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time

from aiokafka import AIOKafkaProducer
from common import REPO, Bench, add_common_options, log, table  # type: ignore[import-not-found]

from tests.integration.harness import create_topics, kafka_kwargs

#: The reader: reads ``topic`` latest-only and prints its figures as one JSON line.
READER = """
import asyncio, json, re, sys, time
from pathlib import Path
from trackflow.streams.client import TrackConsumer

def hwm():
    text = Path("/proc/self/status").read_text()
    return int(re.search(r"VmHWM:\\s+(\\d+) kB", text).group(1)) / 1024

async def main(bootstrap, topic, expect):
    base = hwm()
    start = time.monotonic()
    seen = 0
    if expect:
        async with TrackConsumer(bootstrap, topic=topic, from_beginning=True, latest_only=True,
                                 max_records=expect, idle_timeout_s=30) as consumer:
            async for _ in consumer.messages():
                seen += 1
    print(json.dumps({"base_mb": base, "peak_mb": hwm(), "read_s": time.monotonic() - start,
                      "handed_out": seen}))

asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
"""


async def preload(bootstrap: str, topic: str, n: int, value_bytes: int) -> None:
    producer = AIOKafkaProducer(**kafka_kwargs(bootstrap), acks="all", linger_ms=20,
                                max_batch_size=512 * 1024)
    await producer.start()
    try:
        for version in (1, 2):
            pending = []
            for i in range(n):
                value = f"v{version}-{i}-".encode().ljust(value_bytes, b".")
                pending.append(await producer.send(topic, key=f"track-{i:09d}".encode(),
                                                   value=value))
                if len(pending) >= 20_000:
                    await asyncio.gather(*pending)
                    pending.clear()
            await asyncio.gather(*pending)
            log(f"  version {version} of {n} keys produced")
    finally:
        await producer.stop()


def read(bootstrap: str, topic: str, expect: int) -> dict[str, float]:
    out = subprocess.run([sys.executable, "-c", READER, bootstrap, topic, str(expect)],
                         check=True, capture_output=True, text=True, cwd=REPO)
    figures: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return figures


async def main(args: argparse.Namespace) -> None:
    async with Bench("consume", keep_logs=args.keep_logs, stack_dir=args.stack_dir) as bench:
        print(__doc__.split("\n\n", 1)[0])
        print(f"\nrun: {bench.describe()}; partitions {args.partitions}, values "
              f"{args.value_bytes} bytes")
        rows = []
        for n in args.tracks:
            topic = f"bench.consume.{n}.{int(time.time())}"
            await create_topics(bench.bootstrap, [topic], args.partitions)
            await preload(bench.bootstrap, topic, n, args.value_bytes)
            idle = read(bench.bootstrap, topic, 0)
            got = read(bench.bootstrap, topic, n)
            rows.append([n, 2 * n, got["handed_out"], f"{got['read_s']:.1f}",
                         f"{got['peak_mb']:.0f}", f"{got['peak_mb'] - idle['peak_mb']:.0f}",
                         f"{(got['peak_mb'] - idle['peak_mb']) * 2**20 / n:.0f}"])
            log(f"  N={n}: {got}")
        print()
        print(table(["N tracks", "records in topic", "handed out", "read s", "peak RSS MB",
                     "over an idle reader MB", "bytes per track"], rows))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="latest_only memory against N tracks.")
    parser.add_argument("--tracks", type=int, nargs="+", default=[10_000, 100_000, 300_000])
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--value-bytes", type=int, default=1200)
    add_common_options(parser)
    return parser.parse_args()


if __name__ == "__main__":
    os.chdir(REPO)
    asyncio.run(main(parse_args()))
