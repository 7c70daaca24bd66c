"""A rolling restart with static membership: every worker stopped and started in turn, under
its name and on its data directory, while tracks flow. Nothing moves, nothing is lost, no
revision is published out of order, and each restart reads only its tables' changelog tail."""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

import pytest

from tests.integration.harness import (
    TopicNames,
    WorkerProcess,
    avro_records,
    catalog_records,
    collect,
    produce,
    sim_limits_toml,
    worker_rates_env,
)
from trackflow.schemas.codec import decode

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TRACKS = 300
LIMITS = {"musicbrainz": (100, 1.0), "spotify": (3000, 30.0), "deezer": (500, 5.0),
          "lastfm": (1000, 5.0), "discogs": (6000, 60.0)}
ASSIGNED = re.compile(r"event=partitions_assigned generation=(\S+) partitions=(\S+)")


def assignments(worker: WorkerProcess, since: int = 0) -> list[tuple[str, str]]:
    """(generation, partitions) of each assignment the worker logged after ``since`` chars."""
    return ASSIGNED.findall(worker.log_text()[since:])


async def test_a_rolling_restart_of_three_static_members_moves_no_partition(
        bootstrap: str, topic_names: TopicNames, worker_factory: Any, sim_factory: Any) -> None:
    sim = sim_factory(sim_limits_toml(LIMITS), size=TRACKS + 100)
    # A restart must come back within the session: 45 s on a loaded two-core machine.
    env = {**sim, **worker_rates_env(LIMITS), "TRACKFLOW_KAFKA__SESSION_TIMEOUT_S": "45"}
    workers = [worker_factory(partitions=6, name=f"static{i}",
                              extra_env={**env, "TRACKFLOW_WORKER__INSTANCE_ID": f"w{i}"})
               for i in range(3)]
    await asyncio.gather(*(w.wait_ready(timeout=120) for w in workers))
    # The group settles once all three joined: each worker's latest assignment is final.
    deadline = time.monotonic() + 90
    while True:
        latest = [assignments(w)[-1] if assignments(w) else ("", "") for w in workers]
        generations = {g for g, _ in latest}
        if len(generations) == 1 and "" not in generations:
            break
        assert time.monotonic() < deadline, f"the group did not settle: {latest}"
        await asyncio.sleep(0.5)
    before = [p for _, p in latest]
    marks = [len(w.log_text()) for w in workers]

    records = catalog_records(TRACKS + 100, count=TRACKS)
    half = TRACKS // 2
    await produce(bootstrap, topic_names.raw, avro_records(records[:half]))
    started = time.monotonic()
    for i, w in enumerate(workers):
        w.stop()  # SIGTERM: a static member leaves no LeaveGroup behind
        if i == 1:  # tracks arrive while a member is away
            await produce(bootstrap, topic_names.raw, avro_records(records[half:]))
        w.restart()
        await w.wait_ready(timeout=120)
    restart_s = time.monotonic() - started

    out = await collect(bootstrap, topic_names.enriched, until=TRACKS, timeout=180)
    values = [decode("EnrichedTrack", m.value) for m in out]
    assert {v["track_id"] for v in values} == {r["track_id"] for r in records}, "none lost"
    seen: dict[str, int] = {}
    for v in values:
        assert v["revision"] >= seen.get(v["track_id"], 0), f"{v['track_id']} out of order"
        seen[v["track_id"]] = v["revision"]

    after = [assignments(w, mark) for w, mark in zip(workers, marks, strict=True)]
    print(f"rolling restart of 3 workers in {restart_s:.1f} s; assignments logged after the "
          f"mark: {after}; before: {before}")
    for i, (lines, had) in enumerate(zip(after, before, strict=True)):
        # Each worker logs its own start's assignment, and nothing else: had it taken part in
        # a rebalance, it would have logged one more.
        assert [p for _, p in lines] == [had], (
            f"worker {i}: assignments {lines} during the rolling restart, had {had}")


async def test_a_second_worker_on_a_running_workers_data_directory_stops_naming_the_setting(
        topic_names: TopicNames, worker_factory: Any) -> None:
    quiet = {"TRACKFLOW_WATERFALL__ORDER": "[]", "TRACKFLOW_WORKER__AGENTS": '["enrich"]'}
    first = worker_factory(partitions=2, name="owner", extra_env=quiet)
    await first.wait_ready()
    second = worker_factory(partitions=2, name="intruder", extra_env={
        **quiet, "TRACKFLOW_WORKER__DATA_DIR": first.env_vars()["TRACKFLOW_WORKER__DATA_DIR"]})
    code = await asyncio.to_thread(second.proc.wait, 60)
    text = second.log_text()
    assert code != 0, text[-2000:]
    assert "worker.data_dir" in text and "in use by another worker" in text, text[-2000:]
    assert first.alive(), "the running worker is not disturbed"
