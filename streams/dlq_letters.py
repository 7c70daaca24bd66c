"""Dead letters as values: filters, ``--since`` parsing, counts and replay headers.

Pure functions only (no Kafka, no click), so the operator tools' logic is unit-tested without a
broker. The Kafka side lives in ``dlq_replay.py``, the command line in ``dlq.py``.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from trackflow.agents.deadletter import (
    ERROR_PREFIXES,
    H_CLASS,
    H_LAST_FAILURE,
    H_PROVIDER,
    H_RAW_ATTEMPT,
    H_REASON,
    H_RETRYABLE,
    H_STAGE,
    error_facts,
)

#: Carried on tracks.raw by ``dlq replay``: the dead letter it came from.
H_REPLAY_OF = "trackflow.replay.of"

AGE_BUCKETS: tuple[tuple[str, int], ...] = (
    ("<1 m", 60_000), ("<10 m", 600_000), ("<1 h", 3_600_000), ("<1 d", 86_400_000),
)
OLDER = "older"
UNKNOWN = "unknown"
_UNITS_MS = {"s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
_RELATIVE = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One record of a dead-letter topic, its original bytes and its error facts."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]
    decoded: Mapping[str, Any] | None = None
    """What ``decode_message`` made of it, when it was decoded."""
    facts: Mapping[str, str] = field(init=False)
    """The error headers as text."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "facts", dict(error_facts(self.headers)))

    @property
    def ref(self) -> str:
        """``<topic>/<partition>/<offset>``: the ledger key and ``trackflow.replay.of`` value."""
        return f"{self.topic}/{self.partition}/{self.offset}"

    @property
    def retryable(self) -> bool | None:
        """The retryable header as a bool, None when missing."""
        value = self.facts.get(H_RETRYABLE)
        return None if value is None else value.strip().lower() == "true"

    @property
    def last_failure_ms(self) -> int | None:
        """Epoch ms of the last failure, None when missing or unreadable."""
        try:
            return int(self.facts[H_LAST_FAILURE])
        except (KeyError, ValueError):
            return None

    @property
    def track_ids(self) -> set[str]:
        """The key and, when decodable, the value's track_id."""
        ids = set()
        if self.key is not None:
            ids.add(self.key.decode("utf-8", "replace"))
        value = (self.decoded or {}).get("value") or {}
        if value.get("track_id"):
            ids.add(str(value["track_id"]))
        return ids


@dataclass(frozen=True, slots=True)
class LetterFilter:
    """What an operator asked for; empty fields match everything. Values of one field are ORed."""

    providers: tuple[str, ...] = ()
    error_classes: tuple[str, ...] = ()
    stages: tuple[str, ...] = ()
    """``provider`` matches every ``provider:<name>`` stage."""
    reasons: tuple[str, ...] = ()
    retryable: bool | None = None
    since_ms: int | None = None
    """Last failure at or after this epoch ms."""
    since_text: str | None = None
    """The ``--since`` value as typed, for the summary."""
    track_ids: tuple[str, ...] = ()

    def summary(self) -> str:
        """A one-line description, e.g. ``provider=spotify retryable=true``."""
        parts = [f"{name}={','.join(values)}" for name, values in (
            ("provider", self.providers), ("error-class", self.error_classes),
            ("stage", self.stages), ("reason", self.reasons), ("track-id", self.track_ids))
            if values]
        if self.retryable is not None:
            parts.append(f"retryable={str(self.retryable).lower()}")
        if self.since_ms is not None:
            parts.append(f"since={self.since_text or self.since_ms}")
        return " ".join(parts) or "(no filter)"


def _one_of(value: str | None, wanted: Sequence[str]) -> bool:
    return value is not None and value.lower() in {w.lower() for w in wanted}


def matches(letter: DeadLetter, flt: LetterFilter) -> bool:
    """Whether ``letter`` passes every part of ``flt``."""
    facts = letter.facts
    if flt.providers and not _one_of(facts.get(H_PROVIDER), flt.providers):
        return False
    if flt.error_classes and not _one_of(facts.get(H_CLASS), flt.error_classes):
        return False
    if flt.reasons and not _one_of(facts.get(H_REASON), flt.reasons):
        return False
    if flt.stages:
        stage = (facts.get(H_STAGE) or "").lower()
        if not any(stage == s.lower() or stage.startswith(s.lower() + ":") for s in flt.stages):
            return False
    if flt.retryable is not None and letter.retryable is not flt.retryable:
        return False
    if flt.since_ms is not None:
        last = letter.last_failure_ms
        if last is None or last < flt.since_ms:
            return False
    return not flt.track_ids or bool(letter.track_ids & set(flt.track_ids))


def parse_since(text: str, *, now_ms: int) -> int:
    """Epoch ms for ``15m``/``2h``/``1d``/``30s``/``1w`` ago, or an ISO time (UTC if no zone)."""
    rel = _RELATIVE.match(text)
    if rel:
        return now_ms - int(rel.group(1)) * _UNITS_MS[rel.group(2).lower()]
    try:
        when = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"{text!r} is neither a relative time (15m, 2h, 1d) nor an ISO time "
            "(2024-05-01T12:00:00Z)") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return int(when.timestamp() * 1000)


def age_bucket(last_failure_ms: int | None, *, now_ms: int) -> str:
    """``<1 m``, ``<10 m``, ``<1 h``, ``<1 d``, ``older``, or ``unknown`` without a time."""
    if last_failure_ms is None:
        return UNKNOWN
    age = now_ms - last_failure_ms
    for label, limit in AGE_BUCKETS:
        if age < limit:
            return label
    return OLDER


#: Stats dimension -> how to read it from a dead letter.
DIMENSIONS: dict[str, Callable[[DeadLetter], str]] = {
    "stage": lambda d: d.facts.get(H_STAGE) or UNKNOWN,
    "provider": lambda d: d.facts.get(H_PROVIDER) or "(none)",
    "error class": lambda d: d.facts.get(H_CLASS) or UNKNOWN,
    "reason": lambda d: d.facts.get(H_REASON) or UNKNOWN,
    "retryable": lambda d: UNKNOWN if d.retryable is None else str(d.retryable).lower(),
}


def tally(letters: Iterable[DeadLetter], *, now_ms: int) -> dict[str, Counter[str]]:
    """Counts per stage, provider, error class, reason, retryable and age bucket."""
    counts: dict[str, Counter[str]] = {name: Counter() for name in [*DIMENSIONS, "age"]}
    for letter in letters:
        count_into(counts, letter, now_ms=now_ms)
    return counts


def count_into(counts: dict[str, Counter[str]], letter: DeadLetter, *, now_ms: int) -> None:
    """Add one dead letter to the counts of :func:`tally`."""
    for name, read in DIMENSIONS.items():
        counts[name][read(letter)] += 1
    counts["age"][age_bucket(letter.last_failure_ms, now_ms=now_ms)] += 1


def ordered(name: str, counter: Counter[str]) -> list[tuple[str, int]]:
    """Ages from young to old, everything else by count, most first."""
    if name == "age":
        labels = [label for label, _ in AGE_BUCKETS] + [OLDER, UNKNOWN]
        return [(label, counter[label]) for label in labels if counter[label]]
    return sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))


def operator_replay_headers(headers: Iterable[tuple[str, bytes]], ref: str
                            ) -> list[tuple[str, bytes]]:
    """The original headers without error, attempt or replay headers, plus attempt 1 and ref.

    Not ``deadletter.replay_headers``: that one is the reprocessing agent's retry (the caller's
    attempt number, the failures folded into ``trackflow.errors.history``). An operator's replay
    starts the record afresh at attempt 1 with no history, and says in ``trackflow.replay.of``
    which dead letter it came from.
    """
    dropped = (H_RAW_ATTEMPT, H_REPLAY_OF)
    kept = [(k, bytes(v)) for k, v in headers
            if not k.startswith(ERROR_PREFIXES) and k not in dropped]
    return [*kept, (H_RAW_ATTEMPT, b"1"), (H_REPLAY_OF, ref.encode())]


def ledger_value(*, now: dt.datetime, by: str) -> bytes:
    """The ledger record of one replay."""
    return json.dumps({"replayed_at": now.isoformat(timespec="seconds"), "by": by}).encode()


def split_replayed(letters: Iterable[DeadLetter], ledger: Mapping[str, Mapping[str, Any]],
                   *, force: bool) -> tuple[list[DeadLetter], list[DeadLetter]]:
    """(to replay, already replayed and skipped); ``force`` skips nothing."""
    todo: list[DeadLetter] = []
    done: list[DeadLetter] = []
    for letter in letters:
        (done if letter.ref in ledger and not force else todo).append(letter)
    return todo, done
