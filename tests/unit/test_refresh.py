"""Progressive enrichment: refresh requests scheduled, run once, published as newer revisions."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from prometheus_client import REGISTRY

from tests.unit.fakes import Event, Message, Sender
from trackflow.agents.deadletter import H_RAW_ATTEMPT
from trackflow.agents.enrich import Enrichment, EnrichmentPipeline
from trackflow.agents.records import DISABLED, FieldValue, Outcome, validate_raw
from trackflow.agents.refresh import RefreshAgent, revisions_view
from trackflow.agents.refresh_schedule import (
    REVISION_EPOCH_S,
    RefreshRequest,
    input_digest,
    next_revision,
)
from trackflow.agents.waterfall import Waterfall
from trackflow.providers.base import Candidate, TrackQuery
from trackflow.providers.context import enter_record
from trackflow.providers.specs import SPECS
from trackflow.schemas.codec import decode, encode
from trackflow.streams.settings import Settings, load_settings

NOW = 1_700_000_100.0
SETTINGS = Settings(waterfall={"targets": ["isrc", "tags"]}, refresh={"delay_s": 30})
TRACK = validate_raw({"track_id": "t1", "artist": "Daft Punk", "title": "One More Time",
                      "isrc": "GBDUW0000059", "duration_ms": 320_000})
DEFERRED = Enrichment(outcomes=[Outcome("musicbrainz", "matched", confidence=0.97),
                                Outcome("lastfm", "deferred", "RateLimitWait")])


class FixedEnricher:
    def __init__(self, result: Enrichment) -> None:
        self.result = result

    async def enrich(self, raw: dict[str, Any], attempt: int) -> Enrichment:
        return self.result


class FakeRefresher:
    def __init__(self, result: Enrichment) -> None:
        self.result = result
        self.calls: list[list[str]] = []

    async def refresh(self, raw: dict[str, Any], filled: Mapping[str, FieldValue],
                      outcomes: Sequence[Outcome], stages: Sequence[str], *,
                      on_stage: Callable[[str], None] | None = None) -> Enrichment:
        self.calls.append(list(stages))
        for name in stages:
            if on_stage is not None:
                on_stage(name)
        return self.result

    def planned(self, raw: dict[str, Any], filled: Mapping[str, FieldValue],
                stages: Sequence[str]) -> list[str]:
        return list(stages)


class Clock:
    def __init__(self) -> None:
        self.now = NOW
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, s: float) -> None:
        self.slept.append(s)
        self.now += s


def raw_event() -> Event:
    return Event(Message(encode("RawTrack", TRACK), key=b"t1"))


async def test_a_record_published_with_a_deferred_stage_gets_a_refresh_request() -> None:
    sender = Sender()
    pipeline = EnrichmentPipeline(send=sender, settings=SETTINGS,
                                  enricher=FixedEnricher(DEFERRED), clock=lambda: NOW)
    await pipeline.handle(raw_event())
    topics = [s[0] for s in sender.sent]
    assert topics == ["tracks.enriched", "tracks.enriched.refresh"], \
        "the refresh is scheduled after the partial record is published"
    record = decode("EnrichedTrack", sender.sent[0][2] or b"")
    assert record["status"] == "partial" and record["missing"] == ["tags"]
    assert record["revision"] == int(NOW) - REVISION_EPOCH_S, "seconds since the epoch of 2020"
    request = RefreshRequest.decode(sender.sent[1][2] or b"")
    assert request.stages == ["lastfm"] and request.revision == record["revision"]
    assert request.due_ms == int((NOW + 30) * 1000)
    assert request.source == (2, 7), "the raw record's partition and offset"


async def test_a_stage_skipped_for_a_disabled_provider_is_refreshed_a_planned_skip_is_not(
        ) -> None:
    sender = Sender()
    skipped = Enrichment(outcomes=[Outcome("spotify", "skipped", "complete"),
                                   Outcome("lastfm", "skipped", DISABLED)])
    pipeline = EnrichmentPipeline(send=sender, settings=SETTINGS,
                                  enricher=FixedEnricher(skipped), clock=lambda: NOW)
    await pipeline.handle(raw_event())
    assert [s[0] for s in sender.sent] == ["tracks.enriched", "tracks.enriched.refresh"], \
        "a provider disabled by a configuration error fills its fields once it is enabled again"
    assert RefreshRequest.decode(sender.sent[1][2] or b"").stages == ["lastfm"]


async def test_a_complete_record_schedules_nothing() -> None:
    sender = Sender()
    done = Enrichment(filled={"tags": FieldValue(["house"], "lastfm", 0.9)},
                      outcomes=[Outcome("lastfm", "matched", confidence=0.9)])
    pipeline = EnrichmentPipeline(send=sender, settings=SETTINGS, enricher=FixedEnricher(done),
                                  clock=lambda: NOW)
    await pipeline.handle(raw_event())
    assert [s[0] for s in sender.sent] == ["tracks.enriched"]


def test_revisions_follow_the_clock_and_always_pass_the_last_one_known() -> None:
    assert next_revision(NOW, None) == int(NOW) - REVISION_EPOCH_S
    assert next_revision(NOW + 0.9, next_revision(NOW, None)) == next_revision(NOW, None) + 1, \
        "two publications within a second: still a higher revision"
    assert next_revision(NOW, 3) == next_revision(NOW, None), \
        "a counted revision of earlier versions (1, 2, 3, ...) is below any of these"
    assert next_revision(2**31 - 1 + REVISION_EPOCH_S - 1, None) < 2**31, \
        "an Avro int until 2088"


async def test_a_fresh_result_read_again_after_its_refresh_is_not_published_over_it() -> None:
    sender = Sender()
    refreshed = int(NOW) - REVISION_EPOCH_S + 5  # a refresh published ahead of this clock
    table = {"t1": {"revision": refreshed, "input": input_digest(TRACK)}}
    pipeline = EnrichmentPipeline(send=sender, settings=SETTINGS,
                                  enricher=FixedEnricher(DEFERRED), refreshed=table,
                                  clock=lambda: NOW)
    await pipeline.handle(raw_event())
    assert sender.sent == [], "the fresh result must never follow its refresh"
    # A new input for the same track is published above the revision the table knows.
    table["t1"]["input"] = "another input"
    await pipeline.handle(raw_event())
    assert decode("EnrichedTrack", sender.sent[0][2] or b"")["revision"] == refreshed + 1


def _request(**kw: Any) -> Event:
    request = RefreshRequest(dict(TRACK), {}, list(DEFERRED.outcomes), 1,
                             int((NOW + 30) * 1000), 1, 1, ["lastfm"])
    for k, v in kw.items():
        setattr(request, k, v)
    return Event(Message(request.encode(), key=b"t1", topic="tracks.enriched.refresh"))


async def test_a_due_refresh_runs_only_its_stages_and_publishes_the_next_revision_once() -> None:
    sender, clock, table = Sender(), Clock(), {}
    filled = Enrichment(filled={"tags": FieldValue(["house"], "lastfm", 0.9)},
                        outcomes=[Outcome("musicbrainz", "matched", confidence=0.97),
                                  Outcome("lastfm", "matched", confidence=0.9)])
    refresher = FakeRefresher(filled)
    agent = RefreshAgent(send=sender, settings=SETTINGS, refresher=refresher, table=table,
                         clock=clock, sleep=clock.sleep)
    await agent.handle(_request())
    assert clock.slept == [30.0], "the refresh waits until it is due"
    assert refresher.calls == [["lastfm"]]
    assert [(s[0], s[2] is None) for s in sender.sent] == [
        ("tracks.enriched", False), ("tracks.enriched.refresh", True)], \
        "complete: nothing rescheduled, and the track's request deleted from the refresh topic"
    record = decode("EnrichedTrack", sender.sent[0][2] or b"")
    assert record["revision"] == next_revision(NOW + 30, 1) and record["status"] == "complete"
    assert table == {}, "nothing left to refresh: the track leaves the table"


def _pending(provider: str) -> float:
    return REGISTRY.get_sample_value("trackflow_refresh_pending_stages",
                                     {"provider": provider}) or 0.0


def _stages_run(provider: str) -> float:
    return REGISTRY.get_sample_value("trackflow_refresh_stages_total",
                                     {"provider": provider}) or 0.0


async def test_a_request_waiting_until_due_counts_its_stages_as_pending_until_they_run() -> None:
    sender, clock = Sender(), Clock()
    seen: list[tuple[float, float]] = []

    async def sleep(s: float) -> None:
        seen.append((_pending("lastfm"), agent.due_in_s()))
        await clock.sleep(s)

    agent = RefreshAgent(send=sender, settings=SETTINGS, refresher=FakeRefresher(DEFERRED),
                         table={}, clock=clock, sleep=sleep)
    before, run_before = _pending("lastfm"), _stages_run("lastfm")
    await agent.handle(_request())
    assert seen == [(before + 1, 30.0)], "while it waits: one Last.fm stage to come, due in 30 s"
    assert _pending("lastfm") == before and agent.due_in_s() == 0.0
    assert _stages_run("lastfm") == run_before + 1


async def test_a_request_cancelled_before_its_stages_ran_leaves_nothing_pending() -> None:
    clock = Clock()

    async def never(s: float) -> None:
        await asyncio.Event().wait()

    agent = RefreshAgent(send=Sender(), settings=SETTINGS, refresher=FakeRefresher(DEFERRED),
                         table={}, clock=clock, sleep=never)
    before, run_before = _pending("lastfm"), _stages_run("lastfm")
    task = asyncio.ensure_future(agent.handle(_request()))
    await asyncio.sleep(0)
    assert _pending("lastfm") == before + 1
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert _pending("lastfm") == before, "a rebalance took it away: the new owner counts it"
    assert _stages_run("lastfm") == run_before


async def test_stages_still_deferred_are_rescheduled_later_until_the_last_round() -> None:
    sender, clock, table = Sender(), Clock(), {}
    partly = Enrichment(filled={"isrc": FieldValue("GBDUW0000059", "musicbrainz", 0.97)},
                        outcomes=list(DEFERRED.outcomes))
    agent = RefreshAgent(send=sender, settings=SETTINGS, refresher=FakeRefresher(partly),
                         table=table, clock=clock, sleep=clock.sleep)
    await agent.handle(_request())
    assert [s[0] for s in sender.sent] == ["tracks.enriched", "tracks.enriched.refresh"]
    again = RefreshRequest.decode(sender.sent[1][2] or b"")
    revision = next_revision(NOW + 30, 1)
    assert (again.revision, again.round, again.stages) == (revision, 2, ["lastfm"])
    assert again.due_ms == int((clock.now + 60) * 1000), "the delay doubles every round"
    assert table["t1"]["revision"] == revision, "kept while refreshes are to come"
    await agent.handle(_request())  # re-delivered after a restart
    assert len(sender.sent) == 2, "a refresh already published must not be done twice"
    sender.sent.clear()
    await agent.handle(_request(round=SETTINGS.refresh.max_rounds, revision=revision))
    assert [(s[0], s[2] is None) for s in sender.sent] == [
        ("tracks.enriched", False), ("tracks.enriched.refresh", True)], \
        "no round after the last: the request is deleted"


async def test_a_refresh_that_found_nothing_new_publishes_nothing_and_keeps_its_revision(
        ) -> None:
    sender, clock, table = Sender(), Clock(), {}
    agent = RefreshAgent(send=sender, settings=SETTINGS, refresher=FakeRefresher(DEFERRED),
                         table=table, clock=clock, sleep=clock.sleep)
    await agent.handle(_request())
    assert [s[0] for s in sender.sent] == ["tracks.enriched.refresh"], \
        "the same fields, the same stage still deferred: nothing for a consumer"
    again = RefreshRequest.decode(sender.sent[0][2] or b"")
    assert (again.revision, again.round) == (1, 2)
    assert table == {}
    sender.sent.clear()
    await agent.handle(_request(round=SETTINGS.refresh.max_rounds))
    assert [(s[0], s[2]) for s in sender.sent] == [("tracks.enriched.refresh", None)]


async def test_the_tombstone_of_a_finished_track_is_read_back_as_nothing_to_do() -> None:
    sender, clock = Sender(), Clock()
    refresher = FakeRefresher(DEFERRED)
    agent = RefreshAgent(send=sender, settings=SETTINGS, refresher=refresher, table={},
                         clock=clock, sleep=clock.sleep)
    await agent.handle(Event(Message(None, key=b"t1", topic="tracks.enriched.refresh")))
    assert sender.sent == [] and refresher.calls == []


class Fake:
    def __init__(self, name: str, answer: list[dict[str, Any]]) -> None:
        self.name, self.answer, self.queries = name, answer, 0

    async def lookup(self, query: TrackQuery) -> list[Candidate]:
        self.queries += 1
        return [Candidate(self.name, f, via="search") for f in self.answer]

    async def aclose(self) -> None:
        pass


async def test_waterfall_refresh_runs_only_the_given_stages_on_top_of_what_is_known() -> None:
    s = load_settings(env={})
    song = {"artist": "Daft Punk", "title": "One More Time", "duration_ms": 320_000}
    mb = Fake("musicbrainz", [{**song, "musicbrainz_recording_id": "other"}])
    fm = Fake("lastfm", [{**song, "tags": ["house"], "listeners": 10}])
    known = {"musicbrainz_recording_id": FieldValue("mbid", "musicbrainz", 0.97)}
    enter_record(0)  # as the refresh agent does for each request
    over: list[str] = []
    result = await Waterfall({"musicbrainz": mb, "lastfm": fm}, s).refresh(
        dict(TRACK), known, [Outcome("musicbrainz", "matched", confidence=0.97),
                             Outcome("lastfm", "deferred", "RateLimitWait")], ["lastfm"],
        on_stage=over.append)
    assert over == ["lastfm"], "told when each stage asked of it is over"
    assert mb.queries == 0, "a stage that answered is not asked again"
    assert fm.queries == 1
    assert result.filled["musicbrainz_recording_id"].value == "mbid"
    assert result.filled["tags"].value == ["house"]
    assert [(o.provider, o.outcome) for o in result.outcomes] == [
        ("musicbrainz", "matched"), ("lastfm", "matched")]


async def test_a_dead_letter_replay_asks_for_budget_at_replay_priority() -> None:
    from trackflow.providers.context import Priority, current_priority

    seen: list[Priority] = []

    class Spy(FixedEnricher):
        async def enrich(self, raw: dict[str, Any], attempt: int) -> Enrichment:
            seen.append(current_priority())
            return self.result

    pipeline = EnrichmentPipeline(send=Sender(), settings=SETTINGS, enricher=Spy(DEFERRED),
                                  clock=lambda: NOW)
    await pipeline.handle(raw_event())
    replay = raw_event()
    replay.message.headers = [(H_RAW_ATTEMPT, b"2")]
    await pipeline.handle(replay)
    assert seen == [Priority.FRESH, Priority.REPLAY], \
        "fresh records first; replays take what is left and their minimum share"


class HeldSender(Sender):
    """A :class:`Sender` whose enriched-topic acknowledgements wait until ``acked`` is set;
    ``enriched`` is set by every enriched-topic send."""

    def __init__(self) -> None:
        super().__init__()
        self.acked = asyncio.Event()
        self.enriched = asyncio.Event()

    async def __call__(self, topic: str, key: bytes | None, value: bytes | None,
                       headers: list[tuple[str, bytes]]) -> Awaitable[Any]:
        ack = await super().__call__(topic, key, value, headers)
        if topic != "tracks.enriched":
            return ack
        self.enriched.set()

        async def later() -> None:
            await self.acked.wait()
            await ack

        return asyncio.ensure_future(later())


async def test_a_fresh_result_read_again_while_its_refresh_is_being_published_is_not_published(
        ) -> None:
    # A restart or a rebalance reads the raw record and its refresh request again at once: the
    # refresh is sent but not acknowledged yet (the table does not have it), when the fresh
    # result of the same input is ready.
    sender, clock, table, publishing = HeldSender(), Clock(), {}, {}
    filled = Enrichment(filled={"tags": FieldValue(["house"], "lastfm", 0.9)},
                        outcomes=[Outcome("lastfm", "matched", confidence=0.9)])
    agent = RefreshAgent(send=sender, settings=SETTINGS, refresher=FakeRefresher(filled),
                         table=table, publishing=publishing, clock=clock, sleep=clock.sleep)
    pipeline = EnrichmentPipeline(send=sender, settings=SETTINGS,
                                  enricher=FixedEnricher(DEFERRED),
                                  refreshed=revisions_view(table, publishing), clock=lambda: NOW)
    refreshing = asyncio.ensure_future(agent.handle(_request()))
    await sender.enriched.wait()  # revision 2 is sent, not acknowledged
    sender.enriched.clear()
    enriching = asyncio.ensure_future(pipeline.handle(raw_event()))
    sent_again = asyncio.ensure_future(sender.enriched.wait())
    await asyncio.wait([enriching, sent_again], return_when=asyncio.FIRST_COMPLETED)
    sent_again.cancel()
    sender.acked.set()
    await asyncio.gather(refreshing, enriching)
    revisions = [decode("EnrichedTrack", s[2] or b"")["revision"] for s in sender.sent
                 if s[0] == "tracks.enriched"]
    assert revisions == [next_revision(NOW + 30, 1)], \
        f"the fresh result must never follow its refresh, published {revisions}"
    assert not publishing


class Commits:
    """The committed offsets of raw partitions (``committed`` of the refresh agent): partition
    2 is committed up to ``offset``, moved forward by ``commit()``; ``moved`` unassigns it."""

    def __init__(self, offset: int) -> None:
        self.offset = offset
        self.moved = False

    def __call__(self, partition: int) -> int | None:
        return None if self.moved or partition != 2 else self.offset


FINISHED = Enrichment(filled={"tags": FieldValue(["house"], "lastfm", 0.9)},
                      outcomes=[Outcome("lastfm", "matched", confidence=0.9)])


def _last_round(**kw: Any) -> Event:
    return _request(round=SETTINGS.refresh.max_rounds, source=(2, 7), **kw)


async def test_a_finished_track_stays_in_the_table_until_its_raw_record_is_committed() -> None:
    sender, clock, table = Sender(), Clock(), {}
    commits = Commits(offset=5)  # the raw record at offset 7 is not committed yet
    seen: list[dict[str, Any]] = []

    async def sleep(s: float) -> None:
        await clock.sleep(s)
        seen.append(dict(table.get("t1") or {}))
        if len(seen) == 3:
            commits.offset = 8  # the worker commits past it

    agent = RefreshAgent(send=sender, settings=SETTINGS, refresher=FakeRefresher(FINISHED),
                         table=table, committed=commits, clock=clock, sleep=sleep)
    await agent.handle(_last_round())
    assert [(s[0], s[2] is None) for s in sender.sent] == [
        ("tracks.enriched", False), ("tracks.enriched.refresh", True)]
    waits = seen[1:]  # the first sleep is the request's due time
    assert len(waits) == 2 and all(e.get("final") for e in waits), \
        "until the commit a restart reads the raw record again: the entry guards it"
    assert table == {}, "committed: nothing left to guard, the track leaves the table"


async def test_a_last_round_read_again_after_a_restart_finishes_deleting_its_entry() -> None:
    sender, clock = Sender(), Clock()
    refresher = FakeRefresher(FINISHED)
    table = {"t1": {"revision": next_revision(NOW, 1), "input": input_digest(TRACK),
                    "final": True}}
    agent = RefreshAgent(send=sender, settings=SETTINGS, refresher=refresher, table=table,
                         committed=Commits(offset=8), clock=clock, sleep=clock.sleep)
    await agent.handle(_last_round())
    assert sender.sent == [] and refresher.calls == [], "its refresh was published"
    assert table == {}


async def test_a_finished_track_whose_raw_partition_moves_away_keeps_its_entry() -> None:
    sender, clock, table = Sender(), Clock(), {}
    commits = Commits(offset=5)

    async def sleep(s: float) -> None:
        await clock.sleep(s)
        if "t1" in table:
            commits.moved = True  # a rebalance: the new owner reads the request again

    agent = RefreshAgent(send=sender, settings=SETTINGS, refresher=FakeRefresher(FINISHED),
                         table=table, committed=commits, clock=clock, sleep=sleep)
    await agent.handle(_last_round())
    assert table["t1"]["final"], "left for the worker that reads the raw partition now"


async def test_a_finished_track_whose_raw_partition_is_read_elsewhere_leaves_at_once() -> None:
    # Producers that pick partitions by hand: the raw record's partition is not this worker's,
    # and no commit of it will ever be seen here.
    sender, clock, table = Sender(), Clock(), {}
    agent = RefreshAgent(send=sender, settings=SETTINGS, refresher=FakeRefresher(FINISHED),
                         table=table, committed=lambda partition: None, clock=clock,
                         sleep=clock.sleep)
    await agent.handle(_last_round())
    assert table == {} and clock.slept == [30.0]


async def test_with_a_registry_the_refresh_publishes_in_the_confluent_wire_format() -> None:
    from trackflow.schemas.codec import WireFormat, confluent_schema_id
    from trackflow.schemas.registry import default_registry

    enriched = default_registry().latest("EnrichedTrack")
    sender, clock = Sender(), Clock()
    filled = Enrichment(filled={"tags": FieldValue(["house"], "lastfm", 0.9)},
                        outcomes=[Outcome("musicbrainz", "matched", confidence=0.97),
                                  Outcome("lastfm", "matched", confidence=0.9)])
    agent = RefreshAgent(send=sender, settings=SETTINGS, refresher=FakeRefresher(filled),
                         table={}, wire=WireFormat({enriched.fingerprint: 41}), clock=clock,
                         sleep=clock.sleep)
    await agent.handle(_request())
    value = sender.sent[0][2] or b""
    assert confluent_schema_id(value) == 41
    assert decode("EnrichedTrack", value, writers={41: enriched})["status"] == "complete"


async def test_a_refresh_plans_only_the_stages_left_something_to_fill() -> None:
    s = load_settings(env={})
    song = {"artist": "Daft Punk", "title": "One More Time", "duration_ms": 320_000}
    waterfall = Waterfall({"musicbrainz": Fake("musicbrainz", [song]),
                           "lastfm": Fake("lastfm", [song])}, s)
    targets = waterfall.planned(dict(TRACK), {}, ["musicbrainz", "lastfm"])
    assert targets == ["musicbrainz", "lastfm"]
    # Everything MusicBrainz could fill is known (another stage filled it meanwhile): its
    # stage would be skipped without a call, so it is no part of the backlog.
    filled = {f: FieldValue("x", "spotify", 0.9) for f in SPECS["musicbrainz"].provides}
    assert waterfall.planned(dict(TRACK), filled, ["musicbrainz", "lastfm"]) == ["lastfm"]
