"""``trackflow worker``: run the Faust worker with the enrichment agent and its providers."""

from __future__ import annotations

import asyncio

import click

from trackflow.providers.errors import ConfigError
from trackflow.streams.schema_registry import register_schemas
from trackflow.streams.settings import load_settings
from trackflow.streams.topics import KafkaUnavailable, ensure_topics
from trackflow.streams.worker import TrackflowApp


@click.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False),
              envvar="TRACKFLOW_CONFIG", help="TOML settings file.")
@click.option("--web-port", type=int, default=None,
              help="Port of the worker's web server (/metrics). Overrides the settings.")
@click.option("--loglevel", "-l", default=None, help="debug, info, warning or error.")
def worker(config_path: str | None, web_port: int | None, loglevel: str | None) -> None:
    """Run an enrichment worker (creates the topics if missing)."""
    try:
        settings = load_settings(config_path)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    if web_port is not None:
        settings = settings.model_copy(
            update={"worker": settings.worker.model_copy(update={"web_port": web_port})})
    try:
        created = asyncio.run(ensure_topics(settings.kafka))
    except (KafkaUnavailable, ConfigError) as exc:
        raise click.ClickException(str(exc)) from None
    if created:
        click.echo(f"created topics: {', '.join(created)}", err=True)
    try:
        # The schema registry's ids of what the worker writes (single-object Avro without one).
        wire = asyncio.run(register_schemas(settings.kafka))
        if wire.confluent:
            click.echo("schemas registered: writing the Confluent wire format", err=True)
        app = TrackflowApp(settings, wire=wire)
        app.run(loglevel)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
