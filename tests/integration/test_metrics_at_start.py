"""A fresh worker's ``/metrics``, before any traffic, already holds the series alerts query.

A counter that first appears at 1 hides that increment from ``rate()`` and ``increase()``, so the
first breaker transition, retry or Redis error would be invisible to the alerts built on them.
The names come from every dashboard panel, dashboard variable and alert rule, parsed with a
PromQL parser (``tests/unit/test_dashboards.py``); a family with a ``provider`` label must have
a sample for every provider, and before any record every counter must be exactly 0.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.harness import scrape
from tests.unit.test_dashboards import SYNTHETIC, all_queries, family_of, metric_names
from trackflow.providers.specs import PROVIDER_NAMES
from trackflow.streams.metrics_doc import sample_names

pytestmark = [pytest.mark.integration]


def samples(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Sample name -> [(labels, value)] of one scrape."""
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out.setdefault(s.name, []).append((dict(s.labels), s.value))
    return out


async def scrape_when_lag_is_known(port: int, within_s: float = 20.0) -> str:
    """A scrape once the worker has reported the lag of its assigned partitions (a timer)."""
    deadline = time.monotonic() + within_s
    text = await scrape(port)
    while "trackflow_consumer_lag_records{" not in text and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        text = await scrape(port)
    return text


async def test_fresh_worker_exports_every_queried_series_for_every_provider(
        worker_factory: Any, sim_process: dict[str, str]) -> None:
    worker = worker_factory(partitions=4, extra_env=sim_process)
    await worker.wait_ready()
    got = samples(await scrape_when_lag_is_known(worker.web_port))

    used = sorted({(n, where) for where, expr in all_queries() for n in metric_names(expr)
                   if n not in SYNTHETIC})
    assert used, "expected the dashboards and rules to name some metrics"
    absent = sorted({f"{n} (in {where})" for n, where in used if n not in got})
    assert not absent, ("a fresh worker has no sample of these metrics that dashboards or "
                        "alerts query:\n" + "\n".join(absent))

    families = sample_names()
    gaps = []
    for name in sorted({n for n, _ in used}):
        fam = families.get(name)
        if fam is None or "provider" not in fam.labels:
            continue
        have = {labels.get("provider") for labels, _ in got[name]}
        lacking = [p for p in PROVIDER_NAMES if p not in have]
        if lacking:
            gaps.append(f"{name}: no sample for {', '.join(lacking)}")
    assert not gaps, "families queried per provider lack providers:\n" + "\n".join(gaps)

    nonzero = sorted(f"{name}{labels} = {value}" for name, rows in got.items()
                     if name.startswith("trackflow_") and name.endswith("_total")
                     for labels, value in rows if value != 0)
    assert not nonzero, ("before any record every trackflow counter should be 0, these are "
                         "not:\n" + "\n".join(nonzero))
    disabled = [labels for labels, value in got["trackflow_provider_disabled"] if value != 0]
    assert not disabled, f"no provider should start disabled, these are: {disabled}"
    print(f"{len(used)} (metric, query) pairs checked; families: "
          f"{sorted({family_of(n) or n for n, _ in used})}")
