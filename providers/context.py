"""The record being worked on: which input partition it came from, what it read from the cache.

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
from contextlib import contextmanager
from contextvars import ContextVar, Token
from dataclasses import dataclass, field


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


@dataclass(frozen=True, slots=True)
class RecordContext:
    """The record a task is working on."""

    partition: int
    """The input partition the record was read from."""
    answers: AnswersUsed = field(default_factory=AnswersUsed)
    """What its waterfall has read through the cache so far."""


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


_deadline: ContextVar[float | None] = ContextVar("trackflow_call_deadline", default=None)


@contextmanager
def call_deadline(deadline: float | None) -> Iterator[None]:
    """Calls made inside wait for their rate-limit slot until ``deadline`` (wall clock) at most,
    then give up with ``RateLimitWait``; ``None`` (the default outside this block) waits as long
    as the slot takes: waiting for budget is backpressure, not a failure. The waterfall sets a
    deadline only for stages whose fields are optional, so that those can be deferred."""
    token = _deadline.set(deadline)
    try:
        yield
    finally:
        _deadline.reset(token)


def current_deadline() -> float | None:
    """The deadline of the calls being made (see :func:`call_deadline`)."""
    return _deadline.get()


_background: ContextVar[bool] = ContextVar("trackflow_background_calls", default=False)


@contextmanager
def background_calls() -> Iterator[None]:
    """Calls made inside take only budget that other calls leave unused: the global limiter
    grants them a slot only while its queue is at most one slot long (see ``providers.gate``).
    The refresh path runs its stages so: fresh records first, refreshes in what is left."""
    token = _background.set(True)
    try:
        yield
    finally:
        _background.reset(token)


def in_background() -> bool:
    """Whether the calls being made are background calls (see :func:`background_calls`)."""
    return _background.get()
