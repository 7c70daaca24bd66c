"""Progressive enrichment: re-enrich published records whose stages were deferred or failed.

A record published ``partial`` because a stage was ``deferred`` (its provider busy or down) or
``failed`` (transient errors) is not finished: the enrichment agent publishes a *refresh
request* for it to ``<enriched topic>.refresh`` (compacted, keyed by track_id), holding the
input, the fields known so far, the stages to run again, the revision published and when the
refresh is due. This agent reads that topic, waits until a request is due, runs only those
stages (answers already cached cost no call: the provider cache answers them), and publishes
the result to the enriched topic under the same key with a higher revision; stages still
deferred or failed get a new request, later, until ``refresh.max_rounds``; after a track's
last round its request is deleted from the refresh topic (a tombstone), and a refresh that found
nothing new publishes nothing (the next round keeps the revision).

Durability and order, without exactly-once:

- The refresh topic is the schedule: a request is acked only once its refresh is published (or
  found done), so after a crash everything unfinished is read again; the request for the next
  round is published before the one it replaces is acked, so none is lost.
- A changelogged table (:data:`~agents.runner.REFRESH_TABLE`, keyed by track_id, written only
  from the refresh topic's partition of the key) keeps the revision a refresh published for a
  track and its input, while the track has refreshes to come. A request whose refresh was
  already published is skipped, so a re-delivered request is not done twice; and the
  enrichment agent, reading the same table, does not publish a re-delivered fresh result over
  a refreshed one with the same input, so a consumer never sees an older version after a
  newer one. After the last round the entry is deleted, once the raw record the input came
  from is committed (no restart can read it again then): the table holds the tracks being
  refreshed, not every track ever refreshed.
- Revisions are derived from the publication time (:func:`~agents.refresh_schedule.
  next_revision`), raised past the last one the table or the request knows; so a track
  published again after its entry is gone still gets a higher revision, with no counter kept.
- The table is written only once the refresh is published, so for that while a fresh result of
  the same input read again (a restart, a rebalance) would not see it and would publish the
  fresh result after the refresh. ``publishing`` (in memory, shared with the enrichment agent
  through :func:`revisions_view`) holds the revision a refresh is about to publish from just
  before it is sent until the table has it.
- The table and the topic are co-partitioned with ``tracks.raw`` by track_id (same partition
  count, key partitioner), so the worker that owns a raw partition also holds its table part;
  producers that pick partitions by hand lose that guarantee for the ordering check.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import ChainMap
from collections.abc import Awaitable, Callable, Mapping, MutableMapping, Sequence
from typing import Any, Protocol

import faust

from trackflow.agents import metrics
from trackflow.agents.enrich import Enrichment
from trackflow.agents.publish import Send, publish
from trackflow.agents.records import FieldValue, Outcome, build_enriched
from trackflow.agents.refresh_schedule import (
    RefreshRequest,
    input_digest,
    next_revision,
    refresh_due_ms,
    stages_to_refresh,
)
from trackflow.agents.runner import RunningAgent, Topics, declare_table, producer_send, run_agent
from trackflow.agents.settings import AgentSettings
from trackflow.agents.tables import REFRESH_TABLE
from trackflow.providers.context import enter_record
from trackflow.schemas.codec import (
    AVRO_CONTENT_TYPE,
    CONTENT_TYPE,
    SINGLE_OBJECT,
    WireFormat,
    encode,
)

log = logging.getLogger("trackflow.agents.refresh")

#: How often a finished track's entry checks whether its raw record is committed yet.
COMMIT_POLL_S = 1.0


class Refresher(Protocol):
    """Runs some stages again for a record that knows ``filled``."""

    async def refresh(self, raw: dict[str, Any], filled: Mapping[str, FieldValue],
                      outcomes: Sequence[Outcome], stages: Sequence[str], *,
                      on_stage: Callable[[str], None] | None = None) -> Enrichment:
        """``on_stage(name)`` once each stage of ``stages`` is over (run or skipped)."""

    def planned(self, raw: dict[str, Any], filled: Mapping[str, FieldValue],
                stages: Sequence[str]) -> list[str]:
        """The stages of ``stages`` that would call their provider, with ``filled`` known."""


class RefreshAgent:
    """Handles one refresh request end to end."""

    def __init__(self, *, send: Send, settings: AgentSettings, refresher: Refresher,
                 table: MutableMapping[str, Any],
                 publishing: MutableMapping[str, Any] | None = None,
                 committed: Callable[[int], int | None] | None = None,
                 wire: WireFormat = SINGLE_OBJECT,
                 clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], Awaitable[object]] = asyncio.sleep) -> None:
        self._send = send
        self._wire = wire
        # The committed offset of a raw partition this worker consumes (None: not consumed
        # here); without it, a finished track's entry is deleted at once.
        self._committed = committed or (lambda partition: None)
        self._settings = settings
        self._refresher = refresher
        self._table = table
        self._publishing: MutableMapping[str, Any] = {} if publishing is None else publishing
        self._clock = clock
        self._sleep = sleep
        self._headers = [(CONTENT_TYPE, AVRO_CONTENT_TYPE.encode())]
        # Due times of the requests being handled, for the backlog's age.
        self._due: dict[int, float] = {}
        # What the requests being handled still ask of each provider: with the rate fresh
        # records leave it, the backlog's ETA (``trackflow top``, the pipeline dashboard).
        self._pending_stages = metrics.REFRESH_PENDING_STAGES
        self._stages_run = metrics.REFRESH_STAGES
        for outcome in ("published", "unchanged", "rescheduled", "finished", "skipped_done",
                        "invalid"):
            metrics.REFRESHES.labels(outcome=outcome)

    def overdue_s(self) -> float:
        """How long the most overdue request being handled has been due (0: none)."""
        return max(0.0, self._clock() - min(self._due.values())) if self._due else 0.0

    def due_in_s(self) -> float:
        """How long until the last request being handled is due (0: all are)."""
        return max(0.0, max(self._due.values()) - self._clock()) if self._due else 0.0

    async def handle(self, event: Any) -> None:
        msg = event.message
        enter_record(msg.partition)
        if msg.value is None:
            return  # the tombstone a track's last round left: nothing is scheduled
        try:
            request = RefreshRequest.decode(msg.value)
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            log.error("event=refresh_request_invalid partition=%s offset=%s error=%s",
                      msg.partition, msg.offset, type(exc).__name__)
            metrics.REFRESHES.labels(outcome="invalid").inc()
            return
        track_id = request.raw["track_id"]
        done = self._table.get(track_id)
        if done and done["revision"] > request.revision:
            metrics.REFRESHES.labels(outcome="skipped_done").inc()
            if done.get("final"):
                await self._forget(request, done)  # its last round, cut short by a restart
            return  # re-delivered after its refresh was published
        token = id(request)
        self._due[token] = request.due_ms / 1000
        # The stages that will call their provider: one another stage has filled meanwhile
        # is skipped at no cost.
        pending = set(self._refresher.planned(request.raw, request.filled, request.stages))
        for name in pending:
            self._pending_stages.labels(provider=name).inc()

        def stage_over(name: str) -> None:
            if name in pending:
                pending.discard(name)
                self._pending_stages.labels(provider=name).dec()
                self._stages_run.labels(provider=name).inc()

        try:
            wait = request.due_ms / 1000 - self._clock()
            if wait > 0:
                await self._sleep(wait)
            result = await self._refresher.refresh(request.raw, request.filled,
                                                   request.outcomes, request.stages,
                                                   on_stage=stage_over)
        finally:
            del self._due[token]
            for name in pending:  # cancelled (a rebalance, a stop), or not a stage here
                self._pending_stages.labels(provider=name).dec()
        now = self._clock()
        k = self._settings.kafka
        key = track_id.encode()
        left = stages_to_refresh(result.outcomes)
        again = bool(left) and request.round < self._settings.refresh.max_rounds
        if self._same_as_published(request, result):
            # Nothing new to tell a consumer: no publication, the revision stays.
            metrics.REFRESHES.labels(outcome="unchanged").inc()
            await self._next_round(request, result, request.revision, now, again, key)
            if not again:
                await self._forget(request, self._table.get(track_id))
            return
        revision = next_revision(now, request.revision)
        record = build_enriched(request.raw, attempt=request.attempt,
                                enriched_at_ms=int(now * 1000), filled=result.filled,
                                outcomes=result.outcomes, revision=revision,
                                targets=self._settings.waterfall.targets)
        entry = {"revision": revision, "input": input_digest(request.raw)}
        # Before the send: from here on a fresh result of this input is superseded.
        self._publishing[track_id] = entry
        try:
            await publish(self._send, k.enriched_topic, key,
                          encode("EnrichedTrack", record, wire=self._wire), self._headers)
            metrics.RECORDS_OUT.labels(topic=k.enriched_topic).inc()
            metrics.REFRESHES.labels(outcome="published").inc()
            metrics.ENRICHED.labels(status=record["status"]).inc()
            await self._next_round(request, result, revision, now, again, key)
            # Written last: a crash before this line re-runs the refresh (cached answers);
            # after it, a re-delivery is skipped.
            if again:
                self._table[track_id] = entry
            else:
                await self._forget(request, entry)
        finally:
            if self._publishing.get(track_id) is entry:
                del self._publishing[track_id]

    async def _forget(self, request: RefreshRequest, entry: Mapping[str, Any] | None) -> None:
        """After a track's last round, delete its entry: the table keeps only tracks with
        refreshes to come. Not before the raw record the input was read from is committed,
        though: until then a restart reads that record again, and the entry is what keeps its
        fresh result from being published over the refresh. Meanwhile the entry says the last
        round is done (``final``), so that a re-delivery of this request finishes the job."""
        if entry is None:
            return  # no refresh of this track was published: nothing kept
        track_id = request.raw["track_id"]
        if request.source is not None and self._committed(request.source[0]) is not None:
            partition, offset = request.source
            if not self._passed(partition, offset):
                self._table[track_id] = {**entry, "final": True}
                while not self._passed(partition, offset):
                    await self._sleep(COMMIT_POLL_S)
                if self._committed(partition) is None:
                    return  # moved to another worker: it reads this request again
        if track_id in self._table:
            del self._table[track_id]

    def _passed(self, partition: int, offset: int) -> bool:
        """Whether ``offset`` of the raw partition is committed (or no longer read here)."""
        committed = self._committed(partition)
        return committed is None or committed > offset

    def _same_as_published(self, request: RefreshRequest, result: Enrichment) -> bool:
        """Whether the refresh found what the published revision already says (the same
        fields, and each stage where it was: still deferred, still failing)."""
        return (dict(result.filled) == dict(request.filled)
                and [(o.provider, o.outcome) for o in result.outcomes]
                == [(o.provider, o.outcome) for o in request.outcomes])

    async def _next_round(self, request: RefreshRequest, result: Enrichment, revision: int,
                          now: float, again: bool, key: bytes) -> None:
        """Schedule the next round, or delete the track's request after its last one: the
        compacted refresh topic then holds only the refreshes still to come. (The topic's
        ``min.compaction.lag.ms`` keeps a newer request of the same track, published before
        this tombstone, until it has long been read.)"""
        topic = self._settings.kafka.refresh_topic
        if again:
            follow = RefreshRequest(request.raw, dict(result.filled), list(result.outcomes),
                                    revision, refresh_due_ms(now, self._settings.refresh,
                                                             request.round + 1),
                                    request.round + 1, request.attempt,
                                    stages_to_refresh(result.outcomes))
            await publish(self._send, topic, key, follow.encode(), [])
            metrics.REFRESHES.labels(outcome="rescheduled").inc()
        else:
            await publish(self._send, topic, key, None, [])
            metrics.REFRESHES.labels(outcome="finished").inc()


def revisions_view(table: MutableMapping[str, Any], publishing: MutableMapping[str, Any]
                   ) -> Mapping[str, Any]:
    """What the enrichment agent reads (only): the revision a refresh is publishing, else the
    table's."""
    return ChainMap(publishing, table)


def register_refresh_agent(app: faust.App, topics: Topics, settings: AgentSettings,
                           refresher: Refresher, table: MutableMapping[str, Any], *,
                           on_fatal: Callable[[BaseException], Awaitable[None]],
                           publishing: MutableMapping[str, Any] | None = None,
                           committed: Callable[[int], int | None] | None = None,
                           wire: WireFormat = SINGLE_OBJECT) -> RunningAgent:
    """Attach the refresh agent to ``app``; ``table`` is :data:`REFRESH_TABLE`, ``publishing``
    the in-memory part of :func:`revisions_view`, ``committed`` the committed offset of a raw
    partition the worker consumes (None if it does not)."""
    agent = RefreshAgent(send=producer_send(app), settings=settings, refresher=refresher,
                         table=table, publishing=publishing, committed=committed, wire=wire)
    running = run_agent(app, topics.refresh, name="trackflow.refresh", handler=agent.handle,
                        max_in_flight=settings.refresh.max_waiting_per_partition,
                        max_queued=settings.worker.max_queued, on_fatal=on_fatal,
                        key_of=lambda msg: msg.key)
    metrics.REFRESH_BACKLOG.set_function(running.inflight.in_flight)
    metrics.REFRESH_OLDEST_SECONDS.set_function(agent.overdue_s)
    metrics.REFRESH_DUE_IN_SECONDS.set_function(agent.due_in_s)
    return running


def declare_refresh_table(app: faust.App, settings: AgentSettings) -> Any:
    return declare_table(app, REFRESH_TABLE, settings)
