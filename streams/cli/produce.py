"""``trackflow produce FILE``: publish tracks from CSV, JSONL or ``Artist - Title`` lines."""

from __future__ import annotations

import asyncio
from pathlib import Path

import click
from rich.console import Console

from trackflow.providers.errors import ConfigError
from trackflow.streams.produce import produce_file
from trackflow.streams.settings import load_settings
from trackflow.streams.topics import KafkaUnavailable, ensure_topics


@click.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--topic", default=None, help="Target topic (default: the raw topic).")
@click.option("--format", "fmt", type=click.Choice(["avro", "json"]), default="avro",
              show_default=True, help="Wire format of the produced values.")
@click.option("--source", default=None, help="Value of the records' source field.")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), envvar="TRACKFLOW_CONFIG")
def produce(file: Path, topic: str | None, fmt: str, source: str | None,
            config_path: str | None) -> None:
    """Publish tracks from FILE (CSV, JSONL, or one 'Artist - Title' per line) to tracks.raw."""
    console = Console(stderr=True)
    try:
        settings = load_settings(config_path)
        asyncio.run(ensure_topics(settings.kafka))
        sent, reasons, examples = asyncio.run(produce_file(
            file, kafka=settings.kafka,
            topic=topic or settings.kafka.raw_topic, fmt=fmt,
            source=source or file.stem, console=console))
    except (ConfigError, KafkaUnavailable) as exc:
        raise click.ClickException(str(exc)) from None
    rejected = sum(reasons.values())
    target = topic or settings.kafka.raw_topic
    click.echo(f"sent {sent} records to {target}, rejected {rejected} rows")
    for reason, count in reasons.most_common():
        click.echo(f"  rejected {count}: {reason}")
    for example in examples:
        click.echo(f"  e.g. {example}", err=True)
