"""``trackflow worker``: run the Faust worker with the enrichment agent."""

from __future__ import annotations

import asyncio
import logging

import click
import faust

from agents.enrich import NoProviders, register_enrich_agent
from providers.errors import ConfigError
from streams.app import create_app, declare_topics
from streams.settings import Settings, load_settings
from streams.topics import KafkaUnavailable, ensure_topics

log = logging.getLogger("trackflow.streams.worker")


def build_worker_app(settings: Settings) -> faust.App:
    """The Faust app with every trackflow agent attached."""
    app = create_app(settings)
    topics = declare_topics(app, settings)
    register_enrich_agent(app, topics, settings, NoProviders())
    return app


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
    app = build_worker_app(settings)
    level = loglevel or settings.worker.log_level
    faust.Worker(app, loglevel=level).execute_from_commandline()
