"""The backlog's estimate: the calls it still needs per provider and what fresh records ask."""

from __future__ import annotations

import asyncio

import pytest
from faust.types import TP

from trackflow.agents import metrics
from trackflow.agents.backlog import (
    BacklogEstimate,
    ProviderCounts,
    Sample,
    read_sample,
    unfinished,
)
from trackflow.agents.inflight import InFlight
from trackflow.providers import metrics as pmetrics


def sample(t: float, records: float, backlog: float, in_flight: float = 0.0,
           **providers: ProviderCounts) -> Sample:
    """``backlog`` records not read yet, ``in_flight`` read and not finished; the raw topic
    holds ``records + backlog`` (nothing finished leaves it)."""
    return Sample(t, records, backlog + in_flight, records + backlog, 0.0, providers)


def test_a_burst_produced_at_once_is_a_backlog_not_an_arrival_rate() -> None:
    est = BacklogEstimate()
    # 600 records land at once, then 2/s trickle in; the worker finishes them at 10/s, and
    # each asked MusicBrainz once: a call, or a call given up past its deadline.
    # Read records stay in flight for 10 s: reading moves them from the lag into flight, which
    # is no arrival.
    est.add(sample(0, 0, 600, musicbrainz=ProviderCounts()))
    for i in range(1, 13):
        read = 10.0 * 5 * i
        est.add(sample(5.0 * i, read, 600 + 2.0 * 5 * i - read, in_flight=100,
                       musicbrainz=ProviderCounts(fresh_calls=read)))
    assert est.arrival_rate() == pytest.approx(2.0)
    (d,) = est.demand(["musicbrainz"]).values()
    assert d.fresh_rate == pytest.approx(2.0), "2 records/s asking one call each"
    assert d.calls == pytest.approx(600 + 120 - 600 + 100), "the records not finished, one each"


def test_dead_letters_sent_back_to_the_raw_topic_are_no_fresh_arrivals() -> None:
    est = BacklogEstimate()
    # The raw topic grows by 5/s: 4 of them second looks the reprocessing agent sent back.
    for i in range(13):
        est.add(Sample(5.0 * i, 0, 0, 25.0 * i, 20.0 * i))
    assert est.arrival_rate() == pytest.approx(1.0)


def test_refresh_stages_to_come_cost_what_the_recent_stages_cost() -> None:
    est = BacklogEstimate()
    # Early refresh stages found nothing left to ask (0 calls for 80 stages); in the last
    # minute every stage made one call: the 300 to come are taken at one each.
    est.add(sample(0, 0, 0, musicbrainz=ProviderCounts(refresh_calls=0, refresh_stages=80,
                                                       pending_stages=400)))
    est.add(sample(60, 0, 0, musicbrainz=ProviderCounts(refresh_calls=100, refresh_stages=180,
                                                        pending_stages=300)))
    (d,) = est.demand(["musicbrainz"]).values()
    assert d.calls == pytest.approx(300)
    assert d.fresh_rate == 0.0


def test_requests_not_read_yet_ask_what_those_read_ask() -> None:
    est = BacklogEstimate()
    est.add(Sample(0, 0, 0, 0, 0, {"discogs": ProviderCounts(pending_stages=100)},
                   refresh_read=200, refresh_unread=100))
    (d,) = est.demand(["discogs"]).values()
    assert d.calls == pytest.approx(150), "half the requests read need Discogs: half the unread"


def test_without_history_a_record_and_a_stage_are_taken_to_cost_one_call() -> None:
    est = BacklogEstimate()
    assert est.demand(["spotify"]) == {}, "nothing before a sample"
    est.add(sample(0, 0, 50, spotify=ProviderCounts(pending_stages=5)))
    (d,) = est.demand(["spotify"]).values()
    assert (d.calls, d.fresh_rate) == (55, 0.0)


def test_a_provider_fresh_records_do_not_call_costs_them_nothing() -> None:
    est = BacklogEstimate()
    est.add(sample(0, 0, 10, deezer=ProviderCounts()))
    est.add(sample(5, 50, 10, deezer=ProviderCounts()))  # 50 read, all answered by the cache
    (d,) = est.demand(["deezer"]).values()
    assert d.calls == 0.0 and d.fresh_rate == 0.0


def test_the_window_keeps_the_last_minute() -> None:
    est = BacklogEstimate(window_s=60)
    # A burst read in the first minute, then a quiet one: its rate has left the window.
    est.add(sample(0, 0, 0))
    est.add(sample(5, 1000, 0))
    for t in range(10, 130, 5):
        est.add(sample(t, 1000 + (t - 5) * 1.0, 0))
    assert est.arrival_rate() == pytest.approx(1.0)


def test_a_sample_reads_the_workers_own_figures() -> None:
    before = read_sample(0.0)
    metrics.FRESH_CALLS.labels(provider="lastfm").inc(3)
    pmetrics.RATELIMIT_SLOTS.labels(provider="lastfm", priority="refresh").inc(6)
    pmetrics.RATELIMIT_SLOTS.labels(provider="lastfm", priority="replay").inc(100)
    metrics.REFRESH_STAGES.labels(provider="lastfm").inc(5)
    metrics.REFRESH_PENDING_STAGES.labels(provider="lastfm").inc(4)
    metrics.FRESH_RECORDS.inc(7)
    metrics.DLQ_REPLAYED.labels(provider="lastfm").inc(2)
    try:
        after = read_sample(12.0, fresh_produced=2, refresh_unread=3)
    finally:
        metrics.REFRESH_PENDING_STAGES.labels(provider="lastfm").dec(4)
    a, b = before.providers.get("lastfm", ProviderCounts()), after.providers["lastfm"]
    assert (b.fresh_calls - a.fresh_calls, b.refresh_calls - a.refresh_calls,
            b.refresh_stages - a.refresh_stages, b.pending_stages - a.pending_stages
            ) == (3, 6, 5, 4), "replays' slots are no part of it"
    assert after.fresh_records - before.fresh_records == 7
    assert after.replays_sent - before.replays_sent == 2
    assert (after.t, after.fresh_produced, after.refresh_unread) == (12.0, 2, 3)


class Lags:
    """What the lag exporter knows of the raw topic: end offsets and consumer lags."""

    def __init__(self, ends: dict[int, int], lags: dict[int, int]) -> None:
        self._ends, self._lags = ends, lags

    def ends(self, topic: str) -> dict[int, int]:
        return dict(self._ends)

    def lag(self, topic: str, partition: int) -> int:
        return self._lags.get(partition, 0)


async def test_unfinished_counts_the_records_not_received_and_those_not_finished() -> None:
    release = asyncio.Event()

    async def handler(offset: int) -> None:
        if offset == 103:
            await release.wait()

    async def fatal(exc: BaseException) -> None:
        raise AssertionError(exc)

    flight: InFlight[int] = InFlight(handler, lambda _: None, max_in_flight=8, on_fatal=fatal)
    for off in range(100, 110):
        await flight.submit(TP("raw", 0), off, f"k{off}", off)
    await asyncio.sleep(0.01)
    # Partition 0 ends at 150: 103 still runs (the 6 after it are done, only not committed),
    # 110-149 are not received; partition 1 has received nothing: its consumer lag is all.
    lags = Lags({0: 150, 1: 80}, {0: 0, 1: 30})
    assert flight.not_finished(TP("raw", 0), 150) == 41
    assert unfinished(lags, flight, "raw") == 41 + 30  # type: ignore[arg-type]
    release.set()
    await flight.drain()
    assert unfinished(lags, flight, "raw") == 40 + 30  # type: ignore[arg-type]
