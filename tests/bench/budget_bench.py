"""Budget use: how much of each provider's allowed rate the worker actually uses, cold cache.

    python tests/bench/budget_bench.py [--duration S] [--layout isolated|combined|both]
                                       [--partitions P] [--max-in-flight K]

The simulator enforces scaled-up limits (MusicBrainz 10 per 1 s, Spotify 1500 per 30 s = 50/s,
Deezer 250 per 5 s = 50/s, Last.fm 20 per 1 s, Discogs 600 per 60 s = 10/s, sliding windows) and
answers after a latency drawn uniformly from 50-150 ms; the worker is told the same rates
(TRACKFLOW_PROVIDERS__<NAME>__RATE) and paces each window as if it were rate_slack_s (0.1 s)
longer, so a ratio reaches at most window / (window + 0.1): 0.909 for 1 s windows. Records
are distinct catalog tracks, pre-produced, in a cache namespace of their own (cold: every lookup
is a provider call); TRACKFLOW_WORKER__MAX_IN_FLIGHT records per partition are in flight.

Layouts:
- isolated: one worker per provider, all five at once against one simulator, each with a
  one-stage waterfall (TRACKFLOW_WATERFALL__ORDER='["<name>"]'), so each provider has all the
  work it can take. Deezer, Last.fm and Discogs get records carrying the catalog ISRC (Deezer
  runs only when an ISRC is known; the other two cannot find one, and a record without one is
  dead-lettered).
- combined: one worker with the full waterfall (MusicBrainz first, records without ISRC): the
  pipeline as deployed, where a provider gets only as many records as the stages before it pass.

After S seconds of processing the simulator's report (GET /_sim/report) is read, per provider:
requests (rate-limited API calls; Spotify token calls are exempt and not counted), the active
window = arrival time of the last request minus that of the first (the report's duration_s,
arrival times on the simulator's monotonic clock, before its latency), calls/s = (requests - 1)
/ window, allowed/s = limit / window_s, ratio = calls/s / allowed/s; max_in_window is the most
requests that arrived in any sliding window of the provider's length, against its limit;
violations = requests answered with the limit answer. The request log (GET /_sim/requests, the
last 10,000 of all providers, stamped when answered) gives a cross-check of calls/s. "gave up"
is the worker's count of calls it did not send: refused by a breaker, or deferred because no
rate-limit slot came before an optional stage's deadline (max_wait_s). A script, not a test:
it prints figures and asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    Bench,
    Simulator,
    add_common_options,
    bench_records,
    catalog_size,
    catalog_tracks,
    encoded,
    log,
    table,
)

from tests.integration.harness import (
    PROVIDERS,
    WorkerProcess,
    metric_value,
    produce,
    scrape,
)

LIMITS: dict[str, tuple[int, float]] = {
    "musicbrainz": (10, 1.0), "spotify": (1500, 30.0), "deezer": (250, 5.0),
    "lastfm": (20, 1.0), "discogs": (600, 60.0),
}
LATENCY_MS = (50, 150)
TARGET = 0.9
#: Stages that cannot find an ISRC on their own get it in the record (see the docstring).
NEEDS_ISRC = {"deezer", "lastfm", "discogs"}


def rate(name: str) -> float:
    limit, window = LIMITS[name]
    return limit / window


def records_needed(name: str, duration: float) -> int:
    # Up to two calls per record (Last.fm: track and tags); half again for start-up slack.
    return math.ceil(rate(name) * duration * 1.5)


async def start_layout(bench: Bench, sim: Simulator, tracks: list[dict[str, Any]], layout: str,
                       args: argparse.Namespace) -> dict[str, WorkerProcess]:
    """Produce each worker's records, start the workers, wait until all are ready."""
    p = args.partitions
    plan: dict[str, tuple[list[str], bool, int]] = (
        {name: ([name], name in NEEDS_ISRC, records_needed(name, args.duration))
         for name in PROVIDERS} if layout == "isolated"
        else {"all": (list(PROVIDERS), False, records_needed("musicbrainz", args.duration))})
    workers: dict[str, WorkerProcess] = {}
    for name, (order, with_isrc, n) in plan.items():
        topics = await bench.topics(p)
        await produce(bench.bootstrap, topics.raw,
                      encoded(bench_records(tracks[:n], min(n, len(tracks)), with_isrc=with_isrc)))
        env = {**sim.worker_env(),
               "TRACKFLOW_WATERFALL__ORDER": "[" + ",".join(f'"{o}"' for o in order) + "]",
               "TRACKFLOW_WORKER__MAX_IN_FLIGHT": str(args.max_in_flight)}
        workers[name] = bench.worker(topics, partitions=p, env=env, name=f"{layout}-{name}")
    await asyncio.gather(*(w.wait_ready() for w in workers.values()))
    return workers


async def run_layout(bench: Bench, sim: Simulator, tracks: list[dict[str, Any]], layout: str,
                     args: argparse.Namespace) -> None:
    await sim.reset()
    workers = await start_layout(bench, sim, tracks, layout, args)
    log(f"{layout}: {len(workers)} worker(s) ready, running {args.duration:.0f} s")
    await asyncio.sleep(args.duration)
    report = await sim.report()
    metrics = {name: await scrape(w.web_port) for name, w in workers.items()}
    for w in workers.values():
        bench.stop_worker(w)
    rows = []
    for name in PROVIDERS:
        r = report[name]
        text = metrics.get(name) or metrics.get("all", "")
        gave_up = sum(metric_value(text, "trackflow_provider_calls_total", provider=name,
                                   outcome=o) or 0 for o in ("rejected", "deferred"))
        limited = metric_value(text, "trackflow_ratelimit_limited_answers_total",
                               provider=name) or 0
        window = float(r["duration_s"])
        n = int(r["requests"])
        achieved = (n - 1) / window if n > 1 and window > 0 else 0.0
        entries = [e for e in await sim.requests(name) if e["endpoint"] != "token"]
        cross = ((len(entries) - 1) / (entries[-1]["at"] - entries[0]["at"])
                 if len(entries) > 1 else 0.0)
        allowed = rate(name)
        rows.append((name, n, window, achieved, cross, allowed, achieved / allowed,
                     f"{r['max_in_window']}/{r['limit']} per {r['window_s']:g} s",
                     r["violations"], int(gave_up), int(limited)))
    print(f"\n== {layout} ({args.duration:.0f} s, {args.partitions} partitions, "
          f"max in flight {args.max_in_flight} per partition)")
    print(table(("provider", "requests", "window s", "calls/s", "log calls/s", "allowed/s",
                 "ratio", "max_in_window", "violations", "gave up", "429s seen"), rows))
    misses = [r[0] for r in rows if r[6] < TARGET]
    broken = [r[0] for r in rows if r[8]]
    verdict = ("met by every provider" if not misses and not broken else
               f"ratio missed by {', '.join(misses) or 'none'}; "
               f"violations at {', '.join(broken) or 'none'}")
    print(f"target ratio >= {TARGET} with zero violations: {verdict}")
    statuses = {name: report[name]["statuses"] for name in PROVIDERS}
    print(f"answers by status: {statuses}")


async def main(args: argparse.Namespace) -> None:
    layouts = ["isolated", "combined"] if args.layout == "both" else [args.layout]
    async with Bench("budget", keep_logs=args.keep_logs,
                     stack_dir=args.stack_dir) as bench:
        print(__doc__.split("\n\n", 2)[2].strip())
        print(f"\nrun: {bench.describe()}")
        count = max(records_needed(n, args.duration) for n in PROVIDERS)
        tracks = catalog_tracks(count, args.seed)
        sim = bench.simulator(LIMITS, latency_ms=LATENCY_MS, size=catalog_size(count),
                              seed=args.seed)
        print(f"records: up to {count:,} distinct catalog tracks per worker "
              f"(catalog of {catalog_size(count):,})")
        for layout in layouts:
            started = time.monotonic()
            await run_layout(bench, sim, tracks, layout, args)
            log(f"{layout} done in {time.monotonic() - started:.0f} s")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Achieved provider calls/s over the allowed rate, per provider, cold cache.")
    parser.add_argument("--duration", type=float, default=60, help="seconds of processing")
    parser.add_argument("--layout", choices=("isolated", "combined", "both"), default="both",
                        help="one worker per provider, the full waterfall, or both in turn")
    parser.add_argument("--partitions", type=int, default=8, help="partitions of every topic")
    parser.add_argument("--max-in-flight", type=int, default=16,
                        help="records in flight per partition (TRACKFLOW_WORKER__MAX_IN_FLIGHT); "
                             "keep a partition's queue for MusicBrainz under max_wait_s (30 s)")
    parser.add_argument("--seed", type=int, default=0, help="simulator catalog seed")
    add_common_options(parser)
    return parser.parse_args()


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
