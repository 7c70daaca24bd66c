"""Which input partition the current record came from (set by the worker for each record).

Rate-limit slots and breaker state are kept per partition; provider calls are made deep inside
client code that knows nothing of Kafka, so the partition travels in a context variable. Each
record is processed in its own asyncio task, which copies the context when it is created.
"""

from __future__ import annotations

from contextvars import ContextVar

current_partition: ContextVar[int] = ContextVar("trackflow_current_partition", default=0)
