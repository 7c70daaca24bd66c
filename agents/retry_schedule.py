"""The dead-letter retry schedule: park or retry, when to retry, and which entries to forget.

Everything here is pure (time and randomness are passed in) so the reprocessing agent
(:mod:`agents.reprocess`) stays thin. A retryable dead letter with attempt ``n`` is retried at
``max(not-before header, last failure + backoff)``, the backoff drawn with full jitter from
``0 .. min(cap, base * 2**(n-1))``: the first retry waits up to ``base``, and dead letters from one
provider outage spread out instead of returning together.

Schedule entries live in a changelogged table under ``"<dlq partition>/<dlq offset>"``: the key
names the partition because a Faust table key must always be written from the same partition.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from trackflow.agents.deadletter import (
    H_ATTEMPT,
    H_LAST_FAILURE,
    H_NOT_BEFORE,
    H_PARTITION,
    H_PROVIDER,
    H_RETRYABLE,
    error_facts,
)
from trackflow.agents.settings import DlqSettings
from trackflow.providers.backoff import UniformRng, backoff_delay

NOT_RETRYABLE = "not_retryable"
ATTEMPTS_EXHAUSTED = "attempts_exhausted"
NO_ERROR_HEADERS = "no_error_headers"
BAD_ERROR_HEADERS = "bad_error_headers"

WAITING = "waiting"
DONE = "done"


@dataclass(frozen=True, slots=True)
class Park:
    """Move the dead letter to the parked topic."""

    reason: str
    """``not_retryable``, ``attempts_exhausted``, ``no_error_headers`` or ``bad_error_headers``."""


@dataclass(frozen=True, slots=True)
class Retry:
    """Republish the dead letter to the raw topic, not before ``not_before_ms``."""

    attempt: int
    """The attempt that failed; the replay is attempt ``attempt + 1``."""
    not_before_ms: int
    """Epoch milliseconds."""
    provider: str
    """The provider whose failure sent it here ("" when none)."""
    partition: int | None
    """The original record's partition: the failing provider's breaker is kept per partition."""


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def decide(headers: Iterable[tuple[str, bytes | None]] | None, settings: DlqSettings, *,
           now_ms: int, rng: UniformRng | None = None) -> Park | Retry:
    """Park or retry one dead letter, from its headers alone."""
    facts = error_facts(headers or ())
    if not facts:
        return Park(NO_ERROR_HEADERS)
    if facts.get(H_RETRYABLE) != "true":
        return Park(NOT_RETRYABLE)
    attempt = _int(facts.get(H_ATTEMPT))
    if attempt is None or attempt < 1:
        # Retrying without knowing the attempt could loop for ever.
        return Park(BAD_ERROR_HEADERS)
    if attempt >= settings.max_attempts:
        return Park(ATTEMPTS_EXHAUSTED)
    return Retry(attempt, not_before_ms(facts, settings, attempt=attempt, now_ms=now_ms, rng=rng),
                 facts.get(H_PROVIDER, ""), _int(facts.get(H_PARTITION)))


def not_before_ms(facts: Mapping[str, str], settings: DlqSettings, *, attempt: int, now_ms: int,
                  rng: UniformRng | None = None) -> int:
    """``max(not-before header, last failure + full-jitter backoff)`` in epoch milliseconds."""
    last_failure = _int(facts.get(H_LAST_FAILURE))
    base = last_failure if last_failure is not None else now_ms
    # backoff_delay counts retries from 0; attempt 1 failed means retry number 0 is next.
    delay_s = backoff_delay(attempt - 1, settings.backoff_base_s, settings.backoff_cap_s, rng)
    when = base + int(delay_s * 1000)
    hinted = _int(facts.get(H_NOT_BEFORE))
    return max(when, hinted) if hinted is not None else when


def breaker_wait_s(open_until: float, now: float, jitter_s: float,
                   rng: UniformRng | None = None) -> float:
    """Seconds to wait for an open breaker to allow a probe (0 when it is not open)."""
    if open_until <= now:
        return 0.0
    spread = rng.uniform(0.0, jitter_s) if rng is not None and jitter_s > 0 else 0.0
    return open_until - now + spread


def schedule_key(partition: int, offset: int) -> str:
    """The table key of a dead letter: scoped to its DLQ partition."""
    return f"{partition}/{offset}"


def parse_key(key: str) -> tuple[int, int] | None:
    """``(partition, offset)`` of a schedule key, or None for a foreign key."""
    partition, sep, offset = key.partition("/")
    if not sep:
        return None
    p, o = _int(partition), _int(offset)
    return (p, o) if p is not None and o is not None else None


def waiting_entry(retry: Retry) -> dict[str, Any]:
    """The table value of a scheduled dead letter."""
    return {"not_before": retry.not_before_ms, "provider": retry.provider,
            "attempt": retry.attempt, "state": WAITING}


def done_entry(entry: Mapping[str, Any]) -> dict[str, Any]:
    """The table value once the replay was published."""
    return {**entry, "state": DONE}


def prunable(states: Mapping[int, str], *, oldest_unfinished: int | None,
             first_delivered: int | None = None) -> list[int]:
    """Offsets whose schedule entries can be deleted, from ``{offset: state}`` of one partition.

    An entry below the oldest unfinished offset is never delivered again once that offset is
    committed, so a ``done`` entry there is no longer needed. A ``waiting`` entry below the first
    offset delivered after an assignment is stale too: that offset was the committed position, so
    the record finished and only its ``done`` write was lost. Nothing is pruned at or above the
    oldest unfinished offset: a crash re-delivers it and the entry must say whether it was done.
    """
    if oldest_unfinished is None:
        return []
    return sorted(
        offset for offset, state in states.items()
        if offset < oldest_unfinished
        and (state == DONE or (first_delivered is not None and offset < first_delivered))
    )


@dataclass
class Waiting:
    """The dead letters waiting for their retry and when each started failing, with the
    earliest of those in O(log n): a DLQ burst leaves tens of thousands waiting, and the gauge of
    the oldest is read each time one starts or ends waiting."""

    _since: dict[tuple[int, int], float] = field(default_factory=dict)
    """(dlq partition, offset) -> when it started failing."""
    _heap: list[tuple[float, int, tuple[int, int]]] = field(default_factory=list)
    _pushed: int = 0
    """Ties in the heap are broken by insertion order."""

    def __len__(self) -> int:
        return len(self._since)

    def add(self, key: tuple[int, int], since: float) -> None:
        self._since[key] = since
        self._pushed += 1
        heapq.heappush(self._heap, (since, self._pushed, key))
        if len(self._heap) > 2 * len(self._since) + 64:
            # Entries of letters gone while an older one kept waiting: rebuilt, amortized O(1).
            self._heap = [(t, i, k) for i, (k, t) in enumerate(self._since.items())]
            heapq.heapify(self._heap)

    def discard(self, key: tuple[int, int]) -> None:
        # The heap entry stays until it reaches the top (see :meth:`oldest`).
        self._since.pop(key, None)

    def keys(self) -> list[tuple[int, int]]:
        return list(self._since)

    def oldest(self) -> float | None:
        """The earliest ``since`` of the letters still waiting."""
        heap = self._heap
        while heap and self._since.get(heap[0][2]) != heap[0][0]:
            heapq.heappop(heap)  # gone, or added again since
        return heap[0][0] if heap else None
