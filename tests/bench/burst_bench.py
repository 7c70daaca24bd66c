"""Burst drain: a scraper's burst of new tracks through the full waterfall, cold cache.

    python tests/bench/burst_bench.py [--tracks N] [--scale K] [--real] [--trickle R]
        [--long] [--partitions P] [--settle S] [--png FILE]

The simulator enforces the real limits scaled up ``--scale`` times (4 by default: MusicBrainz
4 per 1 s, Spotify 600 per 30 s, Deezer 200 per 5 s, Last.fm 20 per 1 s, Discogs 240 per 60 s)
with 50-150 ms latency; the worker is told the same rates and runs the default waterfall
(``isrc`` required: MusicBrainz fills it, or Spotify when MusicBrainz is busy or has no match)
with the refresh agent. N distinct tracks are produced at once to tracks.raw: catalog tracks
without ISRC, or with ``--real`` scraper-style noisy queries of the real chart data
(``noise.py``: typos, moved "feat.", dropped suffixes, 10 % with an ISRC, 55 % with a
duration), of which ``--absent-share`` (0.19) are left out of the simulator's catalog, which
holds every other real track. ``--trickle R`` adds R fresh records per second of further
tracks while the run lasts; ``--long`` is a day's backlog sped up: limits x20, 10,000 tracks, a
40,000-track catalog, 2 fresh tracks/s trickling in. Figures:

- first publication: seconds until every burst track is published (or dead-lettered), from
  the CreateTime of the last first publication, tracks/s, against Spotify's paced rate (every
  track needs one Spotify call, for ``spotify_id``) and against the ceiling of the providers
  that can fill the ISRC (MusicBrainz and Spotify together, paced);
- finishing: the share of the tracks the catalog has whose latest revision has no stage
  ``deferred`` or ``failed`` (finished), and the share ``complete``, over time (printed every
  10 s, drawn to a PNG when matplotlib is installed: ``pip install matplotlib``, a bench-only
  dependency), until the finished share stops changing for ``--settle`` seconds; when 95 % were
  finished against the bound set by the scarcest provider they need (one MusicBrainz call per
  track at its paced rate), and whether any key's revision ever went down in the topic;
- per provider: calls, calls/s over its active window against the allowed rate, the seconds
  during which ``--backlog`` (3) or more calls waited for its budget and its calls/s in them
  against the allowed rate (budget use with work waiting), the most calls in any window
  against the limit, violations (calls answered with the limit answer) and the slots the
  worker lost; Last.fm's calls by method;
- dead letters (retryable or not), deferred stages and refresh revisions.

A script, not a test: it prints figures and asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import random
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from aiokafka import AIOKafkaConsumer, TopicPartition
from common import (
    Bench,
    add_common_options,
    bench_records,
    catalog_records,
    catalog_size,
    encoded,
    log,
    table,
)

from tests.integration.harness import (
    PROVIDERS,
    http_json,
    kafka_kwargs,
    metric_value,
    produce,
    scrape,
)
from trackflow.schemas.codec import decode
from trackflow.streams.top import ETA_WINDOW_S, Snapshot, build_view, parse

#: The real limits (calls per window, window s), as ``providers.specs`` has them.
REAL_LIMITS: dict[str, tuple[int, float]] = {
    "musicbrainz": (1, 1.0), "spotify": (150, 30.0), "deezer": (50, 5.0),
    "lastfm": (5, 1.0), "discogs": (60, 60.0),
}
LATENCY_MS = (50, 150)
ISRC_PROVIDERS = ("musicbrainz", "spotify")
SLACK_S = 0.1
SAMPLE_S = 0.5
FRAME_S = 5.0


def scaled(scale: int) -> dict[str, tuple[int, float]]:
    return {name: (n * scale, window) for name, (n, window) in REAL_LIMITS.items()}


def paced(limits: dict[str, tuple[int, float]], provider: str) -> float:
    n, window = limits[provider]
    return n / (window + SLACK_S)


def real_burst(workdir: Path, n: int, seed: int, absent_share: float
               ) -> tuple[list[dict[str, Any]], set[str], Path, dict[str, str | None]]:
    """``n`` noisy queries of real tracks, the track ids of those the catalog has, the catalog
    CSV (every real track but the absent ones), and each track id's true ISRC (None: absent)."""
    import csv

    from noise import catalog_dir, load_catalog, noisy_query

    from trackflow.streams.ingest import RowRejected, row_to_raw

    repo = Path(__file__).resolve().parents[2]
    tracks = load_catalog(catalog_dir(repo))
    rng = random.Random(seed)
    rng.shuffle(tracks)
    records: list[dict[str, Any]] = []
    found: set[str] = set()
    truth: dict[str, str | None] = {}
    absent: set[str] = set()
    seen: set[str] = set()
    for track in tracks:
        if len(records) >= n:
            break
        query, _ = noisy_query(track, rng)
        try:
            raw = row_to_raw({"artist": query.artist or None, "title": query.title,
                              "isrc": query.isrc, "duration_ms": query.duration_ms})
        except RowRejected:
            continue
        if raw["track_id"] in seen:
            continue
        seen.add(raw["track_id"])
        raw["source"] = "bench-chart-scraper"
        records.append(raw)
        if rng.random() < absent_share:
            absent.add(track.key)
            truth[raw["track_id"]] = None
        else:
            found.add(raw["track_id"])
            truth[raw["track_id"]] = track.isrc
    catalog = workdir / "real_catalog.csv"
    with catalog.open("w", newline="", encoding="utf-8") as fh:
        out = csv.writer(fh)
        out.writerow(("artist", "title", "isrc", "duration_ms"))
        for track in tracks:
            if track.key not in absent:
                out.writerow((track.artist, track.title, track.isrc, track.duration_ms))
    return records, found, catalog, truth


def isrc_accuracy(latest: dict[str, dict[str, Any]], truth: dict[str, str | None]) -> None:
    """Print recall and precision of the published ISRCs against the real ones, overall and
    for those Spotify alone gave, and the second looks' part in them."""
    present = sum(1 for isrc in truth.values() if isrc)
    rows: Counter[str] = Counter()
    for key, value in latest.items():
        if key not in truth or not value.get("isrc") or value["input"].get("isrc"):
            continue
        right = value["isrc"] == truth[key]
        source = (value.get("sources") or {}).get("isrc", {}).get("provider", "?")
        second = any(o["reason"] == "second_look" and o["outcome"] == "matched"
                     for o in value["providers"])
        for group in ("all", f"from {source}") + (("by a second look",) if second else ()):
            rows[group, right] += 1
        if truth[key] is None:
            rows["absent published", True] += 1
    given = sum(1 for key, v in latest.items() if truth.get(key) and v["input"].get("isrc"))
    print(f"ISRCs against the truth ({present} of {len(truth)} tracks in the catalog; {given} "
          "carried their own ISRC and are left out):")
    for group in sorted({g for g, _ in rows}):
        ok, bad = rows[group, True], rows[group, False]
        if group == "absent published":
            print(f"  tracks the catalog lacks, published with an ISRC: {ok}")
            continue
        print(f"  {group}: {ok + bad} published, {ok} right, {bad} wrong, "
              f"precision {ok / max(1, ok + bad):.4f}")
    print(f"  recall (right ISRCs of the catalog's tracks): "
          f"{rows['all', True] / max(1, present - given):.4f}")


def print_misses(records: list[dict[str, Any]], latest: dict[str, dict[str, Any]],
                 truth: dict[str, str | None], catalog: Path, limit: int) -> None:
    """Up to ``limit`` tracks published with a wrong ISRC (absent ones too), and up to ``limit``
    tracks the catalog has that got no right ISRC: the query, the catalog's artist and title
    for the true ISRC, and what the providers answered."""
    import csv

    with catalog.open(newline="", encoding="utf-8") as fh:
        names = {row["isrc"]: f"{row['artist']} / {row['title']}" for row in csv.DictReader(fh)}
    missed = [r for r in records if truth.get(r["track_id"]) and not r.get("isrc")
              and (latest.get(r["track_id"]) or {}).get("isrc") != truth[r["track_id"]]]
    print(f"catalog tracks without their right ISRC: {len(missed)}"
          + (f"; the first {min(limit, len(missed))}:" if limit and missed else ""))
    wrong = [r for r in records if not r.get("isrc") and (latest.get(r["track_id"]) or {}).get(
        "isrc") not in (None, truth.get(r["track_id"]))]
    for r in wrong[:limit]:
        value = latest[r["track_id"]]
        source = (value.get("sources") or {}).get("isrc", {}).get("provider", "?")
        given = value.get("isrc")
        print(f"  - wrong: {r.get('artist')!r} / {r['title']!r} "
              f"(truth {names.get(truth.get(r['track_id']) or '', 'absent')!r}) got "
              f"{names.get(str(given), given)!r} from {source}")
    for r in missed[:limit]:
        value = latest.get(r["track_id"])
        answered = ("parked or dead-lettered" if value is None else ", ".join(
            f"{o['provider']} {o['outcome']}" + (f" ({o['reason']})" if o["reason"] else "")
            for o in value["providers"] if o["outcome"] != "skipped"))
        true_name = names.get(truth[r["track_id"]] or "")
        print(f"  - {r.get('artist')!r} / {r['title']!r} is {true_name!r}: {answered}")


def latest(values: dict[str, dict[str, Any]], value: dict[str, Any]) -> None:
    old = values.get(value["track_id"])
    if old is None or value["revision"] >= old["revision"]:
        values[value["track_id"]] = value


def finished(value: dict[str, Any]) -> bool:
    """No stage left ``deferred`` or ``failed``: nothing more to come for the track."""
    return all(o["outcome"] not in ("deferred", "failed") for o in value["providers"])


class Reader:
    """Reads a topic from the start as it grows, keeping what the bench needs of each
    record: the first publication's time per key, the latest revision per key, and whether
    a key's revision ever went down in its partition's order."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self._bootstrap, self._topic = bootstrap, topic
        self._consumer: AIOKafkaConsumer | None = None
        self._tps: list[TopicPartition] = []
        self.first_ms: dict[str, int] = {}
        self.latest: dict[str, dict[str, Any]] = {}
        self.last_revision: dict[str, int] = {}
        self.regressions = 0
        self.count = 0
        self.messages: list[Any] = []

    async def read(self, *, keep: bool = False, decoded: bool = True) -> None:
        if self._consumer is None:
            self._consumer = AIOKafkaConsumer(**kafka_kwargs(self._bootstrap),
                                              enable_auto_commit=False)
            await self._consumer.start()
            parts = None
            while not parts:
                await self._consumer._client.force_metadata_update()
                parts = self._consumer.partitions_for_topic(self._topic)
            tps = [TopicPartition(self._topic, p) for p in sorted(parts)]
            self._consumer.assign(tps)
            await self._consumer.seek_to_beginning(*tps)
            self._tps = tps
        # Up to the end the topic has now: a topic that keeps growing is read again next time.
        ends = await self._consumer.end_offsets(self._tps)
        while [tp for tp, end in ends.items() if await self._consumer.position(tp) < end]:
            batch = await self._consumer.getmany(timeout_ms=1000, max_records=5000)
            for msgs in batch.values():
                for m in msgs:
                    self.count += 1
                    if keep:
                        self.messages.append(m)
                    if not decoded or m.key is None:
                        continue
                    key = m.key.decode()
                    value = decode("EnrichedTrack", m.value)
                    self.first_ms.setdefault(key, m.timestamp)
                    if value["revision"] < self.last_revision.get(key, -1):
                        self.regressions += 1
                    self.last_revision[key] = value["revision"]
                    latest(self.latest, value)

    async def stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()


async def sample_waiting(port: int, samples: list[tuple[float, dict[str, float]]],
                         frames: list[Snapshot]) -> None:
    """Every SAMPLE_S, how many calls wait for each provider's budget (the worker's gauge);
    every FRAME_S, the whole scrape as ``trackflow top`` reads it."""
    while True:
        text = await scrape(port)
        now = time.monotonic()
        samples.append((now, {
            name: metric_value(text, "trackflow_ratelimit_waiting_calls", provider=name) or 0.0
            for name in PROVIDERS}))
        if not frames or now - frames[-1].t >= FRAME_S:
            frames.append(parse(text, now))
        await asyncio.sleep(SAMPLE_S)


def eta_accuracy(etas: list[tuple[float, float]], start: float, finished: float) -> str:
    """The ETA shown against the time left, at the end of the first publication, 30 s and
    60 s later, and the range over the samples from then until 30 s before the end (the last
    seconds are a few calls either way)."""
    later = [(t, e / (finished - t)) for t, e in etas if start <= t < finished - 30]
    if not later:
        return "no samples"
    marks = []
    for after in (0, 30, 60):
        at = next(((t, r) for t, r in later if t >= start + after), None)
        if at is not None:
            marks.append(f"+{after} s: {at[1]:.2f}")
    rest = [r for t, r in later if t >= start + 60]
    span = f"; from +60 s {min(rest):.2f}-{max(rest):.2f}" if rest else ""
    return ", ".join(marks) + span


def top_eta(frames: list[Snapshot]) -> tuple[float | None, str | None, str]:
    """The backlog ETA ``trackflow top`` shows at the last frame (its rates over the frames
    of the last ETA_WINDOW_S), the provider that sets it, and each provider's part of it
    (calls still needed at the rate left for refreshes)."""
    cur = frames[-1]
    window = next((f for f in frames if cur.t - f.t <= ETA_WINDOW_S), None)
    view = build_view(cur, cur, window=window)
    parts = " ".join(
        f"{r.provider[:2]} {r.backlog_calls:.0f}/{r.backlog_calls / r.backlog_eta_s:.2f}"
        for r in view.providers if r.backlog_calls and r.backlog_eta_s)
    return view.backlog_eta_s, view.backlog_eta_provider, parts


def busy_use(samples: list[tuple[float, dict[str, float]]], provider: str,
             entries: list[dict[str, Any]], sim_started: float, allowed: float,
             backlog: int) -> tuple[float, float]:
    """Seconds during which at least ``backlog`` calls waited for ``provider`` (a sample
    counts for the SAMPLE_S after it), and its calls in those seconds against its rate. One
    waiting call may be the only one, sleeping for the next slot; a few mean the next slots
    are all claimed. The simulator's request log keeps the last 10,000 requests: in a long
    run this is the end of it."""
    busy = [t for t, waiting in samples if waiting[provider] >= backlog]
    sent = sorted(sim_started + e["at"] for e in entries if e["endpoint"] != "token")
    if sent:
        busy = [t for t in busy if t >= sent[0]]
    if not busy:
        return 0.0, 0.0
    n = sum(1 for at in sent for t in busy if t <= at < t + SAMPLE_S)
    seconds = len(busy) * SAMPLE_S
    return seconds, n / seconds / allowed


def idle_gaps(entries: list[dict[str, Any]], interval: float) -> tuple[float, float]:
    """Seconds of a provider's active window left unused: the sum, over the gaps between its
    consecutive calls longer than 1.5 paced intervals, of the gap less one interval; and the
    share of those seconds in the last tenth of the window (a tail, not a stall)."""
    sent = sorted(e["at"] for e in entries if e["endpoint"] != "token")
    if len(sent) < 2:
        return 0.0, 0.0
    idle = tail = 0.0
    end = sent[0] + 0.9 * (sent[-1] - sent[0])
    for a, b in itertools.pairwise(sent):
        if b - a > 1.5 * interval:
            idle += b - a - interval
            if a >= end:
                tail += b - a - interval
    return idle, tail / idle if idle else 0.0


def waiting_series(samples: list[tuple[float, dict[str, float]]], started: float,
                   provider: str, step: float = 10.0) -> list[tuple[int, float]]:
    """Mean calls waiting for ``provider`` per ``step`` seconds since ``started``."""
    buckets: dict[int, list[float]] = {}
    for t, waiting in samples:
        buckets.setdefault(int((t - started) // step), []).append(waiting[provider])
    return [(int(k * step), round(sum(v) / len(v), 1)) for k, v in sorted(buckets.items())]


async def trickle(bootstrap: str, topic: str, records: list[dict[str, Any]], rate: float
                  ) -> None:
    """Produce ``records`` at ``rate`` per second, one second's worth at a time."""
    per_s = max(1, round(rate))
    for i in range(0, len(records), per_s):
        await produce(bootstrap, topic, encoded(records[i:i + per_s]))
        await asyncio.sleep(per_s / rate)


async def main(args: argparse.Namespace) -> None:
    limits = scaled(args.scale)
    async with Bench("burst", keep_logs=args.keep_logs, stack_dir=args.stack_dir) as bench:
        print(__doc__.split("\n\n", 2)[2].strip())
        print(f"\nrun: {bench.describe()}")
        kind = "real, noisy" if args.real else "generated"
        print(f"limits x{args.scale}, {args.tracks} tracks ({kind}), "
              f"{args.partitions} partitions, trickle {args.trickle}/s")
        trickled: list[dict[str, Any]] = []
        if args.real:
            records, found, csv_path, truth = real_burst(bench.workdir, args.tracks,
                                                         args.seed, args.absent_share)
            sim = bench.simulator(limits, latency_ms=LATENCY_MS, size=0, catalog=csv_path)
        else:
            extra = int(args.trickle * args.max_s)
            size = args.catalog_size or catalog_size(args.tracks + extra)
            tracks = catalog_records(size, args.seed, count=args.tracks + extra)
            if len(tracks) < args.tracks + extra:
                raise SystemExit(f"the catalog of {size} tracks has only {len(tracks)} "
                                 f"distinct ones")
            records = bench_records(tracks[:args.tracks], args.tracks)
            trickled = bench_records(tracks[args.tracks:], extra, start=args.tracks)
            found = {r["track_id"] for r in records}
            truth: dict[str, str | None] = {}
            sim = bench.simulator(limits, latency_ms=LATENCY_MS, size=size, seed=args.seed)
        topics = await bench.topics(args.partitions)
        keys = {r["track_id"] for r in records}
        env = {**sim.worker_env(), "TRACKFLOW_REFRESH__DELAY_S": str(args.refresh_delay),
               # The reprocessing agent replays the first-look misses for their second look.
               "TRACKFLOW_WORKER__AGENTS": '["enrich", "refresh", "reprocess"]'}
        worker = bench.worker(topics, partitions=args.partitions, env=env, name="burst")
        await worker.wait_ready()
        await sim.reset()
        started = time.monotonic()
        produced_ms = time.time() * 1000
        await produce(bench.bootstrap, topics.raw, encoded(records))
        log(f"{len(records)} tracks produced ({len(found)} in the catalog)")
        feeder = (asyncio.create_task(trickle(bench.bootstrap, topics.raw, trickled,
                                              args.trickle)) if trickled else None)
        # The simulator stamps requests with seconds since it started: where that is on ours.
        asked = time.monotonic()
        health = await http_json(f"{sim.url}/_sim/health")
        sim_started = (asked + time.monotonic()) / 2 - float(health["uptime_s"])
        samples: list[tuple[float, dict[str, float]]] = []
        frames: list[Snapshot] = []
        sampler = asyncio.create_task(sample_waiting(worker.web_port, samples, frames))
        enriched = Reader(bench.bootstrap, topics.enriched)
        dlq = Reader(bench.bootstrap, topics.dlq)
        series: list[tuple[float, int, float, float]] = []
        etas: list[tuple[float, float]] = []  # (t, the backlog ETA top showed then)
        drained_at: float | None = None
        done_95: float | None = None
        published_95: float | None = None
        eta: tuple[float, float] | None = None
        top: tuple[float | None, str | None] = (None, None)
        finished_at: float | None = None
        refreshed_at: float | None = None
        last_change = time.monotonic()
        last_share = -1.0
        while time.monotonic() - started < args.max_s:
            await asyncio.sleep(10)
            await enriched.read()
            await dlq.read(keep=True, decoded=False)
            now = {k: v for k, v in enriched.latest.items() if k in keys}
            t = time.monotonic() - started
            lettered = {m.key.decode() for m in dlq.messages if m.key}
            done = len(set(now) | (lettered & keys))
            share = sum(v["status"] == "complete" for v in now.values()) / len(keys)
            n_fin = sum(1 for k in found if k in now and finished(now[k]))
            fin = n_fin / max(1, len(found))
            fin_published = n_fin / max(1, sum(1 for k in found if k in now))
            series.append((t, len(now), share, fin))
            shown, _, parts = top_eta(frames) if frames else (None, None, "")
            if shown is not None:
                etas.append((t, shown))
            print(f"t={t:6.0f} s published={len(now):5d} finished={fin:.3f} "
                  f"(of those published {fin_published:.3f}) complete={share:.3f} "
                  f"dead letters={len(dlq.messages)} ETA="
                  f"{'-' if shown is None else f'{shown:.0f} s'} ({parts})", flush=True)
            if eta is None and drained_at is None and done >= len(keys) and samples:
                # What `trackflow top` tells now: the calls waiting for each provider at its
                # paced rate; the slowest is the backlog's ETA.
                eta = (t, max(samples[-1][1][p] / paced(limits, p) for p in PROVIDERS))
                top = top_eta(frames)[:2]
            if drained_at is None and done >= len(keys):
                # When the last track was first published (its CreateTime), not this sample.
                drained_at = max([*(enriched.first_ms[k] for k in now),
                                  *(m.timestamp for m in dlq.messages if m.key
                                    and m.key.decode() in keys)]) / 1000 - produced_ms / 1000
            if done_95 is None and fin >= 0.95:
                done_95 = t
            if refreshed_at is None and drained_at is not None and fin_published >= 1.0:
                # Every published track finished: the refresh backlog is done (second looks
                # publish later, at replay priority, and come finished).
                refreshed_at = t
            if published_95 is None and drained_at is not None and fin_published >= 0.95:
                published_95 = t
            if fin != last_share:
                last_share, last_change, finished_at = fin, time.monotonic(), t
            elif drained_at is not None and time.monotonic() - last_change >= args.settle:
                break
            if drained_at is not None and fin >= 1.0:
                break
        sampler.cancel()
        if feeder is not None:
            feeder.cancel()
        report = await sim.report()
        worker_metrics = await scrape(worker.web_port)
        logs = {name: await sim.requests(name) for name in PROVIDERS}
        busy = {name: busy_use(samples, name, logs[name], sim_started,
                               limits[name][0] / limits[name][1], args.backlog)
                for name in PROVIDERS}
        idle = {name: idle_gaps(logs[name], 1.0 / paced(limits, name)) for name in PROVIDERS}
        bench.stop_worker(worker)
        await enriched.stop()
        await dlq.stop()

        spotify = paced(limits, "spotify")
        ceiling = sum(paced(limits, p) for p in ISRC_PROVIDERS)
        if drained_at is not None:
            rate = len(keys) / drained_at
            print(f"\nfirst publication: {len(keys)} tracks in {drained_at:.1f} s = "
                  f"{rate:.2f} tracks/s: {rate / spotify:.3f} of Spotify's paced "
                  f"{spotify:.2f}/s (every track needs it), {rate / ceiling:.3f} of "
                  f"MusicBrainz + Spotify paced ({ceiling:.2f}/s, the ISRC's ceiling)")
        else:
            print(f"\nfirst publication: not finished within {args.max_s:.0f} s")
        sent = sorted(sim_started + e["at"] for e in logs["spotify"] if e["endpoint"] != "token")
        if drained_at is not None:
            # The first publication's calls (later ones are refreshes). The burst's own clock:
            # produce started at ``started`` (monotonic).
            sent = [at for at in sent if at - started <= drained_at]
        if len(sent) > 1 and drained_at is not None and not args.trickle:
            first, last = sent[0] - started, sent[-1] - started
            print(f"Spotify's first call {first:.1f} s after the burst was produced; its calls "
                  f"in between at {(len(sent) - 1) / max(1e-9, last - first) / spotify:.3f} of its "
                  f"paced rate; the last first publication {drained_at - last:.1f} s after its "
                  f"last call (later stages waiting up to max_wait_s)")
        # A track Spotify could not match has only MusicBrainz for its ISRC: those tracks
        # bound the first publication too, at MusicBrainz's rate.
        misses = len({m.key for m in dlq.messages if m.key}) + sum(
            1 for k, v in enriched.latest.items() if k in keys and not v["input"].get("isrc")
            and any(o["provider"] == "spotify" and o["outcome"] == "not_found"
                    for o in v["providers"]))
        miss_s = misses / paced(limits, "musicbrainz")
        print(f"tracks Spotify could not match (MusicBrainz their only source of the ISRC): "
              f"{misses}, {miss_s:.0f} s at MusicBrainz's paced rate; first-publication bound "
              f"max({len(keys) / spotify:.0f} s at Spotify, {miss_s:.0f} s)"
              + (f": {max(len(keys) / spotify, miss_s) / drained_at:.3f} of it reached"
                 if drained_at else ""))
        mb = paced(limits, "musicbrainz")
        bound = len(found) / mb
        published_found = sum(1 for k in found if k in enriched.latest)

        def when(t: float | None, of: float) -> str:
            return (f"at {t:.0f} s = {t / bound:.2f}x the bound, {t / of:.2f}x all calls"
                    if t is not None else "not reached")

        everything = len(keys) / mb
        print(f"finishing: {len(found)} tracks the catalog has, {published_found} of them "
              f"published; bound {bound:.0f} s (one MusicBrainz call each at {mb:.2f}/s; "
              f"{everything:.0f} s for a call for every track of the burst, the absent too); "
              f"95 % of the catalog's finished {when(done_95, everything)}; 95 % of those "
              f"published {when(published_95, everything)}; finished at the end "
              f"{last_share:.3f}; revisions that went down in the topic: {enriched.regressions}")
        if args.trickle and published_95 is not None and args.trickle < mb:
            # Each trickled record asks MusicBrainz once at fresh priority, ahead of the
            # refreshes: the burst has what is left of its rate.
            left = len(keys) / (mb - args.trickle)
            print(f"with {args.trickle:g} fresh tracks/s trickling in, MusicBrainz has "
                  f"{mb - args.trickle:.2f}/s left for the burst: {left:.0f} s for a call for "
                  f"every burst track; 95 % of those published at {published_95 / left:.2f}x it")
        if eta is not None and finished_at is not None:
            took = finished_at - eta[0]
            done = (refreshed_at or finished_at) - eta[0]
            top_s, by = top
            shown = (f"{top_s:.0f} s (set by {by or 'the last due time'}): ETA/measured "
                     f"{top_s / done:.2f}" if top_s is not None and done > 0
                     else "none")
            print(f"backlog ETA at the end of the first publication (t={eta[0]:.0f} s), as "
                  f"trackflow top shows it: {shown}; every published track finished "
                  f"{done:.0f} s later; the slowest provider's waiting calls at its paced "
                  f"rate alone said {eta[1]:.0f} s ({eta[1] / max(done, 1e-9):.2f}); the "
                  f"finished share last grew (second looks too) {took:.0f} s later"
                  if took > 0 and done > 0 else "")
        if eta is not None and refreshed_at is not None:
            print("backlog ETA against the time every published track then took to finish "
                  "(samples after the first publication): " + eta_accuracy(
                      etas, eta[0], refreshed_at))
        if eta is not None and finished_at is not None and finished_at != refreshed_at:
            # The backlog counts the dead letters sent back for a second look too: they are
            # records of the raw topic not finished.
            print("backlog ETA against the time until the finished share last grew (second "
                  "looks included): " + eta_accuracy(etas, eta[0], finished_at))
        rows = []
        for name in PROVIDERS:
            r = report[name]
            window = float(r["duration_s"])
            n = int(r["requests"])
            achieved = (n - 1) / window if n > 1 and window > 0 else 0.0
            allowed = limits[name][0] / limits[name][1]
            lost = metric_value(worker_metrics, "trackflow_ratelimit_slots_lost_total",
                                provider=name) or 0
            busy_s, busy_ratio = busy[name]
            rows.append((name, n, window, achieved, allowed, achieved / allowed, busy_s,
                         busy_ratio, idle[name][0], idle[name][1],
                         f"{r['max_in_window']}/{r['limit']} per {r['window_s']:g} s",
                         r["violations"], int(lost)))
        print(table(("provider", "requests", "window s", "calls/s", "allowed/s", "ratio",
                     f"s with >={args.backlog} waiting", "ratio then", "idle s",
                     "idle in last tenth", "max_in_window", "violations", "slots lost"), rows))
        for name in ("musicbrainz", "spotify"):
            print(f"calls waiting for {name}, mean per 10 s:",
                  waiting_series(samples, started, name))
        kinds = Counter({(k, o): metric_value(worker_metrics, "trackflow_provider_calls_total",
                                              provider="lastfm", kind=k, outcome=o) or 0
                         for k in ("id", "search", "tags")
                         for o in ("found", "not_found", "deferred", "transient")})
        print("last.fm calls by kind and outcome (worker): "
              + ", ".join(f"{k}/{o} {int(v)}" for (k, o), v in sorted(kinds.items()) if v))
        letters = dlq.messages
        # A first-look miss is dead-lettered retryable on purpose, for its second look.
        retryable = sum(1 for m in letters if dict(m.headers).get("trackflow.errors.retryable")
                        == b"true" and dict(m.headers).get("trackflow.errors.reason")
                        != b"second_look")
        reasons = Counter(dict(m.headers).get("trackflow.errors.reason", b"").decode()
                          for m in letters)
        absent_letters = sum(1 for m in letters if m.key and m.key.decode() not in found)
        final = enriched.latest
        deferred = Counter(o["provider"] for v in final.values() for o in v["providers"]
                           if o["outcome"] == "deferred")
        per_track = Counter(enriched.last_revision)
        if truth:
            isrc_accuracy(enriched.latest, truth)
        if args.real:
            print_misses(records, enriched.latest, truth, csv_path, args.misses)
        print(f"dead letters: {len(letters)} ({retryable} retryable, second looks aside; "
              f"{dict(reasons)}; "
              f"{absent_letters} of tracks the catalog lacks); publications: {enriched.count}; "
              f"stages still deferred in latest revisions: {dict(deferred)}; "
              f"tracks published: {len(per_track)}")
        print("series (s, published, complete, finished):",
              [(round(t), n, round(s, 3), round(f, 3)) for t, n, s, f in series])
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            print("matplotlib not installed: no PNG (pip install matplotlib)")
            return
        fig, ax = plt.subplots(figsize=(7, 4))
        ts = [t for t, _, _, _ in series]
        ax.plot(ts, [n / len(keys) for _, n, _, _ in series], label="published")
        ax.plot(ts, [f for _, _, _, f in series], label="finished (of the catalog's)")
        ax.plot(ts, [s for _, _, s, _ in series], label="complete")
        ax.axvline(bound, color="grey", linestyle="--", label="bound (MusicBrainz)")
        ax.axvline(1.3 * bound, color="grey", linestyle=":", label="1.3x bound")
        ax.set_xlabel("seconds since the burst")
        ax.set_ylabel("share of tracks")
        ax.set_ylim(0, 1.02)
        ax.legend(loc="lower right")
        ax.set_title(f"burst of {len(keys)} {'real noisy' if args.real else 'generated'} "
                     f"tracks, limits x{args.scale}")
        fig.tight_layout()
        fig.savefig(args.png)
        print(f"chart: {args.png}")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Burst drain and the finishing of its tracks.")
    parser.add_argument("--tracks", type=int, default=600)
    parser.add_argument("--scale", type=int, default=4, help="the real limits times this")
    parser.add_argument("--real", action="store_true",
                        help="noisy queries of the real chart data, some absent from the catalog")
    parser.add_argument("--absent-share", type=float, default=0.19)
    parser.add_argument("--trickle", type=float, default=0.0,
                        help="fresh records of further tracks per second during the run")
    parser.add_argument("--catalog-size", type=int, default=0,
                        help="tracks in the simulator's generated catalog (default 1.25 N)")
    parser.add_argument("--long", action="store_true",
                        help="a day's backlog sped up: --scale 20 --tracks 10000 "
                             "--catalog-size 40000 --trickle 2 --max-s 3600")
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--refresh-delay", type=float, default=10.0,
                        help="TRACKFLOW_REFRESH__DELAY_S")
    parser.add_argument("--settle", type=float, default=60.0,
                        help="stop once the finished share has not changed for this long")
    parser.add_argument("--max-s", type=float, default=1500.0)
    parser.add_argument("--png", default="burst_complete.png")
    parser.add_argument("--backlog", type=int, default=3,
                        help="calls waiting for a provider that count as work waiting")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--misses", type=int, default=0,
                        help="with --real: print this many catalog tracks that got no right ISRC")
    add_common_options(parser)
    args = parser.parse_args()
    if args.long:
        args.scale, args.tracks, args.catalog_size = 20, 10_000, 40_000
        args.trickle, args.max_s = args.trickle or 2.0, 3600.0
    return args


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
