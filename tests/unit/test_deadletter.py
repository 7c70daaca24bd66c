"""Dead-letter headers keep the original headers and carry the error context."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from trackflow.agents.deadletter import (
    H_ATTEMPT,
    H_FIRST_FAILURE,
    H_HEADERS_DROPPED,
    H_KEY_BYTES,
    H_LAST_FAILURE,
    H_REASON,
    H_RETRYABLE,
    H_STAGE,
    H_VALUE_BYTES,
    H_VALUE_NULL,
    Failure,
    Origin,
    OutRecord,
    attempt_of,
    dead_letter_headers,
    error_facts,
    fit_record,
)

ORIGIN = Origin("tracks.raw", 3, 42, 1_000, "trackflow")


def test_headers_keep_content_type_and_add_the_error_context() -> None:
    failure = Failure("validate", "InvalidRecord", "bad isrc", "invalid_isrc", False)
    out = dead_letter_headers([("content-type", b"application/json")], failure, ORIGIN,
                              attempt=1, now_ms=5_000)
    assert ("content-type", b"application/json") in out
    facts = error_facts(out)
    assert facts[H_STAGE] == "validate"
    assert facts[H_REASON] == "invalid_isrc"
    assert facts[H_RETRYABLE] == "false"
    assert facts["__connect.errors.offset"] == "42"


def test_a_second_failure_keeps_the_first_failure_time_and_replaces_old_error_headers() -> None:
    first = dead_letter_headers([], Failure("provider:spotify", "TransientError", "503", "x", True,
                                            "spotify"), ORIGIN, attempt=1, now_ms=1_000)
    second = dead_letter_headers([*first, ("trackflow.attempt", b"2")],
                                 Failure("provider:spotify", "TransientError", "503", "x", True,
                                         "spotify"), ORIGIN, attempt=2, now_ms=9_000)
    facts = error_facts(second)
    assert facts[H_FIRST_FAILURE] == "1000"
    assert facts[H_LAST_FAILURE] == "9000"
    assert facts[H_ATTEMPT] == "2"
    assert sum(1 for k, _ in second if k == H_STAGE) == 1, "old error headers must not pile up"


def test_attempt_defaults_to_one() -> None:
    assert attempt_of(None) == 1
    assert attempt_of([("trackflow.attempt", b"3")]) == 3
    assert attempt_of([("trackflow.attempt", b"junk")]) == 1


# --- every record Kafka can hold makes a publishable dead letter ---------------------------------

LIMIT = 1_048_576
FAILURE = Failure("decode", "DecodeError", "message has no value", "empty", False)


def _batch_bytes(key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]]) -> int:
    """What the record weighs as the one record of a Kafka batch, built by aiokafka."""
    from aiokafka.record.default_records import DefaultRecordBatchBuilder

    builder = DefaultRecordBatchBuilder(magic=2, compression_type=0, is_transactional=False,
                                        producer_id=-1, producer_epoch=-1, base_sequence=-1,
                                        batch_size=2**31 - 1)
    assert builder.append(0, timestamp=1_700_000_000_000, key=key, value=value,
                          headers=headers) is not None
    return len(builder.build())


def _dead_letter(key: bytes | None, value: bytes | None,
                 original: list[tuple[str, bytes]], *, limit: int = LIMIT) -> OutRecord:
    headers = dead_letter_headers(original, FAILURE, ORIGIN, attempt=1, now_ms=5_000)
    return fit_record(key, value, headers, max_bytes=limit)


def test_a_tombstone_becomes_an_empty_value_marked_as_null() -> None:
    out = _dead_letter(None, None, [])
    assert out.key is None and out.value == b""
    assert error_facts(out.headers)[H_VALUE_NULL] == "true"


def test_an_empty_value_stays_empty_and_is_not_marked_as_null() -> None:
    out = _dead_letter(b"k", b"", [])
    assert out.value == b"" and H_VALUE_NULL not in error_facts(out.headers)


def test_a_record_that_fits_is_unchanged() -> None:
    original = [("content-type", b"application/json"), ("x", b"\x00\xff"), ("x", b"dup")]
    out = _dead_letter(b"key", b"value", original)
    assert (out.key, out.value) == (b"key", b"value")
    assert out.headers[:3] == original
    assert not {H_VALUE_BYTES, H_KEY_BYTES, H_HEADERS_DROPPED} & set(error_facts(out.headers))


def test_a_value_too_large_is_cut_to_fit_and_says_its_length() -> None:
    value = bytes(range(256)) * (LIMIT // 256)
    out = _dead_letter(b"key", value, [("content-type", b"application/json")])
    assert _batch_bytes(out.key, out.value, out.headers) <= LIMIT
    assert value.startswith(out.value) and len(out.value) > LIMIT - 4_096
    assert error_facts(out.headers)[H_VALUE_BYTES] == str(len(value))
    assert ("content-type", b"application/json") in out.headers


def test_huge_original_headers_are_left_out_after_the_value_and_counted() -> None:
    original = [("big", b"x" * 524_000), ("big", b"y" * 524_000), ("small", b"s")]
    out = _dead_letter(b"key", b"v" * 5_000, original)
    facts = error_facts(out.headers)
    assert _batch_bytes(out.key, out.value, out.headers) <= LIMIT
    assert out.value == b"" and facts[H_VALUE_BYTES] == "5000"
    assert facts[H_HEADERS_DROPPED] == "2"
    assert ("big", b"x" * 524_000) in out.headers  # kept from the front
    assert facts[H_REASON] == "empty"  # the error context always survives


def test_a_huge_key_is_cut_last() -> None:
    out = _dead_letter(b"k" * (LIMIT - 100), None, [])
    facts = error_facts(out.headers)
    assert _batch_bytes(out.key, out.value, out.headers) <= LIMIT
    assert out.key is not None and len(out.key) > LIMIT - 8_192
    assert facts[H_KEY_BYTES] == str(LIMIT - 100) and facts[H_VALUE_NULL] == "true"


_header = st.tuples(st.text(max_size=30), st.binary(max_size=5_000))


@given(key=st.one_of(st.none(), st.binary(max_size=70_000)),
       value=st.one_of(st.none(), st.binary(max_size=70_000)),
       original=st.lists(_header, max_size=12),
       limit=st.integers(65_536, 150_000))
@settings(max_examples=150, deadline=None)
def test_every_dead_letter_fits_the_topic_and_keeps_its_error_context(
        key: bytes | None, value: bytes | None, original: list[tuple[str, bytes]],
        limit: int) -> None:
    out = _dead_letter(key, value, original, limit=limit)
    assert out.value is not None, "the producer refuses a record with neither key nor value"
    assert _batch_bytes(out.key, out.value, out.headers) <= limit
    facts = error_facts(out.headers)
    assert facts[H_REASON] == "empty" and facts["__connect.errors.offset"] == "42"
    if value is not None and H_VALUE_BYTES not in facts:
        assert out.value == value, "an uncut value is the original, byte for byte"
    if value is not None:
        assert value.startswith(out.value), "a cut value is a prefix of the original"
