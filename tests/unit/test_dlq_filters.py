"""The dead-letter tools' pure pieces: filters, counts, relative times and replay headers."""

from __future__ import annotations

import datetime as dt

import pytest

from trackflow.agents.deadletter import (
    H_ATTEMPT,
    H_RAW_ATTEMPT,
    Failure,
    Origin,
    dead_letter_headers,
)
from trackflow.streams.dlq_letters import (
    H_REPLAY_OF,
    DeadLetter,
    LetterFilter,
    age_bucket,
    matches,
    operator_replay_headers,
    ordered,
    parse_since,
    split_replayed,
    tally,
)

NOW = 1_700_000_000_000
MIN = 60_000
JSON = ("content-type", b"application/json")
SPOTIFY_503 = Failure("provider:spotify", "TransientError", "503", "provider_unavailable", True,
                      "spotify")
BAD_ISRC = Failure("validate", "InvalidRecord", "bad isrc", "invalid_isrc", False)


def letter(failure: Failure, *, offset: int = 0, age_ms: int = 0, key: bytes | None = b"t-1",
           track_id: str | None = None, original: list[tuple[str, bytes]] | None = None,
           ) -> DeadLetter:
    headers = dead_letter_headers(original if original is not None else [JSON], failure,
                                  Origin("tracks.raw", 0, offset, NOW, "trackflow"),
                                  attempt=1, now_ms=NOW - age_ms)
    decoded = {"value": {"track_id": track_id}} if track_id else None
    return DeadLetter("tracks.dlq", 0, offset, key, b"{}", tuple(headers), decoded)


def test_an_empty_filter_matches_everything_and_says_so() -> None:
    assert matches(letter(SPOTIFY_503), LetterFilter())
    assert LetterFilter().summary() == "(no filter)"


@pytest.mark.parametrize(("flt", "spotify", "isrc"), [
    (LetterFilter(providers=("Spotify",)), True, False),
    (LetterFilter(providers=("deezer", "spotify")), True, False),
    (LetterFilter(error_classes=("invalidrecord",)), False, True),
    (LetterFilter(reasons=("provider_unavailable",)), True, False),
    (LetterFilter(stages=("provider",)), True, False),
    (LetterFilter(stages=("provider:spotify",)), True, False),
    (LetterFilter(stages=("provider:deezer",)), False, False),
    (LetterFilter(stages=("validate",)), False, True),
    (LetterFilter(retryable=True), True, False),
    (LetterFilter(retryable=False), False, True),
    (LetterFilter(providers=("spotify",), retryable=False), False, False),
])
def test_filters_match_on_the_error_headers(flt: LetterFilter, spotify: bool, isrc: bool) -> None:
    assert matches(letter(SPOTIFY_503), flt) is spotify, f"spotify 503 vs {flt.summary()}"
    assert matches(letter(BAD_ISRC), flt) is isrc, f"invalid isrc vs {flt.summary()}"


def test_since_compares_with_the_last_failure_and_skips_letters_without_one() -> None:
    flt = LetterFilter(since_ms=NOW - 15 * MIN)
    assert matches(letter(SPOTIFY_503, age_ms=5 * MIN), flt)
    assert not matches(letter(SPOTIFY_503, age_ms=30 * MIN), flt)
    bare = DeadLetter("tracks.dlq", 0, 0, b"k", b"", ())
    assert not matches(bare, flt), "a letter without a last-failure time cannot be 'since' T"


def test_track_id_matches_the_key_or_the_decoded_track_id() -> None:
    flt = LetterFilter(track_ids=("abc",))
    assert matches(letter(BAD_ISRC, key=b"abc"), flt)
    assert matches(letter(BAD_ISRC, key=None, track_id="abc"), flt)
    assert not matches(letter(BAD_ISRC, key=b"xyz", track_id="xyz"), flt)


def test_summary_names_every_part() -> None:
    flt = LetterFilter(providers=("spotify",), retryable=True, since_ms=1, since_text="15m")
    assert flt.summary() == "provider=spotify retryable=true since=15m"


@pytest.mark.parametrize(("text", "ago_ms"), [
    ("30s", 30_000), ("15m", 15 * MIN), ("2h", 120 * MIN), ("1d", 1_440 * MIN),
    (" 1W ", 7 * 1_440 * MIN),
])
def test_relative_since(text: str, ago_ms: int) -> None:
    assert parse_since(text, now_ms=NOW) == NOW - ago_ms


def test_iso_since_with_and_without_a_zone() -> None:
    expected = int(dt.datetime(2024, 5, 1, 12, tzinfo=dt.UTC).timestamp() * 1000)
    assert parse_since("2024-05-01T12:00:00Z", now_ms=NOW) == expected
    assert parse_since("2024-05-01T12:00:00", now_ms=NOW) == expected, "naive times are UTC"
    assert parse_since("2024-05-01T14:00:00+02:00", now_ms=NOW) == expected


@pytest.mark.parametrize("text", ["yesterday", "15", "m15", "-5m", ""])
def test_unreadable_since_is_rejected_with_examples(text: str) -> None:
    with pytest.raises(ValueError, match="15m"):
        parse_since(text, now_ms=NOW)


@pytest.mark.parametrize(("age_ms", "bucket"), [
    (0, "<1 m"), (MIN - 1, "<1 m"), (MIN, "<10 m"), (59 * MIN, "<1 h"), (23 * 60 * MIN, "<1 d"),
    (48 * 60 * MIN, "older"),
])
def test_age_buckets(age_ms: int, bucket: str) -> None:
    assert age_bucket(NOW - age_ms, now_ms=NOW) == bucket
    assert age_bucket(None, now_ms=NOW) == "unknown"


def test_tally_counts_every_dimension() -> None:
    letters = [letter(SPOTIFY_503, age_ms=0), letter(SPOTIFY_503, age_ms=5 * MIN),
               letter(BAD_ISRC, age_ms=3 * 86_400_000)]
    counts = tally(letters, now_ms=NOW)
    assert counts["stage"] == {"provider:spotify": 2, "validate": 1}
    assert counts["provider"] == {"spotify": 2, "(none)": 1}
    assert counts["error class"] == {"TransientError": 2, "InvalidRecord": 1}
    assert counts["reason"] == {"provider_unavailable": 2, "invalid_isrc": 1}
    assert counts["retryable"] == {"true": 2, "false": 1}
    assert ordered("age", counts["age"]) == [("<1 m", 1), ("<10 m", 1), ("older", 1)], (
        "expected age buckets young to old, empty ones left out")
    assert ordered("stage", counts["stage"])[0] == ("provider:spotify", 2)


def test_replay_headers_keep_content_type_and_reset_the_attempt() -> None:
    replayed_before = [JSON, ("x-trace", b"t"), (H_RAW_ATTEMPT, b"3"), (H_REPLAY_OF, b"old/0/1")]
    dead = letter(SPOTIFY_503, original=replayed_before)
    assert dict(dead.headers)[H_ATTEMPT] == b"1"
    out = operator_replay_headers(dead.headers, dead.ref)
    assert out == [JSON, ("x-trace", b"t"), (H_RAW_ATTEMPT, b"1"),
                   (H_REPLAY_OF, b"tracks.dlq/0/0")], (
        "expected the original headers, no error headers, one attempt=1 and one replay.of")


def test_split_replayed_skips_ledger_entries_unless_forced() -> None:
    a, b = letter(BAD_ISRC, offset=1), letter(BAD_ISRC, offset=2)
    ledger = {"tracks.dlq/0/1": {"replayed_at": "x", "by": "me"}}
    assert split_replayed([a, b], ledger, force=False) == ([b], [a])
    assert split_replayed([a, b], ledger, force=True) == ([a, b], [])
