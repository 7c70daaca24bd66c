"""Dead-letter headers: what went wrong with a record, carried next to its original bytes.

A dead letter's value and key are the original record's, byte for byte, and its original headers
are kept (a JSON record keeps its ``content-type``), so a replay is lossless. The error context is
added as headers. Where Kafka Connect already has a name for a fact, we use it, so that operators'
tools and habits carry over; the rest live under ``trackflow.errors.``. All values are UTF-8 text.

| header | meaning |
| --- | --- |
| ``__connect.errors.topic`` / ``.partition`` / ``.offset`` | where the original record was read |
| ``__connect.errors.stage`` | ``decode``, ``validate``, ``provider:<name>`` or ``publish`` |
| ``__connect.errors.exception.class.name`` | the error class, e.g. ``InvalidRecord`` |
| ``__connect.errors.exception.message`` | the error message (never a secret) |
| ``trackflow.errors.reason`` | short machine code, e.g. ``invalid_isrc``, ``provider_unavailable``
  |
| ``trackflow.errors.provider`` | the provider that failed, empty when none |
| ``trackflow.errors.retryable`` | ``true`` when a later retry may succeed |
| ``trackflow.errors.attempt`` | how many times the record has been tried (1 = first pass) |
| ``trackflow.errors.first.failure.ms`` / ``last.failure.ms`` | epoch milliseconds |
| ``trackflow.errors.not.before.ms`` | earliest time a retry should run (epoch ms), when retryable |
| ``trackflow.errors.original.timestamp.ms`` | the original record's timestamp |
| ``trackflow.errors.consumer.group`` | the consumer group that read it |
| ``trackflow.errors.history`` | JSON list of earlier failures, oldest first, the last 10 |
| ``trackflow.errors.original.value.null`` | ``true``: the original had no value (a tombstone); the
  dead letter's value is empty, because Kafka needs a key or a value |
| ``trackflow.errors.original.value.bytes`` | set when the value was cut: the original's length |
| ``trackflow.errors.original.key.bytes`` | set when the key was cut: the original's length |
| ``trackflow.errors.original.headers.dropped`` | set when original headers were left out: how
  many |

A dead letter must fit the dead-letter topic (``kafka.max_message_bytes``): when the original
record and the error context do not fit together, the value is cut first, then the original
headers are left out from the last, then the key is cut; the headers above say what was cut, so
the original's bytes are never silently changed.

The replayed record on ``tracks.raw`` carries ``trackflow.attempt`` and ``trackflow.errors.history``
(so the next dead letter still tells the whole story); every other error header is dropped there
and kept on the dead letter only. A parked record keeps every header of its dead letter and adds
``trackflow.parked.reason`` (``not_retryable``, ``attempts_exhausted``, ``no_error_headers``,
``bad_error_headers``) and ``trackflow.parked.at.ms``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

H_TOPIC = "__connect.errors.topic"
H_PARTITION = "__connect.errors.partition"
H_OFFSET = "__connect.errors.offset"
H_STAGE = "__connect.errors.stage"
H_CLASS = "__connect.errors.exception.class.name"
H_MESSAGE = "__connect.errors.exception.message"
H_REASON = "trackflow.errors.reason"
H_PROVIDER = "trackflow.errors.provider"
H_RETRYABLE = "trackflow.errors.retryable"
H_ATTEMPT = "trackflow.errors.attempt"
H_FIRST_FAILURE = "trackflow.errors.first.failure.ms"
H_LAST_FAILURE = "trackflow.errors.last.failure.ms"
H_NOT_BEFORE = "trackflow.errors.not.before.ms"
H_ORIGINAL_TS = "trackflow.errors.original.timestamp.ms"
H_GROUP = "trackflow.errors.consumer.group"
#: Carried on tracks.raw by replays: which attempt this is.
H_RAW_ATTEMPT = "trackflow.attempt"
#: Carried on replays and kept on their dead letters: the earlier failures, oldest first.
H_HISTORY = "trackflow.errors.history"
#: Added when a dead letter is moved to the parked topic.
H_PARKED_REASON = "trackflow.parked.reason"
H_PARKED_AT = "trackflow.parked.at.ms"

H_VALUE_NULL = "trackflow.errors.original.value.null"
H_VALUE_BYTES = "trackflow.errors.original.value.bytes"
H_KEY_BYTES = "trackflow.errors.original.key.bytes"
H_HEADERS_DROPPED = "trackflow.errors.original.headers.dropped"

ERROR_PREFIXES = ("__connect.errors.", "trackflow.errors.")
#: What a record costs the broker beyond its key, value and header bytes (batch header, record
#: framing, varints), with room to spare: Kafka checks the whole batch against the limit.
RECORD_OVERHEAD = 256
HEADER_OVERHEAD = 12
MAX_MESSAGE = 1_000
MAX_HISTORY = 10

Headers = Sequence[tuple[str, bytes]]


@dataclass(frozen=True, slots=True)
class Failure:
    """Why a record is being dead-lettered."""

    stage: str
    """``decode``, ``validate``, ``provider:<name>`` or ``publish``."""
    error_class: str
    """Short class name of the error."""
    message: str
    """Human-readable message; must never contain a secret."""
    reason: str
    """Short machine code."""
    retryable: bool
    """Whether a later retry may succeed."""
    provider: str | None = None
    """The provider that failed, if any."""


@dataclass(frozen=True, slots=True)
class Origin:
    """Where the failed record was read."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None
    consumer_group: str


def _get(headers: Iterable[tuple[str, bytes | None]], name: str) -> str | None:
    found = None
    for k, v in headers:
        if k == name and v is not None:
            found = bytes(v).decode("utf-8", "replace")
    return found


def attempt_of(headers: Iterable[tuple[str, bytes | None]] | None) -> int:
    """The attempt number a raw record carries (1 when it has none)."""
    value = _get(headers or (), H_RAW_ATTEMPT)
    try:
        return max(1, int(value)) if value is not None else 1
    except ValueError:
        return 1


def dead_letter_headers(
    original: Iterable[tuple[str, bytes | None]] | None,
    failure: Failure,
    origin: Origin,
    *,
    attempt: int,
    now_ms: int,
    not_before_ms: int | None = None,
) -> list[tuple[str, bytes]]:
    """The original headers (minus stale error headers but the history), plus the error context."""
    present = [(k, bytes(v)) for k, v in (original or ()) if v is not None]
    first = _get(present, H_FIRST_FAILURE) or str(now_ms)
    kept = [(k, v) for k, v in present if k == H_HISTORY or not k.startswith(ERROR_PREFIXES)]
    facts = {
        H_TOPIC: origin.topic,
        H_PARTITION: str(origin.partition),
        H_OFFSET: str(origin.offset),
        H_STAGE: failure.stage,
        H_CLASS: failure.error_class,
        H_MESSAGE: failure.message[:MAX_MESSAGE],
        H_REASON: failure.reason,
        H_PROVIDER: failure.provider or "",
        H_RETRYABLE: "true" if failure.retryable else "false",
        H_ATTEMPT: str(attempt),
        H_FIRST_FAILURE: first,
        H_LAST_FAILURE: str(now_ms),
        H_GROUP: origin.consumer_group,
    }
    if origin.timestamp_ms is not None:
        facts[H_ORIGINAL_TS] = str(origin.timestamp_ms)
    if not_before_ms is not None:
        facts[H_NOT_BEFORE] = str(not_before_ms)
    return kept + [(k, v.encode()) for k, v in facts.items()]


def error_facts(headers: Iterable[tuple[str, bytes | None]]) -> Mapping[str, str]:
    """The error headers of a dead letter as text, keyed by header name."""
    return {
        k: bytes(v).decode("utf-8", "replace")
        for k, v in headers
        if v is not None and k.startswith(ERROR_PREFIXES)
    }


def _int_or_none(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def extend_history(headers: Iterable[tuple[str, bytes | None]],
                   *, limit: int = MAX_HISTORY) -> bytes:
    """The history header value: the dead letter's earlier history plus its own failure.

    Keeps the last ``limit`` entries; an unreadable history is started afresh rather than
    failing the replay.
    """
    headers = [(k, v) for k, v in headers if v is not None]
    history: list[Any] = []
    raw = _get(headers, H_HISTORY)
    if raw:
        try:
            parsed = json.loads(raw)
        except ValueError:
            parsed = None
        if isinstance(parsed, list):
            history = [e for e in parsed if isinstance(e, dict)]
    history.append({
        "attempt": _int_or_none(_get(headers, H_ATTEMPT)),
        "stage": _get(headers, H_STAGE),
        "reason": _get(headers, H_REASON),
        "error_class": _get(headers, H_CLASS),
        "at_ms": _int_or_none(_get(headers, H_LAST_FAILURE)),
    })
    return json.dumps(history[-limit:], separators=(",", ":")).encode()


def replay_headers(dead_letter: Iterable[tuple[str, bytes | None]], *,
                   attempt: int) -> list[tuple[str, bytes]]:
    """Headers of a dead letter republished to the raw topic as attempt number ``attempt``.

    The original headers (``content-type`` above all) survive; the error context collapses into
    the history header.
    """
    headers = [(k, bytes(v)) for k, v in dead_letter if v is not None]
    kept = [(k, v) for k, v in headers
            if not k.startswith(ERROR_PREFIXES) and k != H_RAW_ATTEMPT]
    return [*kept, (H_RAW_ATTEMPT, str(attempt).encode()), (H_HISTORY, extend_history(headers))]


def parked_headers(dead_letter: Iterable[tuple[str, bytes | None]], *, reason: str,
                   now_ms: int) -> list[tuple[str, bytes]]:
    """Every header of the dead letter, plus why and when it was parked."""
    kept = [(k, bytes(v)) for k, v in dead_letter
            if v is not None and k not in (H_PARKED_REASON, H_PARKED_AT)]
    return [*kept, (H_PARKED_REASON, reason.encode()), (H_PARKED_AT, str(now_ms).encode())]


@dataclass(frozen=True, slots=True)
class OutRecord:
    """A record ready for the producer: Kafka accepts it as it is."""

    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]


def record_size(key: bytes | None, value: bytes | None, headers: Headers) -> int:
    """An upper bound of what one record weighs against a topic's ``max.message.bytes``."""
    return (RECORD_OVERHEAD + len(key or b"") + len(value or b"")
            + sum(HEADER_OVERHEAD + len(k.encode()) + len(v) for k, v in headers))


def fit_record(key: bytes | None, value: bytes | None, headers: Headers, *,
               max_bytes: int) -> OutRecord:
    """``key``/``value``/``headers`` made publishable for any record Kafka can hold.

    A missing value becomes an empty one marked with :data:`H_VALUE_NULL` (the producer refuses
    a record with neither key nor value). What does not fit in ``max_bytes`` is cut, value
    first, then original headers (those without an error prefix, from the last), then the key,
    each cut said in a header. The error headers are small and always kept.
    """
    out = [(k, bytes(v)) for k, v in headers]
    if value is None:
        out.append((H_VALUE_NULL, b"true"))
        value = b""
    over = record_size(key, value, out) - max_bytes
    if over <= 0:
        return OutRecord(key, value, out)
    note = (H_VALUE_BYTES, str(len(value)).encode())
    over += HEADER_OVERHEAD + len(note[0]) + len(note[1])
    if over <= len(value):
        return OutRecord(key, value[:len(value) - over], [*out, note])
    over -= len(value)
    value = b""
    out.append(note)
    # Room for the count of dropped headers (seven digits at most), taken back if none is.
    reserve = HEADER_OVERHEAD + len(H_HEADERS_DROPPED) + 7
    over += reserve
    dropped = 0
    for i in range(len(out) - 1, -1, -1):
        k, v = out[i]
        if over <= 0:
            break
        if k.startswith(ERROR_PREFIXES):
            continue
        over -= HEADER_OVERHEAD + len(k.encode()) + len(v)
        del out[i]
        dropped += 1
    if dropped:
        out.append((H_HEADERS_DROPPED, str(dropped).encode()))
    else:
        over -= reserve
    if over > 0 and key:
        cut = (H_KEY_BYTES, str(len(key)).encode())
        over += HEADER_OVERHEAD + len(cut[0]) + len(cut[1])
        out.append(cut)
        key = key[:max(0, len(key) - over)] or None
    return OutRecord(key, value, out)
