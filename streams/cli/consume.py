"""``trackflow consume``: read tracks.enriched or the dead-letter topics, decoded."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from trackflow.providers.errors import ConfigError
from trackflow.streams.client.consumer import TrackConsumer
from trackflow.streams.consume import decode_message, jsonable
from trackflow.streams.settings import load_settings
from trackflow.streams.topics import KafkaToolError


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
@click.option("--group", "group_id", default=None,
              help="Read as a member of this consumer group, committing what was printed.")
@click.option("--latest-only", is_flag=True,
              help="One line per track: the latest version of the records already there.")
@click.option("--follow", is_flag=True, help="Keep waiting for new records.")
@click.option("--max", "max_messages", type=int, default=None, help="Stop after N records.")
@click.option("--timeout", type=float, default=5.0, show_default=True,
              help="Stop after this many seconds without a record (ignored with --follow).")
@click.option("--format", "fmt", type=click.Choice(["table", "jsonl"]), default="table",
              show_default=True)
@click.option("--config", "config_path", type=click.Path(dir_okay=False), envvar="TRACKFLOW_CONFIG")
def consume(topic: str | None, from_beginning: bool, group_id: str | None, latest_only: bool,
            follow: bool, max_messages: int | None, timeout: float, fmt: str,
            config_path: str | None) -> None:
    """Print records of a trackflow topic, decoded, with dead-letter headers."""
    try:
        settings = load_settings(config_path)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    name = topic or settings.kafka.enriched_topic
    console = Console()

    async def run() -> int:
        rows = 0
        table = Table("p/offset", "key", "artist", "title", "status / error")
        async with TrackConsumer(settings.kafka, topic=name, group_id=group_id,
                                 from_beginning=from_beginning, latest_only=latest_only,
                                 max_records=max_messages,
                                 idle_timeout_s=None if follow else timeout) as consumer:
            async for msg in consumer.messages():
                item = decode_message(msg, enriched_topic=settings.kafka.enriched_topic,
                                      writers=consumer.writers)
                rows += 1
                if fmt == "jsonl":
                    click.echo(json.dumps(item, default=jsonable, ensure_ascii=False))
                elif follow:
                    console.print(" | ".join(_row(item)))
                else:
                    table.add_row(*_row(item))
        if fmt == "table" and not follow:
            console.print(table)
        return rows

    try:
        rows = asyncio.run(run())
    except (KafkaToolError, ConfigError) as exc:
        raise click.ClickException(str(exc)) from None
    except KeyboardInterrupt:
        return
    click.echo(f"{rows} records from {name}", err=True)
