"""When the backlog is done: what it still asks of each provider, and what fresh records take.

A burst is finished when every record read or still in Kafka has had the calls it needs, first
at fresh priority, then (for the stages deferred meanwhile) at refresh priority. How long that
takes is a question per provider: the calls still to come over the rate the provider has left
for them. The calls waiting at the limiter alone are a poor answer: a refresh request sleeps
until it is due, and a record still in Kafka has asked nothing yet. This module estimates,
every few seconds and per provider, from this worker's own counters over the last minute:

- **the backlog's calls**: the fresh records not finished (not received yet by the agent, or
  received and not finished) times the calls a fresh record asks of the provider
  (counted per record, when it is finished: the calls it made, and one for each stage it was
  published with deferred, whose refresh calls again; counted when finished, since in a burst
  its calls come long after it is read), plus the refresh stages to come times the
  calls a refresh stage has made lately (a stage whose answer another stage already filled
  costs none);
- **the fresh demand**: the calls per second fresh records arriving now ask, the arrival rate
  times a fresh record's calls. The arrival rate is the median of the raw topic's growth rates
  between samples, less the dead letters sent back to it for another attempt (replays): a
  burst produced at once is one sample's spike, not a rate. (Records read
  are no measure of arrivals: the consumer fetches ahead of the agent, and a backlog is read
  as fast as it is worked off.)

It exports both (``trackflow_backlog_calls``, ``trackflow_fresh_call_demand``); the ETA is
then one division that every worker's figures add up to, done the same way by ``trackflow
top`` (``streams.top.backlog_eta``), the pipeline dashboard and the
``TrackflowRefreshBacklogWontDrain`` alert: the backlog's calls over the paced rate less the
fresh demand and the replays' share, at least the refreshes' minimum share (the priorities of
:mod:`providers.limiter`).
"""

from __future__ import annotations

import statistics
import time
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import faust
from faust.types import TP
from prometheus_client.metrics import MetricWrapperBase

from trackflow.agents import metrics
from trackflow.agents.inflight import InFlight
from trackflow.agents.stream_metrics import LagExporter
from trackflow.providers import metrics as pmetrics

#: How often a worker samples its counters, and how far back the estimate reads them.
SAMPLE_S = 5.0
WINDOW_S = 60.0


@dataclass(frozen=True, slots=True)
class ProviderCounts:
    """One provider's counters at a sample (totals since the worker started)."""

    fresh_calls: float = 0.0
    """Calls of the fresh records finished, and one per stage they left deferred."""
    refresh_calls: float = 0.0
    """Calls made at refresh priority."""
    refresh_stages: float = 0.0
    """Refresh stages over that were planned to call the provider."""
    pending_stages: float = 0.0
    """Refresh stages to come that will call the provider (a gauge, not a total)."""


@dataclass(frozen=True, slots=True)
class Sample:
    """The worker's counters at one time."""

    t: float
    fresh_records: float
    """Fresh records finished (not replays), since start."""
    fresh_backlog: float
    """Fresh records not finished: not read yet, or in flight (a gauge)."""
    fresh_produced: float = 0.0
    """The raw topic's end offsets, added up over the partitions this worker reads."""
    replays_sent: float = 0.0
    """Dead letters this worker sent back to the raw topic, since start: they arrive there
    too, and are no fresh records."""
    providers: Mapping[str, ProviderCounts] = field(default_factory=dict)
    refresh_read: float = 0.0
    """Refresh requests read and not finished (their stages are the pending ones)."""
    refresh_unread: float = 0.0
    """Refresh requests not read yet (the refresh topic's consumer lag)."""


@dataclass(frozen=True, slots=True)
class Demand:
    """What the backlog asks of one provider."""

    calls: float
    """Calls the backlog still needs."""
    fresh_rate: float
    """Calls per second that fresh records arriving now ask."""


def _ratio(num: float, den: float) -> float | None:
    return num / den if den > 0 else None


def _first(*ratios: float | None) -> float:
    return next((r for r in ratios if r is not None), 1.0)


class BacklogEstimate:
    """The samples of the last :data:`WINDOW_S` and the demand they show."""

    def __init__(self, window_s: float = WINDOW_S) -> None:
        self._window_s = window_s
        self._samples: deque[Sample] = deque()

    def add(self, sample: Sample) -> None:
        self._samples.append(sample)
        # Keep one sample at or past the window's start, so the window is whole.
        while len(self._samples) > 2 and sample.t - self._samples[1].t >= self._window_s:
            self._samples.popleft()

    def arrival_rate(self) -> float:
        """Fresh records arriving per second: the median of the raw topic's growth rates
        between samples, less the dead letters sent back to it (a rebalance's change of
        partitions is no arrival: negative rates count as 0, the median drops the jump). The
        replays a worker sends land on any worker's partitions: added up over the workers,
        the figures agree."""
        pairs = zip(self._samples, list(self._samples)[1:], strict=False)
        rates = [max(0.0, (b.fresh_produced - a.fresh_produced - b.replays_sent
                           + a.replays_sent) / (b.t - a.t))
                 for a, b in pairs if b.t > a.t]
        return statistics.median(rates) if rates else 0.0

    def demand(self, providers: Iterable[str]) -> dict[str, Demand]:
        """Per provider, the backlog's calls and the fresh demand (nothing before a sample)."""
        if not self._samples:
            return {}
        first, last = self._samples[0], self._samples[-1]
        arrivals = self.arrival_rate()
        records = last.fresh_records - first.fresh_records
        # Requests not read yet are taken to ask what those read ask.
        unread = 1.0 + (last.refresh_unread / last.refresh_read if last.refresh_read > 0
                        else 0.0)
        out = {}
        for name in providers:
            a = first.providers.get(name, ProviderCounts())
            b = last.providers.get(name, ProviderCounts())
            # A fresh record's calls, and a refresh stage's: over the window, else since the
            # worker started, else one.
            per_record = _first(_ratio(b.fresh_calls - a.fresh_calls, records),
                                _ratio(b.fresh_calls, last.fresh_records))
            per_stage = _first(
                _ratio(b.refresh_calls - a.refresh_calls, b.refresh_stages - a.refresh_stages),
                _ratio(b.refresh_calls, b.refresh_stages))
            out[name] = Demand(calls=last.fresh_backlog * per_record
                               + b.pending_stages * unread * per_stage,
                               fresh_rate=arrivals * per_record)
        return out


def _samples(metric: MetricWrapperBase) -> list[tuple[dict[str, str], float]]:
    """A family's current values with their labels (a counter's: its ``_total`` samples)."""
    out = []
    for family in metric.collect():
        wanted = family.name + "_total" if family.type == "counter" else family.name
        out += [(s.labels, s.value) for s in family.samples if s.name == wanted]
    return out


def _sum(metric: MetricWrapperBase, **match: str) -> dict[str, float]:
    """Per provider, the sum of the family's samples whose labels match."""
    out: dict[str, float] = {}
    for labels, value in _samples(metric):
        if all(labels.get(k) == v for k, v in match.items()):
            out[labels["provider"]] = out.get(labels["provider"], 0.0) + value
    return out


def read_sample(t: float, *, fresh_produced: float = 0.0, refresh_unread: float = 0.0
                ) -> Sample:
    """This worker's counters now, read from its own metric families (the figures its
    ``/metrics`` shows); the raw topic's end offsets and the refresh topic's lag given."""
    fresh = _sum(metrics.FRESH_CALLS)
    refresh = _sum(pmetrics.RATELIMIT_SLOTS, priority="refresh")
    stages = _sum(metrics.REFRESH_STAGES)
    pending = _sum(metrics.REFRESH_PENDING_STAGES)
    names = set(fresh) | set(refresh) | set(pending)
    providers = {n: ProviderCounts(fresh.get(n, 0.0), refresh.get(n, 0.0), stages.get(n, 0.0),
                                   pending.get(n, 0.0)) for n in names}
    (_, records), = _samples(metrics.FRESH_RECORDS) or [({}, 0.0)]
    (_, backlog), = _samples(metrics.FRESH_BACKLOG) or [({}, 0.0)]
    (_, read), = _samples(metrics.REFRESH_BACKLOG) or [({}, 0.0)]
    replays = sum(v for _, v in _samples(metrics.DLQ_REPLAYED))
    return Sample(t, records, backlog, fresh_produced, replays, providers, read, refresh_unread)


def export(estimate: BacklogEstimate, sample: Sample) -> None:
    """Add ``sample`` and set ``trackflow_backlog_calls`` and ``trackflow_fresh_call_demand``."""
    estimate.add(sample)
    for name, d in estimate.demand(sample.providers).items():
        metrics.BACKLOG_CALLS.labels(provider=name).set(d.calls)
        metrics.FRESH_CALL_DEMAND.labels(provider=name).set(d.fresh_rate)


def unfinished(lags: LagExporter, inflight: InFlight[Any], topic: str) -> int:
    """The records of ``topic`` this worker has not finished: per partition, those after the
    last one the agent received and those it received and has not finished (before any was
    received, the consumer lag; the fetcher reads ahead of the agent, so the lag alone is no
    backlog). A record finished after a slower one is finished, though not yet committed."""
    total = 0
    for partition, end in lags.ends(topic).items():
        left = inflight.not_finished(TP(topic, partition), end)
        total += left if left is not None else lags.lag(topic, partition)
    return total


def register_backlog_estimate(app: faust.App, *, lags: LagExporter, inflight: InFlight[Any],
                              raw_topic: str, refresh_topic: str) -> None:
    """Every :data:`SAMPLE_S`: sample this worker's counters and export the estimate.
    ``inflight``: the enrichment agent's records; ``lags``: the consumer lags and end offsets
    of the topics this worker reads."""
    metrics.FRESH_BACKLOG.set_function(lambda: unfinished(lags, inflight, raw_topic))
    estimate = BacklogEstimate()

    async def backlog_estimate() -> None:
        export(estimate, read_sample(time.monotonic(),
                                     fresh_produced=sum(lags.ends(raw_topic).values()),
                                     refresh_unread=lags.total(refresh_topic)))

    app.timer(SAMPLE_S, name="trackflow.backlog_estimate")(backlog_estimate)
