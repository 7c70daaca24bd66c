"""``trackflow worker``: run the Faust worker with the enrichment agent and its providers."""

from __future__ import annotations

import asyncio

import click

from trackflow.providers.errors import ConfigError
from trackflow.streams.faust_worker import TrackflowWorker
from trackflow.streams.kafka_logs import OutageLogFilter
from trackflow.streams.settings import load_settings
from trackflow.streams.topics import KafkaUnavailable, ensure_topics
from trackflow.streams.worker import build_worker_app, lock_data_dir


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
        # Held until the process exits: one worker per data directory (RocksDB's rule).
        data_dir_lock = (lock_data_dir(settings.worker.data_dir)
                         if settings.tables.store == "rocksdb" else None)
        app = build_worker_app(settings)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    level = loglevel or settings.worker.log_level
    log_filter = OutageLogFilter(settings.worker.kafka_log_interval_s)

    @app.timer(min(10.0, settings.worker.kafka_log_interval_s))  # type: ignore[untyped-decorator]
    async def summarise_kafka_logs() -> None:
        log_filter.flush()

    try:
        TrackflowWorker(app, loglevel=level, log_filter=log_filter,
                        stop_grace_s=settings.worker.stop_grace_s).execute_from_commandline()
    finally:
        if data_dir_lock is not None:
            data_dir_lock.close()
