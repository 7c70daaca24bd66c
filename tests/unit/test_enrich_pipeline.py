"""EnrichmentPipeline: publish to tracks.enriched, or dead-letter keeping the original bytes."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from prometheus_client import REGISTRY

from tests.unit.fakes import Event, Message, Sender
from trackflow.agents.deadletter import (
    H_ATTEMPT,
    H_CLASS,
    H_LAST_FAILURE,
    H_NOT_BEFORE,
    H_OFFSET,
    H_PARTITION,
    H_PROVIDER,
    H_RAW_ATTEMPT,
    H_REASON,
    H_RETRYABLE,
    H_STAGE,
    H_TOPIC,
    Failure,
    error_facts,
)
from trackflow.agents.enrich import Enrichment, EnrichmentPipeline
from trackflow.agents.records import FieldValue, Outcome, validate_raw
from trackflow.providers.context import count_call
from trackflow.schemas.codec import AVRO_CONTENT_TYPE, decode, encode
from trackflow.streams.settings import Settings

NOW = 1_700_000_100.0
NOW_MS = int(NOW * 1000)
JSON_CT = ("content-type", b"application/json")
TRACE = ("trace", b"abc-123")
# Two targets keep "complete" reachable without filling fifteen fields.
SETTINGS = Settings(waterfall={"targets": ["isrc", "album"]})
TRACK = {"track_id": "t1", "artist": "Daft Punk", "title": "One More Time",
         "isrc": "GBDUW0000059", "duration_ms": 320_000}


class FixedEnricher:
    """Returns the given enrichment and remembers what it was asked."""

    def __init__(self, result: Enrichment | None = None) -> None:
        self.result = result or Enrichment()
        self.calls: list[tuple[dict[str, Any], int]] = []

    async def enrich(self, raw: dict[str, Any], attempt: int) -> Enrichment:
        self.calls.append((raw, attempt))
        return self.result


def _pipeline(sender: Sender, enricher: FixedEnricher) -> EnrichmentPipeline:
    return EnrichmentPipeline(send=sender, settings=SETTINGS, enricher=enricher,
                              clock=lambda: NOW)


def _avro_track(**overrides: Any) -> bytes:
    return encode("RawTrack", validate_raw({**TRACK, **overrides}))


def _json_track(**overrides: Any) -> bytes:
    return json.dumps({**TRACK, **overrides}).encode()


def _only_record(sender: Sender) -> tuple[str, bytes | None, bytes | None,
                                           list[tuple[str, bytes]]]:
    assert len(sender.sent) == 1, f"expected exactly one record sent, got {sender.sent!r}"
    return sender.sent[0]


async def test_a_valid_avro_record_is_published_partial_keyed_by_its_track_id() -> None:
    sender, enricher = Sender(), FixedEnricher(Enrichment(
        outcomes=[Outcome("spotify", "not_found")]))
    # The message key is not the track id: the enriched record is keyed by the track id.
    await _pipeline(sender, enricher).handle(Event(Message(_avro_track(), b"other-key")))
    topic, key, value, headers = _only_record(sender)
    assert (topic, key) == ("tracks.enriched", b"t1"), "expected tracks.enriched keyed by t1"
    assert headers == [("content-type", AVRO_CONTENT_TYPE.encode())], (
        "expected only the Avro content-type header on the enriched record")
    assert value is not None
    record = decode("EnrichedTrack", value)
    assert record["track_id"] == "t1"
    assert record["status"] == "partial", "album was not filled: expected status partial"
    assert record["missing"] == ["album"]
    assert record["attempt"] == 1, "a first pass has no attempt header: expected attempt 1"
    assert record["enriched_at"] == NOW_MS, "expected enriched_at from the injected clock"
    assert record["providers"] == [{"provider": "spotify", "outcome": "not_found",
                                    "reason": None, "confidence": None}]
    assert [attempt for _, attempt in enricher.calls] == [1]


async def test_a_valid_json_record_the_enricher_completes_is_published_complete() -> None:
    sender = Sender()
    enricher = FixedEnricher(Enrichment(
        filled={"album": FieldValue("Discovery", "spotify", 0.97)},
        outcomes=[Outcome("spotify", "matched", confidence=0.97)]))
    await _pipeline(sender, enricher).handle(
        Event(Message(_json_track(), b"t1", [JSON_CT, TRACE])))
    topic, key, value, headers = _only_record(sender)
    assert (topic, key) == ("tracks.enriched", b"t1"), "expected tracks.enriched keyed by t1"
    assert headers == [("content-type", AVRO_CONTENT_TYPE.encode())], (
        "expected the enriched record re-encoded as Avro whatever the input's content-type")
    assert value is not None
    record = decode("EnrichedTrack", value)
    assert record["status"] == "complete", "every target was filled: expected status complete"
    assert record["missing"] == []
    assert record["album"] == "Discovery"
    assert record["isrc"] == "GBDUW0000059"
    assert record["sources"] == {"album": {"provider": "spotify", "confidence": 0.97}}
    [(raw, _)] = enricher.calls
    assert raw["track_id"] == "t1" and raw["artist"] == "Daft Punk", (
        "expected the enricher to get the decoded, validated record")


async def test_a_retryable_enricher_failure_is_dead_lettered_retryable_with_its_not_before(
        ) -> None:
    not_before = NOW_MS + 90_000
    failure = Failure("provider:spotify", "TransientError", "503 from spotify",
                      "provider_unavailable", retryable=True, provider="spotify")
    sender = Sender()
    value = _json_track()
    msg = Message(value, b"t1", [JSON_CT, TRACE], partition=4, offset=99)
    await _pipeline(sender, FixedEnricher(Enrichment(failure=failure,
                                                     not_before_ms=not_before))).handle(Event(msg))
    topic, key, out_value, headers = _only_record(sender)
    assert (topic, key, out_value) == ("tracks.dlq", b"t1", value), (
        "expected the original key and bytes on tracks.dlq")
    assert headers[:2] == [JSON_CT, TRACE], "expected the original headers first, unchanged"
    facts = error_facts(headers)
    assert facts[H_RETRYABLE] == "true"
    assert facts[H_NOT_BEFORE] == str(not_before), "expected the enricher's not-before"
    assert facts[H_STAGE] == "provider:spotify"
    assert facts[H_PROVIDER] == "spotify"
    assert facts[H_REASON] == "provider_unavailable"
    assert facts[H_CLASS] == "TransientError"
    assert facts[H_ATTEMPT] == "1"
    assert facts[H_LAST_FAILURE] == str(NOW_MS), "expected the failure time from the clock"
    assert (facts[H_TOPIC], facts[H_PARTITION], facts[H_OFFSET]) == ("tracks.raw", "4", "99"), (
        "expected the origin of the failed record")


@pytest.mark.parametrize(("value", "headers", "stage", "reason"), [
    (_json_track(isrc="not-an-isrc"), [JSON_CT, TRACE], "validate", "invalid_isrc"),
    (_json_track(artist=""), [JSON_CT, TRACE], "validate", "empty_artist"),
    (b"{not json", [JSON_CT, TRACE], "decode", "invalid_json"),
    (b"\x01garbage that is not avro", [TRACE], "decode", "not_avro"),
    (b"\x00\x00\x00\x00\x07garbage", [TRACE], "decode", "unknown_schema_id"),
], ids=["invalid-isrc", "empty-artist", "broken-json", "broken-avro", "unknown-registry-id"])
async def test_invalid_input_is_dead_lettered_not_retryable_with_original_bytes_and_headers(
        value: bytes, headers: list[tuple[str, bytes]], stage: str, reason: str) -> None:
    sender, enricher = Sender(), FixedEnricher()
    await _pipeline(sender, enricher).handle(Event(Message(value, b"k1", list(headers))))
    topic, key, out_value, out_headers = _only_record(sender)
    assert (topic, key, out_value) == ("tracks.dlq", b"k1", value), (
        "expected the original key and bytes on tracks.dlq")
    assert out_headers[:len(headers)] == headers, "expected the original headers kept first"
    facts = error_facts(out_headers)
    assert facts[H_RETRYABLE] == "false", "no retry can fix bad input: expected retryable=false"
    assert H_NOT_BEFORE not in facts, "a non-retryable dead letter needs no not-before"
    assert facts[H_STAGE] == stage
    assert facts[H_REASON] == reason
    assert facts[H_PROVIDER] == ""
    assert enricher.calls == [], "invalid input must never reach the providers"


async def test_a_replays_attempt_header_is_carried_into_its_enriched_record() -> None:
    sender, enricher = Sender(), FixedEnricher()
    await _pipeline(sender, enricher).handle(
        Event(Message(_avro_track(), b"t1", [(H_RAW_ATTEMPT, b"3")])))
    _, _, value, _ = _only_record(sender)
    assert value is not None
    assert decode("EnrichedTrack", value)["attempt"] == 3, "expected the replay's attempt 3"
    assert [attempt for _, attempt in enricher.calls] == [3], (
        "expected the enricher to be told it is attempt 3")


async def test_a_replays_attempt_header_is_carried_into_its_dead_letter() -> None:
    failure = Failure("provider:deezer", "TransientError", "timeout", "provider_timeout",
                      retryable=True, provider="deezer")
    sender = Sender()
    await _pipeline(sender, FixedEnricher(Enrichment(failure=failure))).handle(
        Event(Message(_json_track(), b"t1", [JSON_CT, (H_RAW_ATTEMPT, b"4")])))
    _, _, _, headers = _only_record(sender)
    facts = error_facts(headers)
    assert facts[H_ATTEMPT] == "4", "expected the dead letter to say attempt 4 failed"
    assert H_NOT_BEFORE not in facts, "the enricher gave no not-before: expected none"
    assert (H_RAW_ATTEMPT, b"4") in headers, "expected the original headers kept"


async def test_an_invalid_replay_keeps_its_attempt_in_the_dead_letter() -> None:
    sender = Sender()
    await _pipeline(sender, FixedEnricher()).handle(
        Event(Message(b"{", b"t1", [JSON_CT, (H_RAW_ATTEMPT, b"2")])))
    _, _, _, headers = _only_record(sender)
    assert error_facts(headers)[H_ATTEMPT] == "2", "expected attempt 2 on the dead letter"


class CachedEnricher(FixedEnricher):
    """Knows its result without waiting (as the waterfall does from its result cache)."""

    def __init__(self, result: Enrichment | None = None, *, known: bool = True) -> None:
        super().__init__(result)
        self.known = known
        self.looked_up = 0

    def cached(self, raw: dict[str, Any]) -> Enrichment | None:
        self.looked_up += 1
        return self.result if self.known else None


FILLED = Enrichment(filled={"album": FieldValue("Discovery", "spotify", 0.97)},
                    outcomes=[Outcome("spotify", "matched", confidence=0.97)])


def _records_in() -> float:
    from trackflow.agents import metrics
    return metrics.RECORDS_IN.labels(topic="tracks.raw")._value.get()  # type: ignore[attr-defined]


async def test_a_cached_result_is_published_inline_exactly_as_handle_publishes_it() -> None:
    inline_sender, task_sender = Sender(), Sender()
    event = Event(Message(_avro_track(), b"t1"))
    before = _records_in()
    ack = await _pipeline(inline_sender, CachedEnricher(FILLED)).handle_inline(event)
    assert isinstance(ack, asyncio.Future), "a cached result is finished by its acknowledgement"
    await ack
    await _pipeline(task_sender, FixedEnricher(FILLED)).handle(event)
    assert inline_sender.sent == task_sender.sent, "inline and handle must publish the same"
    assert _records_in() == before + 2


@pytest.mark.parametrize("case", ["unknown", "replay", "invalid"])
async def test_a_record_not_finished_inline_is_left_to_handle_untouched(case: str) -> None:
    sender = Sender()
    enricher = CachedEnricher(FILLED, known=case != "unknown")
    headers = [(H_RAW_ATTEMPT, b"2")] if case == "replay" else []
    value = (encode("RawTrack", {**validate_raw(TRACK), "title": ""}) if case == "invalid"
             else _avro_track())
    before = _records_in()
    done = await _pipeline(sender, enricher).handle_inline(Event(Message(value, b"t1", headers)))
    assert done is None
    assert sender.sent == [] and _records_in() == before, "nothing done, nothing counted"
    assert enricher.calls == []


async def test_a_cached_dead_letter_is_finished_by_a_coroutine() -> None:
    sender = Sender()
    failed = Enrichment(outcomes=[Outcome("musicbrainz", "not_found")],
                        failure=Failure("provider:musicbrainz", "NotFound", "no isrc",
                                        "not_found", retryable=False))
    done = await _pipeline(sender, CachedEnricher(failed)).handle_inline(
        Event(Message(_avro_track(), b"t1")))
    assert asyncio.iscoroutine(done), "a dead letter is written by a coroutine (a task)"
    assert sender.sent == []
    await done
    topic, _, value, headers = _only_record(sender)
    assert topic == "tracks.dlq" and value == _avro_track()
    assert dict(headers)[H_REASON] == b"not_found"


async def test_a_record_the_producer_refuses_at_once_is_dead_lettered_by_a_coroutine() -> None:
    from aiokafka.errors import MessageSizeTooLargeError

    class Refusing(Sender):
        async def __call__(self, topic: str, key: bytes | None, value: bytes | None,
                           headers: list[tuple[str, bytes]]) -> Any:
            if topic == "tracks.enriched":
                raise MessageSizeTooLargeError("too large")
            return await super().__call__(topic, key, value, headers)

    sender = Refusing()
    done = await _pipeline(sender, CachedEnricher(FILLED)).handle_inline(
        Event(Message(_avro_track(), b"t1")))
    assert asyncio.iscoroutine(done)
    await done
    topic, _, _, headers = _only_record(sender)
    assert topic == "tracks.dlq" and dict(headers)[H_STAGE] == b"publish"


async def test_a_failed_inline_acknowledgement_is_dead_lettered_or_fatal() -> None:
    from aiokafka.errors import KafkaTimeoutError, RecordTooLargeError

    sender = Sender()
    pipeline = _pipeline(sender, CachedEnricher(FILLED))
    event = Event(Message(_avro_track(), b"t1"))
    await pipeline.recover_inline(event, RecordTooLargeError("refused by the broker"))
    topic, _, value, headers = _only_record(sender)
    assert topic == "tracks.dlq" and value == _avro_track()
    assert dict(headers)[H_REASON] == b"unpublishable"
    with pytest.raises(KafkaTimeoutError):
        await pipeline.recover_inline(event, KafkaTimeoutError())


class FakeLookup:
    """A registry that knows RawTrack under id 31, or that cannot be reached."""

    def __init__(self, *, reachable: bool = True) -> None:
        self.writers: dict[int, Any] = {}
        self.asked: list[int] = []
        self.reachable = reachable

    async def writer(self, schema_id: int) -> Any:
        from trackflow.providers.errors import ConfigError
        from trackflow.schemas.registry import default_registry

        self.asked.append(schema_id)
        if not self.reachable:
            raise ConfigError("kafka.schema_registry.url", "the schema registry does not answer")
        self.writers[schema_id] = default_registry().latest("RawTrack") if schema_id == 31 \
            else None
        return self.writers[schema_id]


def _registry_pipeline(sender: Sender, enricher: FixedEnricher, lookup: FakeLookup
                       ) -> EnrichmentPipeline:
    from trackflow.agents.wire import Schemas
    from trackflow.schemas.codec import WireFormat
    from trackflow.schemas.registry import default_registry

    wire = WireFormat({default_registry().latest("EnrichedTrack").fingerprint: 32})
    return EnrichmentPipeline(send=sender, settings=SETTINGS, enricher=enricher,
                              schemas=Schemas(wire, lookup), clock=lambda: NOW)


async def test_a_confluent_framed_track_is_read_after_one_lookup_and_published_framed_so(
        ) -> None:
    from trackflow.schemas.codec import WireFormat
    from trackflow.schemas.registry import default_registry

    raw_wire = WireFormat({default_registry().latest("RawTrack").fingerprint: 31})
    value = encode("RawTrack", validate_raw(dict(TRACK)), wire=raw_wire)
    sender, enricher, lookup = Sender(), FixedEnricher(), FakeLookup()
    pipeline = _registry_pipeline(sender, enricher, lookup)
    for _ in range(3):
        await pipeline.handle(Event(Message(value, b"t1", [])))
    assert lookup.asked == [31], "the id is looked up once"
    assert [raw["title"] for raw, _ in enricher.calls] == [TRACK["title"]] * 3
    out = [v for topic, _, v, _ in sender.sent if topic == "tracks.enriched"]
    assert len(out) == 3 and all(v is not None and v[:5] == b"\x00\x00\x00\x00\x20" for v in out)
    assert decode("EnrichedTrack", out[0], writers={
        32: default_registry().latest("EnrichedTrack")})["title"] == TRACK["title"]


async def test_an_unreachable_registry_makes_a_retryable_dead_letter_an_unknown_id_not() -> None:
    value = b"\x00" + (31).to_bytes(4, "big") + b"\x02"
    sender = Sender()
    await _registry_pipeline(sender, FixedEnricher(), FakeLookup(reachable=False)).handle(
        Event(Message(value, b"t1", [])))
    facts = error_facts(_only_record(sender)[3])
    assert (facts[H_REASON], facts[H_RETRYABLE]) == ("schema_registry_unavailable", "true")
    sender = Sender()
    await _registry_pipeline(sender, FixedEnricher(), FakeLookup()).handle(
        Event(Message(b"\x00" + (77).to_bytes(4, "big") + b"\x02", b"t1", [])))
    facts = error_facts(_only_record(sender)[3])
    assert (facts[H_REASON], facts[H_RETRYABLE]) == ("unknown_schema_id", "false")


class StarvedReplays(FixedEnricher):
    """Fresh records are enriched at once; replays wait for budget until ``budget`` is set,
    as replays do while fresh records and refreshes take a provider's every slot."""

    def __init__(self) -> None:
        super().__init__()
        self.budget = asyncio.Event()
        self.waiting = 0

    async def enrich(self, raw: dict[str, Any], attempt: int) -> Enrichment:
        if attempt > 1:
            self.waiting += 1
            await self.budget.wait()
            self.waiting -= 1
        return await super().enrich(raw, attempt)


async def test_a_burst_of_replays_does_not_hold_fresh_records_back() -> None:
    from trackflow.agents.enrich import is_replay
    from trackflow.agents.inflight import InFlight

    sender, enricher = Sender(), StarvedReplays()
    settings = Settings(waterfall={"targets": ["isrc", "album"]},
                        worker={"max_in_flight": 8, "max_replays_in_flight": 2})
    pipeline = EnrichmentPipeline(send=sender, settings=settings, enricher=enricher,
                                  clock=lambda: NOW)
    acked: list[int] = []

    async def fatal(exc: BaseException) -> None:
        raise AssertionError(exc)

    # Wired as agents.runner.run_agent wires the enrichment agent.
    flight: InFlight[Event] = InFlight(pipeline.handle, lambda e: acked.append(e.message.offset),
                                       max_in_flight=settings.worker.max_in_flight,
                                       max_background=settings.worker.max_replays_in_flight,
                                       on_fatal=fatal)

    def record(offset: int, attempt: int) -> Message:
        headers = [(H_RAW_ATTEMPT, str(attempt).encode())] if attempt > 1 else []
        return Message(_avro_track(track_id=f"t{offset}"), f"t{offset}".encode(), headers,
                       offset=offset)

    # 100 replays (a reprocessor releasing a backlog), then 50 fresh records, on one partition.
    messages = [record(off, 2) for off in range(100)] + [record(off, 1)
                                                         for off in range(100, 150)]
    for msg in messages:
        await asyncio.wait_for(flight.submit(msg.tp, msg.offset, msg.key, Event(msg),
                                             background=is_replay(msg)), 0.5)
    await asyncio.sleep(0.05)
    published = {decode("EnrichedTrack", v)["track_id"] for _, _, v, _ in sender.sent
                 if v is not None}
    assert published == {f"t{off}" for off in range(100, 150)}, (
        "every fresh record must be published while the replays wait for budget")
    assert enricher.waiting == 2, (
        f"expected 2 replays waiting for budget in their own places, saw {enricher.waiting}")
    assert acked == [], "the committed offset stays behind the oldest waiting replay"
    enricher.budget.set()
    await flight.drain()
    assert acked == list(range(150)), "every record acked once, in offset order"
    assert len(sender.sent) == 150


class CallingEnricher(FixedEnricher):
    """Takes two Spotify slots and one of MusicBrainz, and leaves Last.fm deferred."""

    async def enrich(self, raw: dict[str, Any], attempt: int) -> Enrichment:
        count_call("spotify")
        count_call("spotify")
        count_call("musicbrainz")
        self.result = Enrichment(outcomes=[Outcome("lastfm", "deferred", "RateLimitWait")])
        return await super().enrich(raw, attempt)


def _counted(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_a_fresh_record_counts_its_calls_when_finished_a_replay_does_not() -> None:
    sender = Sender()
    pipeline = _pipeline(sender, CallingEnricher())
    records = _counted("trackflow_fresh_records_total")
    spotify = _counted("trackflow_fresh_calls_total", provider="spotify")
    lastfm = _counted("trackflow_fresh_calls_total", provider="lastfm")
    await pipeline.handle(Event(Message(_avro_track(), key=b"t1", offset=1)))
    assert _counted("trackflow_fresh_records_total") == records + 1
    assert _counted("trackflow_fresh_calls_total", provider="spotify") == spotify + 2
    assert _counted("trackflow_fresh_calls_total", provider="lastfm") == lastfm + 1, \
        "a deferred stage costs its refresh's call"
    replay = Message(_avro_track(), key=b"t1", offset=2, headers=[(H_RAW_ATTEMPT, b"2")])
    await pipeline.handle(Event(replay))
    assert _counted("trackflow_fresh_records_total") == records + 1, "a replay is not fresh"
    assert _counted("trackflow_fresh_calls_total", provider="spotify") == spotify + 2
