"""``trackflow consume``: read tracks.enriched or the dead-letter topics, decoded."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import click
from aiokafka import AIOKafkaConsumer, TopicPartition
from rich.console import Console
from rich.table import Table

from trackflow.providers.errors import ConfigError
from trackflow.schemas.codec import DecodeError, decode, decode_raw_track
from trackflow.streams.deadletter import error_facts
from trackflow.streams.kafka_io import start_consumer
from trackflow.streams.settings import load_settings
from trackflow.streams.topics import KafkaUnavailable, topic_partitions


def _jsonable(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    raise TypeError(type(value).__name__)


def decode_message(msg: Any, *, enriched_topic: str) -> dict[str, Any]:
    """A displayable dict for one message: its decoded value, or error headers and raw value."""
    headers = list(msg.headers or ())
    out: dict[str, Any] = {
        "topic": msg.topic, "partition": msg.partition, "offset": msg.offset,
        "timestamp": msg.timestamp,
        "key": msg.key.decode("utf-8", "replace") if msg.key is not None else None,
    }
    try:
        if msg.topic == enriched_topic:
            out["value"] = decode("EnrichedTrack", msg.value)
        else:
            out["value"] = decode_raw_track(msg.value, headers)
    except DecodeError as exc:
        out["value"] = None
        out["undecodable"] = f"{exc.reason}: {exc}"
        out["raw_value"] = (msg.value or b"")[:200].decode("utf-8", "replace")
    errors = error_facts(headers)
    if errors:
        out["errors"] = dict(errors)
    return out


async def assigned_consumer(bootstrap: str, topic: str, *, from_beginning: bool
                            ) -> AIOKafkaConsumer:
    """A group-less consumer on every partition of ``topic``, at its beginning or its end."""
    consumer = await start_consumer(bootstrap)
    partitions = consumer.partitions_for_topic(topic)
    if not partitions:
        # The metadata fetched at start may predate the topic: ask the broker now.
        try:
            partitions = await topic_partitions(bootstrap, topic)
        except BaseException:
            await consumer.stop()
            raise
    if not partitions:
        await consumer.stop()
        raise click.ClickException(
            f"topic {topic} does not exist: start a worker once (it creates the topics) or "
            "check the name")
    tps = [TopicPartition(topic, p) for p in sorted(partitions)]
    consumer.assign(tps)
    if from_beginning:
        await consumer.seek_to_beginning(*tps)
    else:
        await consumer.seek_to_end(*tps)
    return consumer


async def read_messages(consumer: AIOKafkaConsumer, *, max_messages: int | None,
                        idle_timeout: float | None) -> AsyncIterator[Any]:
    """Messages until ``max_messages``, or until nothing arrived for ``idle_timeout`` seconds."""
    seen = 0
    last = time.monotonic()
    while max_messages is None or seen < max_messages:
        batch = await consumer.getmany(timeout_ms=500, max_records=500)
        if not batch:
            if idle_timeout is not None and time.monotonic() - last > idle_timeout:
                return
            continue
        last = time.monotonic()
        for records in batch.values():
            for msg in records:
                yield msg
                seen += 1
                if max_messages is not None and seen >= max_messages:
                    return


def _row(item: dict[str, Any]) -> list[str]:
    value = item.get("value") or {}
    errors = item.get("errors", {})
    reason = errors.get("trackflow.errors.reason", "")
    stage = errors.get("__connect.errors.stage", "")
    status = value.get("status", "") if "status" in value else ""
    return [
        f"{item['partition']}/{item['offset']}",
        str(item.get("key") or ""),
        str(value.get("artist", "") or "")[:30],
        str(value.get("title", "") or "")[:40],
        status or (f"{stage}: {reason}" if errors else item.get("undecodable", "")),
    ]


@click.command()
@click.option("--topic", default=None, help="tracks.enriched (default), tracks.dlq, ...")
@click.option("--from-beginning", is_flag=True, help="Start at the oldest record.")
@click.option("--follow", is_flag=True, help="Keep waiting for new records.")
@click.option("--max", "max_messages", type=int, default=None, help="Stop after N records.")
@click.option("--timeout", type=float, default=5.0, show_default=True,
              help="Stop after this many seconds without a record (ignored with --follow).")
@click.option("--format", "fmt", type=click.Choice(["table", "jsonl"]), default="table",
              show_default=True)
@click.option("--config", "config_path", type=click.Path(dir_okay=False), envvar="TRACKFLOW_CONFIG")
def consume(topic: str | None, from_beginning: bool, follow: bool, max_messages: int | None,
            timeout: float, fmt: str, config_path: str | None) -> None:
    """Print records of a trackflow topic, decoded, with dead-letter headers."""
    try:
        settings = load_settings(config_path)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    name = topic or settings.kafka.enriched_topic
    console = Console()

    async def run() -> int:
        consumer = await assigned_consumer(settings.kafka.bootstrap_servers, name,
                                           from_beginning=from_beginning)
        rows = 0
        table = Table("p/offset", "key", "artist", "title", "status / error")
        try:
            async for msg in read_messages(consumer, max_messages=max_messages,
                                           idle_timeout=None if follow else timeout):
                item = decode_message(msg, enriched_topic=settings.kafka.enriched_topic)
                rows += 1
                if fmt == "jsonl":
                    click.echo(json.dumps(item, default=_jsonable, ensure_ascii=False))
                elif follow:
                    console.print(" | ".join(_row(item)))
                else:
                    table.add_row(*_row(item))
        finally:
            await consumer.stop()
        if fmt == "table" and not follow:
            console.print(table)
        return rows

    try:
        rows = asyncio.run(run())
    except KafkaUnavailable as exc:
        raise click.ClickException(str(exc)) from None
    except KeyboardInterrupt:
        return
    click.echo(f"{rows} records from {name}", err=True)
