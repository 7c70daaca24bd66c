"""Burst drain: a scraper's burst of new tracks through the full waterfall, cold cache.

    python tests/bench/burst_bench.py [--tracks N] [--partitions P] [--settle S] [--png FILE]

The simulator enforces the real limits scaled up 4x (MusicBrainz 4 per 1 s, Spotify 600 per
30 s, Deezer 200 per 5 s, Last.fm 20 per 1 s, Discogs 240 per 60 s) with 50-150 ms latency; the
worker is told the same rates and runs the default waterfall (``isrc`` required, so every
track needs MusicBrainz, or Spotify when MusicBrainz has no match). N distinct catalog tracks
are produced at once, without ISRC, to tracks.raw. Figures:

- drain: seconds until every track is published (or dead-lettered), tracks/s, against the
  ceiling set by MusicBrainz, the scarcest provider every track needs (its paced rate, 4/1.1);
- the share of tracks whose latest revision is ``complete`` over time (printed every 10 s,
  and drawn to a PNG when matplotlib is installed: ``pip install matplotlib``, a bench-only
  dependency), until it stops changing for ``--settle`` seconds;
- per provider: calls, calls/s over its active window against the allowed rate, the most
  calls in any window against the limit, violations (calls answered with the limit answer);
- dead letters (retryable or not), deferred stages and refresh revisions.

A script, not a test: it prints figures and asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
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

from tests.integration.harness import PROVIDERS, collect, produce
from trackflow.schemas.codec import decode

LIMITS: dict[str, tuple[int, float]] = {
    "musicbrainz": (4, 1.0), "spotify": (600, 30.0), "deezer": (200, 5.0),
    "lastfm": (20, 1.0), "discogs": (240, 60.0),
}
LATENCY_MS = (50, 150)
SLACK_S = 0.1


def latest(values: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for v in values:
        if v["track_id"] not in out or v["revision"] >= out[v["track_id"]]["revision"]:
            out[v["track_id"]] = v
    return out


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
        env = {**sim.worker_env(), "TRACKFLOW_REFRESH__DELAY_S": str(args.refresh_delay)}
        worker = bench.worker(topics, partitions=args.partitions, env=env, name="burst")
        await worker.wait_ready()
        await sim.reset()
        started = time.monotonic()
        await produce(bench.bootstrap, topics.raw, encoded(records))
        log(f"{len(records)} tracks produced")
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
            now = latest(values)
            t = time.monotonic() - started
            done = len(set(now) | {m.key.decode() for m in dlq if m.key})
            share = sum(v["status"] == "complete" for v in now.values()) / len(keys)
            series.append((t, len(now), share))
            print(f"t={t:6.0f} s published={len(now):5d} complete={share:.3f} "
                  f"dead letters={len(dlq)}", flush=True)
            if drained_at is None and done >= len(keys):
                drained_at = t
            if share != last_share:
                last_share, last_change = share, time.monotonic()
            elif drained_at is not None and time.monotonic() - last_change >= args.settle:
                break
        report = await sim.report()
        bench.stop_worker(worker)

        ceiling = LIMITS["musicbrainz"][0] / (LIMITS["musicbrainz"][1] + SLACK_S)
        if drained_at is not None:
            print(f"\ndrain: {len(keys)} tracks in {drained_at:.0f} s (sampled every 10 s) = "
                  f"{len(keys) / drained_at:.2f} tracks/s; ceiling {ceiling:.2f} tracks/s "
                  f"(MusicBrainz paced): {len(keys) / drained_at / ceiling:.2f} of it")
        else:
            print(f"\ndrain: not finished within {args.max_s:.0f} s")
        rows = []
        for name in PROVIDERS:
            r = report[name]
            window = float(r["duration_s"])
            n = int(r["requests"])
            achieved = (n - 1) / window if n > 1 and window > 0 else 0.0
            allowed = LIMITS[name][0] / LIMITS[name][1]
            rows.append((name, n, window, achieved, allowed, achieved / allowed,
                         f"{r['max_in_window']}/{r['limit']} per {r['window_s']:g} s",
                         r["violations"]))
        print(table(("provider", "requests", "window s", "calls/s", "allowed/s", "ratio",
                     "max_in_window", "violations"), rows))
        retryable = sum(1 for m in dlq if dict(m.headers).get("trackflow.errors.retryable")
                        == b"true")
        deferred = sum(1 for v in values for o in v["providers"] if o["outcome"] == "deferred")
        revisions = [v["revision"] for v in latest(values).values()]
        print(f"dead letters: {len(dlq)} ({retryable} retryable); deferred stages in all "
              f"publications: {deferred}; publications: {len(values)}; max revision: "
              f"{max(revisions, default=0)}")
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
    parser.add_argument("--seed", type=int, default=0)
    add_common_options(parser)
    return parser.parse_args()


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
