"""Progressive enrichment on a real broker, Redis and the simulator: deferred stages are
filled later by the refresh path, in newer revisions, across a SIGKILL, never out of order, and
the refresh table is left with no track once every track had its last round."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from typing import Any

import pytest

from tests.integration.harness import (
    TopicNames,
    avro_records,
    catalog_records,
    collect,
    http_json,
    produce,
    sim_limits_toml,
    snapshot,
    table_state,
    worker_rates_env,
)
from trackflow.agents.refresh_schedule import RefreshRequest
from trackflow.agents.tables import REFRESH_TABLE
from trackflow.schemas.codec import decode

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TRACKS = 100
# As test_resilience.FAST: limits scaled up so that only Discogs is scarce.
FAST_LIMITS = {"musicbrainz": (100, 1.0), "spotify": (3000, 30.0), "deezer": (500, 5.0),
               "lastfm": (1000, 5.0), "discogs": (6000, 60.0)}


def latest_by_key(values: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for v in values:
        if v["track_id"] not in out or v["revision"] >= out[v["track_id"]]["revision"]:
            out[v["track_id"]] = v
    return out


def requests_by_fate(msgs: list[Any]) -> tuple[list[RefreshRequest], list[RefreshRequest]]:
    """The refresh topic's requests (read whole: nothing is compacted within a test) as
    (handled, pending). A request is handled once a later record of its track follows it: its
    refresh's next round, or the tombstone of a track past its last round (only the handler of
    a request publishes either). Deduplicated: a request handled twice counts once."""
    last = {m.key: i for i, m in enumerate(msgs)}
    handled: list[RefreshRequest] = []
    pending: list[RefreshRequest] = []
    for i, m in enumerate(msgs):
        if m.value is not None:
            (handled if last[m.key] > i else pending).append(RefreshRequest.decode(m.value))
    return handled, pending


def outcome(record: dict[str, Any], provider: str) -> str | None:
    return next((o["outcome"] for o in record["providers"] if o["provider"] == provider), None)


async def test_sigkill_while_refreshes_are_scheduled_loses_none_repeats_none_keeps_order(
        bootstrap: str, topic_names: TopicNames, worker_factory: Any, sim_factory: Any) -> None:
    # Discogs is scarce (6 calls/s) and its stage waits 1 s at most: a burst defers most of
    # its stages, and the refresh path fills them at Discogs' pace.
    limits = {**FAST_LIMITS, "discogs": (60, 10.0)}
    sim = sim_factory(sim_limits_toml(limits), size=TRACKS + 100)
    url = sim["TRACKFLOW_SIMULATOR_URL"]
    env = {**sim, **worker_rates_env(limits),
           "TRACKFLOW_PROVIDERS__DISCOGS__MAX_WAIT_S": "1",
           "TRACKFLOW_REFRESH__DELAY_S": "3"}
    records = catalog_records(TRACKS + 100, count=TRACKS)
    keys = {r["track_id"] for r in records}
    worker = worker_factory(partitions=4, extra_env=env)
    await worker.wait_ready()
    await produce(bootstrap, topic_names.raw, avro_records(records))
    refresh_topic = topic_names.enriched + ".refresh"
    # Wait for the burst's first publications and a good share of refresh requests, then
    # kill the worker while refreshes are running: a tenth published, the others waiting.
    await collect(bootstrap, topic_names.enriched, until=TRACKS, timeout=120)
    scheduled = await collect(bootstrap, refresh_topic, until=TRACKS // 3, timeout=60)
    assert len(scheduled) >= TRACKS // 3, "a burst must defer Discogs' stages"
    deadline = time.monotonic() + 60
    while True:
        handled, pending = requests_by_fate(await snapshot(bootstrap, refresh_topic))
        done = len(handled)
        if done >= (done + len(pending)) // 10:
            break
        assert time.monotonic() < deadline, f"{done} refreshes handled within 60 s"
        await asyncio.sleep(0.2)
    assert pending, "the kill must find refreshes still waiting"
    print(f"killed with {done} of {done + len(pending)} refresh requests handled")
    worker.kill9()
    worker.restart()
    await worker.wait_ready()

    def settled(msgs: list[Any], requests: list[Any]) -> bool:
        # Every Discogs stage answered, and every refresh request so far (of any stage: one
        # whose breaker opened under load defers its stage too) handled, down to each track's
        # last round.
        values = [decode("EnrichedTrack", m.value) for m in msgs]
        latest = latest_by_key(values)
        return len(latest) == TRACKS and all(
            outcome(v, "discogs") not in ("deferred", "failed") for v in latest.values()
        ) and not requests_by_fate(requests)[1]

    deadline = time.monotonic() + 240
    enriched: list[Any] = []
    while time.monotonic() < deadline:
        requests = await snapshot(bootstrap, refresh_topic)
        enriched = await snapshot(bootstrap, topic_names.enriched)
        if settled(enriched, requests):
            break
        await asyncio.sleep(1)
    requests = await snapshot(bootstrap, refresh_topic)
    dlq = await snapshot(bootstrap, topic_names.dlq)
    report = await http_json(url + "/_sim/report")

    values = [decode("EnrichedTrack", m.value) for m in enriched]
    assert {v["track_id"] for v in values} == keys
    assert not dlq, "no record may be dead-lettered in a run without faults"
    for name, stats in report.items():
        assert stats["violations"] == 0, f"{name} limit exceeded: {stats}"
    # Order: per key (one partition each), the topic never goes back to an older revision.
    seen: dict[str, int] = {}
    by_revision: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
    for v in values:
        tid, rev = v["track_id"], v["revision"]
        assert rev >= seen.get(tid, 0), f"{tid}: revision {rev} after {seen[tid]}"
        seen[tid] = rev
        by_revision[tid, rev].append({k: x for k, x in v.items() if k != "enriched_at"})
    # Two publications of one revision must be the same record.
    repeated = {k: rs for k, rs in by_revision.items() if len(rs) > 1}
    for (tid, rev), rs in repeated.items():
        assert all(r == rs[0] for r in rs), f"{tid} revision {rev} published with two contents"
    # Lost: every refresh request handled, and each track's request deleted after its last
    # round; a refresh that filled something published its newer revision.
    published = set(by_revision)
    handled, pending = requests_by_fate(requests)
    assert not pending, f"refreshes never handled: {[r.raw['track_id'] for r in pending]}"
    assert all(m.value is None for m in {m.key: m for m in requests}.values()), \
        "every track's last record on the refresh topic is its tombstone"
    assert all((r.raw["track_id"], r.revision) in published for r in handled), \
        "a request names a revision that was published"
    # Bounded: a track leaves the refresh table after its last round, once its raw record is
    # committed (within a commit interval or two here).
    deadline = time.monotonic() + 60
    while left := await table_state(bootstrap, topic_names, REFRESH_TABLE):
        assert time.monotonic() < deadline, \
            f"{len(left)} finished tracks still in the refresh table, e.g. {next(iter(left))}"
        await asyncio.sleep(1)
    latest = latest_by_key(values)
    filled = sum(outcome(v, "discogs") not in ("deferred", "failed") for v in latest.values())
    revised = sum(len(rs) > 1 for rs in _revisions_by_track(published).values())
    print(f"refresh records {len(requests)} (requests {len(handled)}), publications "
          f"{len(values)}, repeated revisions {len(repeated)}, tracks refreshed "
          f"{revised}/{TRACKS}, discogs answered for {filled}/{TRACKS}")
    assert filled == TRACKS, "after the refreshes drain every Discogs stage must be answered"
    assert revised, "refreshes must have published newer revisions"


def _revisions_by_track(published: set[tuple[str, int]]) -> dict[str, set[int]]:
    out: dict[str, set[int]] = defaultdict(set)
    for tid, rev in published:
        out[tid].add(rev)
    return out
