"""The record being worked on: which input partition it came from, what it read from the cache,
and the priority and deadline of the calls made for it.

Rate-limit slots and breaker state are kept per input partition (a table key must always be
written from the same partition), and provider calls are made deep inside client code that knows
nothing of Kafka, so the record travels in one context variable. Each record runs in its own
asyncio task, which copies the context when it is created.

Reading it outside a record raises :class:`RecordContextNotSet`: a provider call that silently
used some default partition would read and write another partition's state.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from contextvars import ContextVar, Token
from dataclasses import dataclass, field, replace
from enum import IntEnum
from typing import Any


@dataclass(slots=True)
class AnswersUsed:
    """What one record's waterfall read through the cache.

    Something derived from cached answers (a waterfall result) must not outlive them:
    ``expires_at`` is the earliest in-process expiry among the answers handed out, on the
    cache's clock.
    """

    answers: int = 0
    """Answers handed out by the cache."""
    expires_at: float = math.inf
    """The earliest expiry among them."""


class Priority(IntEnum):
    """Whose calls a provider's budget serves first (see :mod:`providers.limiter`)."""

    FRESH = 0
    """Records read from the raw topic for the first time: they wait in Kafka meanwhile."""
    REFRESH = 1
    """Refreshes of published records with deferred fields (``agents.refresh``)."""
    REPLAY = 2
    """Replays of dead letters (``agents.reprocess`` sent them back to the raw topic)."""


@dataclass(frozen=True, slots=True)
class RecordContext:
    """The record a task is working on, and how the calls made for it now are made."""

    partition: int
    """The input partition the record was read from."""
    answers: AnswersUsed = field(default_factory=AnswersUsed)
    """What its waterfall has read through the cache so far."""
    priority: Priority = Priority.FRESH
    """Whose budget its calls take (see :func:`call_priority`)."""
    deadline: float | None = None
    """Until when its calls wait for their rate-limit slot (see :func:`call_deadline`)."""
    calls: dict[str, int] = field(default_factory=dict)
    """By provider, the calls it was let make (see :func:`count_call`)."""


class RecordContextNotSet(LookupError):
    """Read the record context outside a record."""


_record: ContextVar[RecordContext] = ContextVar("trackflow_record")


def enter_record(partition: int) -> Token[RecordContext]:
    """Make ``partition``'s new record the current one (for this task and those it starts)."""
    return _record.set(RecordContext(partition))


def leave_record(token: Token[RecordContext]) -> None:
    """Restore the context from before :func:`enter_record`."""
    _record.reset(token)


def current_record() -> RecordContext:
    """The record being worked on; raises :class:`RecordContextNotSet` outside one."""
    try:
        return _record.get()
    except LookupError:
        raise RecordContextNotSet(
            "no record is being processed: per-partition provider state can only be used "
            "while handling a record (enter_record)") from None


def record_or_none() -> RecordContext | None:
    """The record being worked on, or None: for code that also runs outside records (the
    cache serves the CLI and tests too)."""
    return _record.get(None)


def count_call(provider: str) -> None:
    """A call of the current record to ``provider`` got its rate-limit slot: what a record
    costs each provider (``agents.backlog``). Outside a record, nothing."""
    record = _record.get(None)
    if record is not None:
        record.calls[provider] = record.calls.get(provider, 0) + 1


@contextmanager
def _changed(**changes: Any) -> Iterator[None]:
    token = _record.set(replace(current_record(), **changes))
    try:
        yield
    finally:
        _record.reset(token)


def call_deadline(deadline: float | None) -> AbstractContextManager[None]:
    """Calls made inside wait for their rate-limit slot until ``deadline`` (wall clock) at most,
    then give up with ``RateLimitWait``; ``None`` (a record's default) waits as long as the
    slot takes: waiting for budget is backpressure, not a failure. The waterfall sets a
    deadline only for stages whose fields are optional, so that those can be deferred."""
    return _changed(deadline=deadline)


def current_deadline() -> float | None:
    """The deadline of the calls being made for this record (see :func:`call_deadline`)."""
    return current_record().deadline


def call_priority(priority: Priority) -> AbstractContextManager[None]:
    """Calls made inside are of ``priority``: fresh records get a provider's budget first,
    refreshes what fresh records leave (and at least their minimum share), replays what both
    leave (and at least theirs). A call below fresh waits for its slot however long it takes:
    its record is published already, or was a dead letter."""
    return _changed(priority=priority)


def current_priority() -> Priority:
    """The priority of the calls being made for this record (see :func:`call_priority`)."""
    return current_record().priority
