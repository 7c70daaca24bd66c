"""A worker under a broker outage: log lines, CPU, time to resume, SIGTERM-to-exit with no broker.

Runs on a stack of its own (a state dir in /tmp; one broker by default): a worker on the skeleton
path (no provider stage: the noise of an outage comes from the Kafka clients), N tracks through
it, then:

1. the broker is killed for ``--outage`` seconds: the worker's log lines per minute and its
   CPU share over that window;
2. the broker starts again on the same address and N more tracks are produced: the time from
   the broker answering to the first and to the last of them being enriched (resume);
3. the broker is killed again, and after a while with no broker the worker gets SIGTERM: the
   time until it exited.

    .venv/bin/python tests/bench/outage_bench.py [--tracks 3000] [--outage 45]

Prints figures; asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # scripts run as `python tests/bench/x.py`
    sys.path.insert(0, str(REPO))

from tests.bench.common import wait_for_records  # noqa: E402
from tests.integration.harness import (  # noqa: E402
    TopicNames,
    WorkerProcess,
    avro_records,
    catalog_records,
    produce,
)
from trackflow.streams.stack import down, start_node, stop_node, up  # noqa: E402

NO_PROVIDERS = {"TRACKFLOW_WATERFALL__ORDER": "[]"}
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of pid and its reaped children, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(f) for f in fields[11:15]) / TICKS


def log_lines(path: Path) -> list[str]:
    return path.read_text(errors="replace").splitlines() if path.exists() else []


def summarise(lines: list[str], top: int = 6) -> str:
    shapes: dict[str, int] = {}
    for line in lines:
        shape = re.sub(r"\d+", "N", line.split("]", 2)[-1])[:110]
        shapes[shape] = shapes.get(shape, 0) + 1
    worst = sorted(shapes.items(), key=lambda kv: -kv[1])[:top]
    return "\n".join(f"    {n:6d}  {shape.strip()}" for shape, n in worst)


async def main(args: argparse.Namespace) -> None:
    state_dir = Path(tempfile.mkdtemp(prefix="trackflow-outage-"))
    workdir = Path(tempfile.mkdtemp(prefix="trackflow-outage-worker-"))
    info = up(state_dir=state_dir)
    os.environ["KAFKA_BOOTSTRAP_SERVERS"] = bootstrap = info.bootstrap_servers
    os.environ["REDIS_URL"] = info.redis_url
    topics = TopicNames.unique(f"outage{int(time.time())}")
    worker = WorkerProcess.start(workdir, topics, partitions=4,
                                 extra_env={**NO_PROVIDERS, **info.env()})
    tracks = catalog_records(args.tracks * 3, count=args.tracks * 2)
    first, second = tracks[:args.tracks], tracks[args.tracks:]
    try:
        await worker.wait_ready()
        await produce(bootstrap, topics.raw, avro_records(first))
        await wait_for_records(bootstrap, [topics.enriched], len(first), stall_s=60)
        print(f"{len(first)} tracks enriched before the outage")

        # 1. outage
        before = len(log_lines(worker.log))
        cpu0, t0 = cpu_seconds(worker.proc.pid), time.monotonic()
        stop_node(1, state_dir=state_dir, kill=True)
        await asyncio.sleep(args.outage)
        outage_s = time.monotonic() - t0
        cpu = (cpu_seconds(worker.proc.pid) - cpu0) / outage_s
        lines = log_lines(worker.log)[before:]
        print(f"outage {outage_s:.0f}s: {len(lines)} log lines "
              f"({len(lines) * 60 / outage_s:.1f}/min), worker CPU {cpu:.1%}")
        print(summarise(lines))

        # 2. return
        start_node(1, state_dir=state_dir)
        back = time.monotonic()
        await produce(bootstrap, topics.raw, avro_records(second))
        produced = time.monotonic() - back
        await wait_for_records(bootstrap, [topics.enriched], len(first) + 1, stall_s=90,
                               poll_s=0.1)
        first_out = time.monotonic() - back
        total = await wait_for_records(bootstrap, [topics.enriched], len(tracks), stall_s=90)
        resumed = time.monotonic() - back
        print(f"broker back: {len(second)} more produced in {produced:.1f}s; the first record "
              f"out {first_out:.1f}s after the broker answered again, the enriched topic at "
              f"{total} records ({len(tracks)} tracks; re-read uncommitted records are "
              f"duplicates) after {resumed:.1f}s")

        # 3. SIGTERM with no broker
        stop_node(1, state_dir=state_dir, kill=True)
        await asyncio.sleep(args.before_term)
        term = time.monotonic()
        os.killpg(worker.proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            await asyncio.to_thread(worker.proc.wait, 120)
        took = time.monotonic() - term
        code = worker.proc.poll()
        print(f"SIGTERM with no broker ({args.before_term:.0f}s after it went): "
              f"{'exited ' + str(code) if code is not None else 'STILL RUNNING'} "
              f"after {took:.1f}s")
    finally:
        worker.stop()
        down(state_dir=state_dir, purge=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tracks", type=int, default=3000)
    parser.add_argument("--outage", type=float, default=45.0)
    parser.add_argument("--before-term", type=float, default=15.0)
    asyncio.run(main(parser.parse_args()))
