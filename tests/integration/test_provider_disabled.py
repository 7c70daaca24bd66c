"""A worker whose Last.fm key and Discogs token the providers reject disables both, and keeps going.

Real broker, real Redis, the simulator (which answers a wrong Last.fm key with error 10 and HTTP
403, a wrong Discogs token with 401) and a worker process: records skip the two providers as
``skipped: provider_disabled``, are published, nothing is dead-lettered for them, no further
request reaches them, ``trackflow_provider_disabled`` is 1 for them, and the worker logged one line
per provider naming the variable to fix and never the wrong secret.
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

import pytest

from tests.integration.harness import (
    TopicNames,
    WorkerProcess,
    avro_records,
    catalog_records,
    collect,
    http_json,
    metric_value,
    produce,
    scrape,
    sim_limits_toml,
    worker_rates_env,
)
from trackflow.schemas.codec import decode

pytestmark = [pytest.mark.integration]

FAST = {"musicbrainz": (100, 1.0), "spotify": (3000, 30.0), "deezer": (500, 5.0),
        "lastfm": (200, 1.0), "discogs": (6000, 60.0)}
WRONG_KEY = "0000wrong-lastfm-key-0000"
WRONG_TOKEN = "wrong-discogs-token-zz"
SEED = random.randrange(1_000_000)


async def wait_enriched(bootstrap: str, topic: str, at_least: int, worker: WorkerProcess
                        ) -> list[dict[str, Any]]:
    msgs = await collect(bootstrap, topic, until=at_least, timeout=60)
    assert len(msgs) >= at_least, (f"expected {at_least} enriched records, got {len(msgs)}:\n"
                                   f"{worker.log_text()[-3000:]}")
    return [decode("EnrichedTrack", m.value) for m in msgs]


async def wait_handled(worker: WorkerProcess, n: int, within_s: float = 60) -> str:
    """A scrape once the worker has read ``n`` records and published (or dead-lettered) them."""
    deadline = time.monotonic() + within_s
    read = out = 0.0
    while time.monotonic() < deadline:
        text = await scrape(worker.web_port)
        read = metric_value(text, "trackflow_records_in_total") or 0.0
        out = metric_value(text, "trackflow_records_out_total") or 0.0
        if read >= n and out >= n:
            return text
        await asyncio.sleep(0.5)
    raise AssertionError(f"expected {n} records handled, read {read} wrote {out}:\n"
                         f"{worker.log_text()[-3000:]}")


async def sim_requests(sim_url: str, provider: str) -> int:
    return int((await http_json(f"{sim_url}/_sim/report"))[provider]["requests"])


async def test_rejected_credentials_disable_the_provider_and_nothing_is_dead_lettered(
        bootstrap: str, topic_names: TopicNames, worker_factory: Any, sim_factory: Any) -> None:
    sim = sim_factory(sim_limits_toml(FAST), size=400, seed=SEED)
    env = {**sim, **worker_rates_env(FAST), "TRACKFLOW_LASTFM_API_KEY": WRONG_KEY,
           "TRACKFLOW_DISCOGS_TOKEN": WRONG_TOKEN}
    worker = worker_factory(partitions=4, extra_env=env)
    await worker.wait_ready()
    records = catalog_records(400, SEED, count=60)

    await produce(bootstrap, topic_names.raw, avro_records(records[:10]))
    await wait_handled(worker, 10)
    sent = {p: await sim_requests(sim["TRACKFLOW_SIMULATOR_URL"], p) for p in ("lastfm", "discogs")}

    await produce(bootstrap, topic_names.raw, avro_records(records[10:]))
    text = await wait_handled(worker, 60)

    for provider in ("lastfm", "discogs"):
        assert metric_value(text, "trackflow_provider_disabled", provider=provider) == 1, (
            f"expected {provider} disabled")
        after = await sim_requests(sim["TRACKFLOW_SIMULATOR_URL"], provider)
        assert after == sent[provider], (
            f"{provider} got {after - sent[provider]} requests after it was disabled")
        assert (metric_value(text, "trackflow_dead_letters_total", provider=provider) or 0) == 0
    for provider in ("musicbrainz", "spotify", "deezer"):
        assert metric_value(text, "trackflow_provider_disabled", provider=provider) == 0

    enriched = await wait_enriched(bootstrap, topic_names.enriched, 1, worker)
    later = [r for r in enriched if r["track_id"] in {x["track_id"] for x in records[10:]}]
    outcomes = {(o["provider"], o["outcome"], o["reason"]) for r in later for o in r["providers"]}
    assert ("lastfm", "skipped", "provider_disabled") in outcomes
    assert ("discogs", "skipped", "provider_disabled") in outcomes
    assert not {o for o in outcomes if o[0] in ("lastfm", "discogs") and o[1] == "failed"}

    dead = await collect(bootstrap, topic_names.dlq, until=1000, timeout=3)
    providers = {dict(m.headers).get("trackflow.errors.provider", b"").decode() for m in dead}
    assert not providers & {"lastfm", "discogs"}, f"dead letters for disabled providers: {dead}"

    log = worker.log_text()
    for provider, variable in (("lastfm", "TRACKFLOW_LASTFM_API_KEY"),
                               ("discogs", "TRACKFLOW_DISCOGS_TOKEN")):
        lines = [line for line in log.splitlines()
                 if "event=provider_disabled" in line and f"provider={provider}" in line]
        assert len(lines) == 1, f"expected one log line for {provider}, got {lines}"
        assert f"fix={variable}" in lines[0]
    assert WRONG_KEY not in log and WRONG_TOKEN not in log, "a secret reached the log"
