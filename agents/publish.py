"""Publishing one record, and telling a record Kafka refuses from a Kafka that is gone.

The agents publish through :data:`Send`. When Kafka refuses a record for what it is
(too large, malformed for the producer), retrying it can never succeed, and stopping the worker
would only stop it again on the same record after every restart. Such a record is skipped:
counted in ``trackflow_records_skipped_total``, alerted on, and logged once with its topic,
partition and offset. Every other failure (the broker is unreachable, a timeout) is not about the
record and still stops the worker, so that nothing is acked that was not published.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka.errors import (
    CorruptRecordException,
    KafkaError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    RecordTooLargeError,
)

from trackflow.agents import metrics

log = logging.getLogger("trackflow.agents.publish")

Headers = list[tuple[str, bytes]]
Send = Callable[[str, bytes | None, bytes | None, Headers], Awaitable[Awaitable[Any]]]
"""``await send(topic, key, value, headers)`` queues a record and returns the future of its
acknowledgement by the broker."""

_REFUSED = (MessageSizeTooLargeError, RecordTooLargeError, RecordListTooLargeError,
            CorruptRecordException)


def is_record_error(exc: BaseException) -> bool:
    """True when Kafka (or the producer) refused this record itself, not a Kafka that is gone.

    The producer checks a record before it queues it and raises ``ValueError``, ``TypeError`` or
    ``AssertionError`` (aiokafka asserts a key or a value); the broker answers a record it
    will not store with a size or corruption error.
    """
    if isinstance(exc, _REFUSED):
        return True
    return isinstance(exc, ValueError | TypeError | AssertionError) and not isinstance(
        exc, KafkaError)


async def publish(send: Send, topic: str, key: bytes | None, value: bytes | None,
                  headers: Headers) -> None:
    """Send one record and wait for the broker's acknowledgement."""
    await (await send(topic, key, value, headers))


def record_skipped(msg: Any, destination: str, exc: BaseException) -> None:
    """Count and log, once, a record that cannot be published anywhere."""
    metrics.RECORDS_SKIPPED.labels(topic=msg.topic, destination=destination).inc()
    log.error("event=record_skipped topic=%s partition=%s offset=%s destination=%s error=%s "
              "detail=%r", msg.topic, msg.partition, msg.offset, destination,
              type(exc).__name__, str(exc)[:200])
