"""Records any Kafka client can write never stop the worker: decode, validate, dead-letter, skip."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest
from aiokafka.errors import KafkaConnectionError, MessageSizeTooLargeError
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit.fakes import Event, Message, Sender
from trackflow.agents import metrics
from trackflow.agents.deadletter import H_REASON, H_STAGE, H_VALUE_NULL, error_facts
from trackflow.agents.enrich import EnrichmentPipeline, NoProviders
from trackflow.agents.publish import is_record_error
from trackflow.agents.records import InvalidRecord, validate_raw
from trackflow.agents.runner import CRASH_EXIT_CODE, CrashWatchdog
from trackflow.schemas.codec import DecodeError, decode_raw_track, encode
from trackflow.streams.settings import Settings

_headers = st.lists(st.tuples(st.sampled_from(["content-type", "Content-Type", "x", "trace"]),
                              st.one_of(st.binary(max_size=40),
                                        st.sampled_from([b"application/json",
                                                         b"application/vnd.trackflow.avro",
                                                         b"\xff\xfe", b""]))),
                    max_size=4)
_json_scalar = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(),
                         st.text(max_size=30))
_json = st.recursive(_json_scalar, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)),
    max_leaves=20)
_raw_fields = st.fixed_dictionaries({}, optional={
    "track_id": _json, "artist": _json, "title": _json, "isrc": _json, "duration_ms": _json,
    "attributes": _json, "album": _json})


def _decode_and_validate(value: bytes | None, headers: list[tuple[str, bytes]]) -> str:
    """What the worker's first two steps make of a record: ``valid``, or the reason of the
    DecodeError raised by decoding or of the InvalidRecord raised by validating what decoded.
    Any other exception, or either error raised by the other step, fails the test."""
    try:
        decoded = decode_raw_track(value, headers)
    except DecodeError as exc:
        assert exc.reason, "a decode error names its reason"
        return exc.reason
    try:
        validate_raw(decoded)
    except InvalidRecord as exc:
        assert exc.reason, "an invalid record names its reason"
        return exc.reason
    return "valid"


@given(value=st.one_of(st.none(), st.binary(max_size=300)), headers=_headers)
@settings(max_examples=300, deadline=None)
def test_arbitrary_bytes_only_ever_raise_decode_or_validation_errors(
        value: bytes | None, headers: list[tuple[str, bytes]]) -> None:
    _decode_and_validate(value, headers)


@given(obj=st.one_of(_json, _raw_fields))
@settings(max_examples=300, deadline=None)
def test_hostile_json_only_ever_raises_decode_or_validation_errors(obj: Any) -> None:
    _decode_and_validate(json.dumps(obj).encode(), [("content-type", b"application/json")])


@given(cut=st.integers(0, 200), flip=st.integers(0, 255), at=st.integers(10, 200))
@settings(max_examples=200, deadline=None)
def test_truncated_or_damaged_avro_only_ever_raises_decode_errors(cut: int, flip: int,
                                                                  at: int) -> None:
    good = encode("RawTrack", validate_raw({
        "track_id": "t1", "artist": "Daft Punk", "title": "One More Time", "isrc": None,
        "duration_ms": 320_000, "attributes": {"a": "b"}}))
    damaged = bytearray(good[:max(10, len(good) - cut)])
    if at < len(damaged):
        damaged[at] ^= flip
    try:
        decode_raw_track(bytes(damaged), [])
    except DecodeError as exc:
        assert exc.reason, "a decode error names its reason"


def test_deeply_nested_json_is_a_decode_error() -> None:
    with pytest.raises(DecodeError) as info:
        decode_raw_track(b"[" * 100_000, [("content-type", b"application/json")])
    assert info.value.reason == "invalid_json"


# --- the pipeline's decisions when Kafka refuses a record ----------------------------------------

def _pipeline(sender: Sender) -> EnrichmentPipeline:
    return EnrichmentPipeline(send=sender, settings=Settings(), enricher=NoProviders(),
                              clock=lambda: 1_700_000_100.0)


def _skipped(destination: str) -> float:
    value = metrics.RECORDS_SKIPPED.labels(topic="tracks.raw", destination=destination)
    return float(value._value.get())


async def test_a_tombstone_is_dead_lettered_with_an_empty_value_marked_null() -> None:
    sender = Sender()
    await _pipeline(sender).handle(Event(Message(None, None)))
    [(topic, key, value, headers)] = sender.sent
    facts = error_facts(headers)
    assert (topic, key, value) == ("tracks.dlq", None, b"")
    assert facts[H_VALUE_NULL] == "true" and facts[H_STAGE] == "decode"


async def test_a_dead_letter_kafka_refuses_is_skipped_counted_and_logged_once(
        caplog: pytest.LogCaptureFixture) -> None:
    sender = Sender({"tracks.dlq": MessageSizeTooLargeError()})
    before = _skipped("tracks.dlq")
    await _pipeline(sender).handle(Event(Message(b"not avro")))
    assert _skipped("tracks.dlq") == before + 1
    lines = [r.getMessage() for r in caplog.records if "record_skipped" in r.getMessage()]
    assert len(lines) == 1
    assert "topic=tracks.raw partition=2 offset=7" in lines[0]


async def test_a_dead_letter_that_fails_because_kafka_is_gone_stops_the_worker() -> None:
    sender = Sender({"tracks.dlq": KafkaConnectionError("no broker")})
    before = _skipped("tracks.dlq")
    with pytest.raises(KafkaConnectionError):
        await _pipeline(sender).handle(Event(Message(b"not avro")))
    assert _skipped("tracks.dlq") == before, "a record lost for a broker outage"


async def test_an_enriched_record_kafka_refuses_becomes_a_publish_dead_letter() -> None:
    sender = Sender({"tracks.enriched": MessageSizeTooLargeError()})
    raw = json.dumps({"track_id": "t1", "artist": "A", "title": "B"}).encode()
    await _pipeline(sender).handle(Event(Message(raw, b"t1",
                                                 [("content-type", b"application/json")])))
    [(topic, key, value, headers)] = sender.sent
    assert (topic, key, value) == ("tracks.dlq", b"t1", raw)
    assert error_facts(headers)[H_STAGE] == "publish"
    assert error_facts(headers)[H_REASON] == "unpublishable"


def test_record_errors_are_told_from_a_kafka_that_is_gone() -> None:
    assert is_record_error(MessageSizeTooLargeError())
    assert is_record_error(AssertionError("Need at least one: key or value"))
    assert not is_record_error(KafkaConnectionError())
    assert not is_record_error(TimeoutError())


def test_the_crash_watchdog_exits_the_process_after_the_grace_period() -> None:
    exited = threading.Event()
    codes: list[int] = []

    def fake_exit(code: int) -> None:
        codes.append(code)
        exited.set()

    watchdog = CrashWatchdog(0.05, exit=fake_exit)
    watchdog.arm()
    watchdog.arm()  # a second fatal error does not start a second countdown
    assert exited.wait(5), "the watchdog never ended the process"
    assert codes == [CRASH_EXIT_CODE]
