"""Burst drain: a scraper's burst of new tracks through the full waterfall, cold cache.

    python tests/bench/burst_bench.py [--tracks N] [--partitions P] [--settle S] [--png FILE]

The simulator enforces the real limits scaled up 4x (MusicBrainz 4 per 1 s, Spotify 600 per
30 s, Deezer 200 per 5 s, Last.fm 20 per 1 s, Discogs 240 per 60 s) with 50-150 ms latency; the
worker is told the same rates and runs the default waterfall (``isrc`` required: MusicBrainz
fills it, or Spotify when MusicBrainz is busy or has no match) with the refresh agent. N
distinct catalog tracks are produced at once, without ISRC, to tracks.raw. Figures:

- drain: seconds until every track is published (or dead-lettered), from the CreateTime of
  the last first publication, tracks/s, against the ceiling set by the providers that can fill
  the ISRC every track needs (MusicBrainz and Spotify together, paced: 4/1.1 + 600/30.1);
- the share of tracks whose latest revision is ``complete`` over time (printed every 10 s,
  and drawn to a PNG when matplotlib is installed: ``pip install matplotlib``, a bench-only
  dependency), until it stops changing for ``--settle`` seconds;
- per provider: calls, calls/s over its active window against the allowed rate, the seconds
  during which ``--backlog`` (3) or more calls waited for its budget and its calls/s in them
  against the allowed rate (budget use with work waiting), the most calls in any window
  against the limit, violations (calls answered with the limit answer) and the slots the
  worker lost;
- dead letters (retryable or not), deferred stages and refresh revisions.

A script, not a test: it prints figures and asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    Bench,
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
    collect,
    http_json,
    metric_value,
    produce,
    scrape,
)
from trackflow.schemas.codec import decode

LIMITS: dict[str, tuple[int, float]] = {
    "musicbrainz": (4, 1.0), "spotify": (600, 30.0), "deezer": (200, 5.0),
    "lastfm": (20, 1.0), "discogs": (240, 60.0),
}
LATENCY_MS = (50, 150)
ISRC_PROVIDERS = ("musicbrainz", "spotify")
SLACK_S = 0.1


def latest(values: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for v in values:
        if v["track_id"] not in out or v["revision"] >= out[v["track_id"]]["revision"]:
            out[v["track_id"]] = v
    return out


SAMPLE_S = 0.5


async def sample_waiting(port: int, samples: list[tuple[float, dict[str, float]]]) -> None:
    """Every SAMPLE_S, how many calls wait for each provider's budget (the worker's gauge)."""
    while True:
        text = await scrape(port)
        samples.append((time.monotonic(), {
            name: metric_value(text, "trackflow_ratelimit_waiting_calls", provider=name) or 0.0
            for name in PROVIDERS}))
        await asyncio.sleep(SAMPLE_S)


def busy_use(samples: list[tuple[float, dict[str, float]]], provider: str,
             entries: list[dict[str, Any]], sim_started: float, allowed: float,
             backlog: int) -> tuple[float, float]:
    """Seconds during which at least ``backlog`` calls waited for ``provider`` (a sample
    counts for the SAMPLE_S after it), and its calls in those seconds against its rate. One
    waiting call may be the only one, sleeping for the next slot; a few mean the next slots
    are all claimed."""
    busy = [t for t, waiting in samples if waiting[provider] >= backlog]
    if not busy:
        return 0.0, 0.0
    sent = sorted(sim_started + e["at"] for e in entries if e["endpoint"] != "token")
    n = sum(1 for at in sent for t in busy if t <= at < t + SAMPLE_S)
    seconds = len(busy) * SAMPLE_S
    return seconds, n / seconds / allowed


async def main(args: argparse.Namespace) -> None:
    async with Bench("burst", keep_logs=args.keep_logs, stack_dir=args.stack_dir) as bench:
        print(__doc__.split("\n\n", 2)[2].strip())
        print(f"\nrun: {bench.describe()}")
        tracks = catalog_tracks(args.tracks, args.seed)
        sim = bench.simulator(LIMITS, latency_ms=LATENCY_MS, size=catalog_size(args.tracks),
                              seed=args.seed)
        topics = await bench.topics(args.partitions)
        records = bench_records(tracks, args.tracks)
        keys = {r["track_id"] for r in records}
        env = {**sim.worker_env(), "TRACKFLOW_REFRESH__DELAY_S": str(args.refresh_delay),
               "TRACKFLOW_WORKER__AGENTS": '["enrich", "refresh"]'}
        worker = bench.worker(topics, partitions=args.partitions, env=env, name="burst")
        await worker.wait_ready()
        await sim.reset()
        started = time.monotonic()
        produced_ms = time.time() * 1000
        await produce(bench.bootstrap, topics.raw, encoded(records))
        log(f"{len(records)} tracks produced")
        # The simulator stamps requests with seconds since it started: where that is on ours.
        asked = time.monotonic()
        health = await http_json(f"{sim.url}/_sim/health")
        sim_started = (asked + time.monotonic()) / 2 - float(health["uptime_s"])
        samples: list[tuple[float, dict[str, float]]] = []
        sampler = asyncio.create_task(sample_waiting(worker.web_port, samples))
        series: list[tuple[float, int, float]] = []
        drained_at: float | None = None
        last_change = time.monotonic()
        last_share = -1.0
        values: list[dict[str, Any]] = []
        dlq: list[Any] = []
        while time.monotonic() - started < args.max_s:
            await asyncio.sleep(10)
            msgs = await collect(bench.bootstrap, topics.enriched, until=10**7, timeout=3)
            dlq = await collect(bench.bootstrap, topics.dlq, until=10**7, timeout=2)
            values = [decode("EnrichedTrack", m.value) for m in msgs]
            first_out = {}
            for m in msgs:
                first_out.setdefault(m.key, m.timestamp)
            now = latest(values)
            t = time.monotonic() - started
            done = len(set(now) | {m.key.decode() for m in dlq if m.key})
            share = sum(v["status"] == "complete" for v in now.values()) / len(keys)
            series.append((t, len(now), share))
            print(f"t={t:6.0f} s published={len(now):5d} complete={share:.3f} "
                  f"dead letters={len(dlq)}", flush=True)
            if drained_at is None and done >= len(keys):
                # When the last track was first published (its CreateTime), not this sample.
                drained_at = max([*first_out.values(), *(m.timestamp for m in dlq)]
                                 ) / 1000 - produced_ms / 1000
            if share != last_share:
                last_share, last_change = share, time.monotonic()
            elif drained_at is not None and time.monotonic() - last_change >= args.settle:
                break
        sampler.cancel()
        report = await sim.report()
        worker_metrics = await scrape(worker.web_port)
        busy = {name: busy_use(samples, name, await sim.requests(name), sim_started,
                               LIMITS[name][0] / LIMITS[name][1], args.backlog)
                for name in PROVIDERS}
        bench.stop_worker(worker)

        # Every track needs an ISRC, which MusicBrainz or Spotify fills: together, paced,
        # they bound how fast a burst can be published.
        ceiling = sum(LIMITS[p][0] / (LIMITS[p][1] + SLACK_S) for p in ISRC_PROVIDERS)
        if drained_at is not None:
            print(f"\ndrain: {len(keys)} tracks published in {drained_at:.1f} s = "
                  f"{len(keys) / drained_at:.2f} tracks/s; ceiling {ceiling:.2f} tracks/s "
                  f"(MusicBrainz + Spotify paced): {len(keys) / drained_at / ceiling:.2f} of it")
        else:
            print(f"\ndrain: not finished within {args.max_s:.0f} s")
        rows = []
        for name in PROVIDERS:
            r = report[name]
            window = float(r["duration_s"])
            n = int(r["requests"])
            achieved = (n - 1) / window if n > 1 and window > 0 else 0.0
            allowed = LIMITS[name][0] / LIMITS[name][1]
            lost = metric_value(worker_metrics, "trackflow_ratelimit_slots_lost_total",
                                provider=name) or 0
            busy_s, busy_ratio = busy[name]
            rows.append((name, n, window, achieved, allowed, achieved / allowed, busy_s,
                         busy_ratio, f"{r['max_in_window']}/{r['limit']} per {r['window_s']:g} s",
                         r["violations"], int(lost)))
        print(table(("provider", "requests", "window s", "calls/s", "allowed/s", "ratio",
                     f"s with >={args.backlog} waiting", "ratio then", "max_in_window",
                     "violations",
                     "slots lost"), rows))
        retryable = sum(1 for m in dlq if dict(m.headers).get("trackflow.errors.retryable")
                        == b"true")
        deferred = sum(1 for v in values for o in v["providers"] if o["outcome"] == "deferred")
        per_track = Counter(v["track_id"] for v in values)
        print(f"dead letters: {len(dlq)} ({retryable} retryable); deferred stages in all "
              f"publications: {deferred}; publications: {len(values)}; most publications of "
              f"one track: {max(per_track.values(), default=0)}")
        print("complete share series (s, published, share):",
              [(round(t), n, round(s, 3)) for t, n, s in series])
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            print("matplotlib not installed: no PNG (pip install matplotlib)")
            return
        fig, ax = plt.subplots(figsize=(7, 4))
        ax.plot([t for t, _, _ in series], [s for _, _, s in series], label="complete")
        ax.plot([t for t, _, _ in series], [n / len(keys) for _, n, _ in series],
                label="published")
        ax.set_xlabel("seconds since the burst")
        ax.set_ylabel("share of tracks")
        ax.set_ylim(0, 1.02)
        ax.legend()
        ax.set_title(f"burst of {len(keys)} tracks, limits x4")
        fig.tight_layout()
        fig.savefig(args.png)
        print(f"chart: {args.png}")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Burst drain and share of complete tracks.")
    parser.add_argument("--tracks", type=int, default=600)
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--refresh-delay", type=float, default=10.0,
                        help="TRACKFLOW_REFRESH__DELAY_S")
    parser.add_argument("--settle", type=float, default=40.0,
                        help="stop once the complete share has not changed for this long")
    parser.add_argument("--max-s", type=float, default=900.0)
    parser.add_argument("--png", default="burst_complete.png")
    parser.add_argument("--backlog", type=int, default=3,
                        help="calls waiting for a provider that count as work waiting")
    parser.add_argument("--seed", type=int, default=0)
    add_common_options(parser)
    return parser.parse_args()


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
