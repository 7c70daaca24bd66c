"""Read trackflow topics and decode their records (used by ``trackflow consume`` and ``dlq``)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer

from trackflow.agents.deadletter import error_facts
from trackflow.schemas.codec import DecodeError, decode, decode_raw_track
from trackflow.schemas.registry import SchemaVersion
from trackflow.streams.client import consumer as client_consumer
from trackflow.streams.kafka_io import Kafka


def jsonable(value: Any) -> Any:
    """``json.dumps(default=...)`` for what decoded records hold: datetimes and bytes."""
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    raise TypeError(type(value).__name__)


def decode_message(msg: Any, *, enriched_topic: str,
                   writers: Mapping[int, SchemaVersion | None] | None = None) -> dict[str, Any]:
    """A displayable dict for one message: its decoded value, or error headers and raw value
    (``writers``: the schema registry's ids looked up, for Confluent-framed values)."""
    headers = list(msg.headers or ())
    out: dict[str, Any] = {
        "topic": msg.topic, "partition": msg.partition, "offset": msg.offset,
        "timestamp": msg.timestamp,
        "key": msg.key.decode("utf-8", "replace") if msg.key is not None else None,
    }
    try:
        if msg.topic == enriched_topic:
            out["value"] = decode("EnrichedTrack", msg.value, writers=writers)
        else:
            out["value"] = decode_raw_track(msg.value, headers, writers=writers)
    except DecodeError as exc:
        out["value"] = None
        out["undecodable"] = f"{exc.reason}: {exc}"
        out["raw_value"] = (msg.value or b"")[:200].decode("utf-8", "replace")
    errors = error_facts(headers)
    if errors:
        out["errors"] = dict(errors)
    return out


async def assigned_consumer(kafka: Kafka, topic: str, *, from_beginning: bool
                            ) -> AIOKafkaConsumer:
    """A group-less consumer on every partition of ``topic``, at its beginning or its end;
    TopicMissing when it does not exist (the client API's, shared with the dlq tools)."""
    return await client_consumer.assigned_consumer(kafka, topic, from_beginning=from_beginning)
