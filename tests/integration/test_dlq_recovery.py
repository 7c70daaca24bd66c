"""Dead letters end to end: a provider outage, replays after recovery, parking, CLI replay."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import Any

import pytest

from tests.integration.harness import (
    TRACKFLOW,
    TopicNames,
    avro_records,
    catalog_records,
    collect,
    http_json,
    metric_value,
    produce,
    scrape,
    sim_limits_toml,
    snapshot,
    worker_rates_env,
)
from trackflow.schemas.codec import decode

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# A record needs its MusicBrainz recording id, which only MusicBrainz may fill: while MusicBrainz
# is down, records cannot be published and must wait in the dead-letter queue.
NEEDS_MUSICBRAINZ = {
    "TRACKFLOW_WATERFALL__REQUIRED": '["musicbrainz_recording_id"]',
    "TRACKFLOW_WATERFALL__FIELDS__MUSICBRAINZ_RECORDING_ID__PROVIDERS": '["musicbrainz"]',
}
LIMITS = {"musicbrainz": (60, 1.0), "spotify": (3000, 30.0), "deezer": (500, 5.0),
          "lastfm": (1000, 5.0), "discogs": (6000, 60.0)}


def unknown_tracks(n: int) -> list[dict[str, Any]]:
    return [{"track_id": f"unknown-{i}", "artist": f"Nobody Knows {i}", "title": f"Demo Tape {i}",
             "isrc": None, "duration_ms": 200_000, "album": None, "spotify_id": None,
             "source": "it", "source_ref": None, "observed_at": None, "attributes": {}}
            for i in range(n)]


def latest_by_key(msgs: list[Any]) -> dict[bytes, dict[str, Any]]:
    out: dict[bytes, dict[str, Any]] = {}
    for m in sorted(msgs, key=lambda m: (m.partition, m.offset)):
        out[m.key] = decode("EnrichedTrack", m.value)
    return out


def headers_of(msg: Any) -> dict[str, str]:
    return {k: v.decode() for k, v in msg.headers}


async def test_outage_then_recovery_every_track_ends_enriched_or_parked_as_not_retryable(
        bootstrap: str, topic_names: TopicNames, worker_factory: Any, sim_factory: Any) -> None:
    sim = sim_factory(sim_limits_toml(LIMITS), size=1200)
    url = sim["TRACKFLOW_SIMULATOR_URL"]
    env = {**sim, **worker_rates_env(LIMITS), **NEEDS_MUSICBRAINZ,
           "TRACKFLOW_DLQ__BACKOFF_BASE_S": "2",
           "TRACKFLOW_DLQ__BACKOFF_CAP_S": "6", "TRACKFLOW_DLQ__MAX_ATTEMPTS": "8"}
    known = catalog_records(1200, count=150)
    unknown = unknown_tracks(10)
    worker = worker_factory(partitions=2, extra_env=env)
    await worker.wait_ready()
    await http_json(f"{url}/_sim/outage", "POST",
                    {"provider": "musicbrainz", "status": 503, "duration_s": 600})
    await produce(bootstrap, topic_names.raw, avro_records(known + unknown))
    known_keys = {r["track_id"].encode() for r in known}
    dlq = await collect(bootstrap, topic_names.dlq, until=10**6, timeout=60,
                        stop_early=lambda m: len({x.key for x in m} & known_keys) >= 50)
    dead_known = [m for m in dlq if m.key in known_keys]
    assert len({m.key for m in dead_known}) >= 50, "known tracks must wait in the DLQ in an outage"
    assert all(headers_of(m)["trackflow.errors.retryable"] == "true" for m in dead_known)
    classes = {headers_of(m)["__connect.errors.exception.class.name"] for m in dead_known}
    assert "BreakerOpen" in classes, (
        f"once MusicBrainz's breaker is open, the provider of a required field is out: "
        f"its records wait in the DLQ as retryable (error classes seen: {classes})")
    # MusicBrainz recovers.
    await http_json(f"{url}/_sim/outage", "POST",
                    {"provider": "musicbrainz", "status": 503, "duration_s": 0})

    keys = known_keys
    enriched = await collect(bootstrap, topic_names.enriched, until=10**6, timeout=150,
                             stop_early=lambda m: keys <= {x.key for x in m})
    parked = await collect(bootstrap, topic_names.parked, until=10**6, timeout=20,
                           stop_early=lambda m: len({x.key for x in m}) >= len(unknown))
    latest = latest_by_key(enriched)
    missing = keys - set(latest)
    print(f"dead letters: {len(await snapshot(bootstrap, topic_names.dlq))}"
          f", enriched: {len(latest)}, parked: {len(parked)}")
    assert not missing, f"{len(missing)} known tracks never reached tracks.enriched"
    still_failed = [k for k, v in latest.items()
                    if any(o["outcome"] == "failed" for o in v["providers"])]
    assert not still_failed, f"{len(still_failed)} tracks' latest version still shows a failure"
    replayed = [v for v in latest.values() if v["attempt"] > 1]
    assert replayed, "tracks dead-lettered in the outage must have been enriched by a replay"
    parked_keys = {m.key for m in parked}
    assert parked_keys == {u["track_id"].encode() for u in unknown}, (
        "only the tracks no provider knows may end parked")
    for m in parked:
        facts = headers_of(m)
        assert facts["trackflow.parked.reason"] == "not_retryable"
        assert facts["trackflow.errors.reason"] == "not_found"


async def test_a_parked_record_replayed_with_the_cli_after_the_fix_ends_up_enriched(
        bootstrap: str, topic_names: TopicNames, worker_factory: Any, sim_factory: Any) -> None:
    sim = sim_factory(sim_limits_toml(LIMITS), size=1200)
    url = sim["TRACKFLOW_SIMULATOR_URL"]
    env = {**sim, **worker_rates_env(LIMITS), **NEEDS_MUSICBRAINZ,
           # Short open periods: retries wait for the breaker, and this test should not.
           "TRACKFLOW_PROVIDERS__MUSICBRAINZ__BREAKER__OPEN_BASE_S": "1",
           "TRACKFLOW_PROVIDERS__MUSICBRAINZ__BREAKER__OPEN_CAP_S": "2",
           "TRACKFLOW_DLQ__BREAKER_JITTER_S": "0.5",
           "TRACKFLOW_DLQ__BACKOFF_BASE_S": "1",
           "TRACKFLOW_DLQ__BACKOFF_CAP_S": "2", "TRACKFLOW_DLQ__MAX_ATTEMPTS": "2"}
    tracks = catalog_records(1200, count=20)
    worker = worker_factory(partitions=2, extra_env=env)
    await worker.wait_ready()
    await http_json(f"{url}/_sim/outage", "POST",
                    {"provider": "musicbrainz", "status": 503, "duration_s": 600})
    await produce(bootstrap, topic_names.raw, avro_records(tracks))
    keys = {t["track_id"].encode() for t in tracks}
    parked = await collect(bootstrap, topic_names.parked, until=10**6, timeout=90,
                           stop_early=lambda m: keys <= {x.key for x in m})
    assert keys <= {m.key for m in parked}, "every track should be parked after its attempts"
    assert {headers_of(m)["trackflow.parked.reason"] for m in parked} == {"attempts_exhausted"}

    # The cause is fixed: MusicBrainz answers again, and fresh traffic closes its breaker. Then
    # an operator replays the parked records.
    await http_json(f"{url}/_sim/outage", "POST",
                    {"provider": "musicbrainz", "status": 503, "duration_s": 0})
    fresh = catalog_records(1200, count=400)[20:]
    for start in range(0, len(fresh), 10):
        await produce(bootstrap, topic_names.raw, avro_records(fresh[start:start + 10]))
        state = metric_value(await scrape(worker.web_port), "trackflow_breaker_state",
                             provider="musicbrainz")
        if state == 0:
            break
        await asyncio.sleep(0.5)
    assert state == 0, "MusicBrainz's breaker should close once it answers again"
    cli_env = {**worker.env_vars(), "PYTHONUNBUFFERED": "1"}
    proc = await asyncio.create_subprocess_exec(
        TRACKFLOW, "dlq", "replay", "--topic", topic_names.parked, "--yes", env=cli_env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    print(out.decode().strip())
    assert proc.returncode == 0, err.decode()
    replayed = int(out.decode().split("replayed ", 1)[1].split()[0])
    # Fresh tracks that met the half-open breaker may have been parked too; all are replayed.
    assert replayed >= len(tracks), out.decode()

    enriched = await collect(bootstrap, topic_names.enriched, until=10**6, timeout=90,
                             stop_early=lambda m: keys <= {x.key for x in m})
    assert keys <= {m.key for m in enriched}, "replayed parked records must end up enriched"
    by_key: dict[bytes, list[int]] = defaultdict(list)
    for m in enriched:
        by_key[m.key].append(decode("EnrichedTrack", m.value)["attempt"])
    assert all(attempts for attempts in by_key.values())
