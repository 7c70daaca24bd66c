"""The DLQ reprocessing agent on a real broker: replays, parking, and a kill -9 mid-schedule."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.harness import (
    TopicNames,
    WorkerProcess,
    collect,
    create_topics,
    produce,
    table_state,
)
from trackflow.agents.deadletter import (
    H_HISTORY,
    H_PARKED_REASON,
    H_RAW_ATTEMPT,
    Failure,
    Origin,
    dead_letter_headers,
)
from trackflow.agents.retry_schedule import DONE
from trackflow.agents.tables import DLQ_SCHEDULE_TABLE

pytestmark = pytest.mark.integration

PARTITIONS = 4
CT = ("content-type", b"application/json")
RETRYABLE = Failure("provider:spotify", "TransientError", "HTTP 503", "provider_unavailable",
                    True, "spotify")
INVALID = Failure("validate", "InvalidRecord", "bad isrc", "invalid_isrc", False)
Record = tuple[bytes | None, bytes, list[tuple[str, bytes]]]


def start_reprocess_worker(workdir: Path, topics: TopicNames, **dlq: str) -> WorkerProcess:
    """``trackflow worker`` running the reprocessing agent alone."""
    return WorkerProcess.start(workdir, topics, partitions=PARTITIONS, extra_env={
        "TRACKFLOW_WORKER__AGENTS": '["reprocess"]',
        **{f"TRACKFLOW_DLQ__{k.upper()}": v for k, v in dlq.items()},
    })


@pytest.fixture
def reprocess_workers(tmp_path: Path) -> Any:
    started: list[WorkerProcess] = []

    def start(topics: TopicNames, **dlq: str) -> WorkerProcess:
        proc = start_reprocess_worker(tmp_path / f"w{len(started)}", topics, **dlq)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()


def dead_letter(i: int, failure: Failure, *, attempt: int = 1,
                not_before_ms: int | None = None) -> Record:
    key = f"track-{i}".encode()
    value = json.dumps({"track_id": key.decode(), "artist": f"A{i}", "title": f"T{i}"}).encode()
    raw_headers = [CT] + ([(H_RAW_ATTEMPT, str(attempt).encode())] if attempt > 1 else [])
    headers = dead_letter_headers(raw_headers, failure, Origin("tracks.raw", i % PARTITIONS, i,
                                                               None, "trackflow"),
                                  attempt=attempt, now_ms=int(time.time() * 1000),
                                  not_before_ms=not_before_ms)
    return key, value, headers


async def gauge(worker: WorkerProcess, name: str) -> float | None:
    """One gauge from the worker's /metrics, None while it cannot be read."""
    try:
        async with httpx.AsyncClient() as client:
            text = (await client.get(f"http://127.0.0.1:{worker.web_port}/metrics",
                                     timeout=2)).text
    except httpx.HTTPError:
        return None
    found = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else None


async def test_retryable_dead_letters_are_replayed_and_the_rest_parked(
        bootstrap: str, topic_names: TopicNames, reprocess_workers: Any) -> None:
    await create_topics(bootstrap, [topic_names.raw, topic_names.dlq, topic_names.parked],
                        PARTITIONS)
    worker = reprocess_workers(topic_names, backoff_base_s="0.5", backoff_cap_s="2",
                               max_attempts="3")
    await worker.wait_ready()
    retryable = [dead_letter(i, RETRYABLE, attempt=1 + i % 2) for i in range(20)]
    others = [dead_letter(100, INVALID), dead_letter(101, RETRYABLE, attempt=3),
              (b"track-102", b"\x00undecodable", [])]
    await produce(bootstrap, topic_names.dlq, retryable + others)

    replayed = await collect(bootstrap, topic_names.raw, until=20, timeout=30)
    parked = await collect(bootstrap, topic_names.parked, until=3, timeout=15)

    assert sorted(m.key for m in replayed) == sorted(k for k, _, _ in retryable), \
        "every retryable dead letter must be replayed to the raw topic exactly once"
    originals = {k: (v, h) for k, v, h in retryable}
    for msg in replayed:
        value, dl_headers = originals[msg.key]
        headers = dict(msg.headers)
        assert msg.value == value, "a replay must carry the original bytes"
        assert headers["content-type"] == CT[1], "a replay must keep the content-type"
        attempt = int(dict(dl_headers)["trackflow.errors.attempt"])
        assert headers[H_RAW_ATTEMPT] == str(attempt + 1).encode(), "attempt must be raised"
        history = json.loads(headers[H_HISTORY])
        assert [(e["attempt"], e["stage"]) for e in history] == [(attempt, "provider:spotify")]
        assert not [k for k in headers if k.startswith("__connect.errors.")]
    reasons = {m.key: dict(m.headers)[H_PARKED_REASON] for m in parked}
    assert reasons == {b"track-100": b"not_retryable", b"track-101": b"attempts_exhausted",
                       b"track-102": b"no_error_headers"}, f"unexpected parked set {reasons}"
    assert {m.key: m.value for m in parked}[b"track-102"] == b"\x00undecodable"
    assert worker.alive()


@pytest.mark.chaos
async def test_sigkill_while_retries_are_scheduled_loses_none(
        bootstrap: str, topic_names: TopicNames, reprocess_workers: Any) -> None:
    await create_topics(bootstrap, [topic_names.raw, topic_names.dlq, topic_names.parked],
                        PARTITIONS)
    worker = reprocess_workers(topic_names, backoff_base_s="0.5", backoff_cap_s="1")
    await worker.wait_ready()
    now_ms = int(time.time() * 1000)
    # Interleaved: half due in ~2-4 s (replayed before the kill, some of their offsets still
    # unacked behind a later one), half due in 10-15 s (still waiting at the kill).
    records = [dead_letter(i, RETRYABLE, not_before_ms=now_ms + (
        2_000 + 40 * i if i % 2 == 0 else 10_000 + 100 * i)) for i in range(50)]
    await produce(bootstrap, topic_names.dlq, records)

    before = await collect(bootstrap, topic_names.raw, until=25, timeout=20)
    assert len(before) >= 20, f"the early half should be replayed before the kill: {len(before)}"
    waiting = await gauge(worker, "trackflow_dlq_schedule_size")
    # Kill once the table's changelog has a "done" entry for every replay read so far: a
    # restarted worker must find them there to skip those whose offsets are not committed.
    replays, deadline = len({m.key for m in before}), time.monotonic() + 20
    while sum(e["state"] == DONE for e in (await table_state(
            bootstrap, topic_names, DLQ_SCHEDULE_TABLE)).values()) < replays:
        assert time.monotonic() < deadline, "the replays' done entries never reached the changelog"
        await asyncio.sleep(0.1)
    worker.kill9()
    print(f"killed with {len(before)} replayed, schedule size {waiting}")
    worker.restart()
    await worker.wait_ready()

    out = await collect(bootstrap, topic_names.raw, until=200, timeout=40,
                        stop_early=lambda msgs: len({m.key for m in msgs}) >= 50)
    counts = Counter(m.key for m in out)
    missing = {k for k, _, _ in records} - set(counts)
    duplicates = {k.decode(): n for k, n in counts.items() if n > 1}
    print(f"{len(out)} replays for 50 dead letters; duplicates: {duplicates or 'none'}")
    assert not missing, f"{len(missing)} scheduled retries were lost by the kill: {missing}"
    log = worker.log_text()
    skipped, resumed = log.count("event=dlq_already_replayed"), log.count("resumed=true")
    print(f"after the restart: {skipped} already replayed skipped, {resumed} resumed waiting")
    assert resumed > 0, "the restarted worker must resume the waiting retries from the table"
    assert skipped > 0, "replays published before the kill but not yet acked must be skipped"
    late = [m for m in out if int(m.key.split(b"-")[1]) % 2 == 1]
    assert all(m.timestamp >= now_ms + 10_000 - 1_000 for m in late), \
        "a retry must not run before its not-before time, restart or not"


@pytest.mark.chaos
async def test_a_second_worker_joining_takes_over_waiting_retries(
        bootstrap: str, topic_names: TopicNames, reprocess_workers: Any) -> None:
    await create_topics(bootstrap, [topic_names.raw, topic_names.dlq, topic_names.parked],
                        PARTITIONS)
    first = reprocess_workers(topic_names, backoff_base_s="0.5", backoff_cap_s="1")
    await first.wait_ready()
    now_ms = int(time.time() * 1000)
    records = [dead_letter(i, RETRYABLE, not_before_ms=now_ms + 14_000 + 100 * i)
               for i in range(30)]
    await produce(bootstrap, topic_names.dlq, records)
    deadline = time.monotonic() + 10
    while await gauge(first, "trackflow_dlq_schedule_size") != 30.0:
        assert time.monotonic() < deadline, "the first worker should schedule all 30 retries"
        await asyncio.sleep(0.3)

    second = reprocess_workers(topic_names, backoff_base_s="0.5", backoff_cap_s="1")
    started = time.monotonic()
    # A rebalance must not wait for retries due far in the future.
    await second.wait_ready(timeout=25)
    print(f"second worker ready after {time.monotonic() - started:.1f} s")

    out = await collect(bootstrap, topic_names.raw, until=200, timeout=35,
                        stop_early=lambda msgs: len({m.key for m in msgs}) >= 30)
    counts = Counter(m.key for m in out)
    missing = {k for k, _, _ in records} - set(counts)
    duplicates = {k.decode(): n for k, n in counts.items() if n > 1}
    print(f"{len(out)} replays for 30 dead letters; duplicates: {duplicates or 'none'}")
    assert not missing, f"{len(missing)} retries were lost in the rebalance: {missing}"
    assert "resumed=true" in second.log_text(), "the new owner must resume the waiting retries"
    assert all(m.timestamp >= now_ms + 14_000 - 1_000 for m in out), "no retry may run early"
