"""Dead-letter headers keep the original headers and carry the error context."""

from __future__ import annotations

from streams.deadletter import (
    H_ATTEMPT,
    H_FIRST_FAILURE,
    H_LAST_FAILURE,
    H_REASON,
    H_RETRYABLE,
    H_STAGE,
    Failure,
    Origin,
    attempt_of,
    dead_letter_headers,
    error_facts,
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
