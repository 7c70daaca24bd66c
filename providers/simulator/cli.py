"""``trackflow simulate``: run the provider simulator in the foreground.

The first lines on stdout are ``export TRACKFLOW_...=...`` lines (flushed at once), so a shell can
``eval`` them or a test can read them; logs go to stderr.
"""

from __future__ import annotations

import asyncio
import json
import logging
import shlex
import signal
import sys
from pathlib import Path

import click

from trackflow.providers.simulator.config import SimConfig
from trackflow.providers.simulator.csvload import load_csv
from trackflow.providers.simulator.generate import generate_catalog
from trackflow.providers.simulator.server import start_simulator

log = logging.getLogger("trackflow.simulator")


async def _serve(
    catalog_path: str | None, size: int, seed: int, host: str, port: int, config: SimConfig,
) -> None:
    catalog = load_csv(Path(catalog_path)) if catalog_path else generate_catalog(size, seed=seed)
    sim = await start_simulator(catalog=catalog, config=config, host=host, port=port)
    for name, value in sim.env.items():
        sys.stdout.write(f"export {name}={shlex.quote(value)}\n")
    sys.stdout.flush()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    log.info("event=simulator_ready url=%s tracks=%d", sim.url, len(catalog))
    try:
        await stop.wait()
    finally:
        log.info("event=simulator_stopping report=%s", json.dumps(await sim.report()))
        await sim.stop()


@click.command("simulate")
@click.option(
    "--catalog",
    "catalog_path",
    type=click.Path(exists=True, dir_okay=False),
    help="Catalog CSV (native, top_hits_2000_2019 or most_streamed_2024 format).",
)
@click.option(
    "--size",
    type=click.IntRange(min=1),
    default=1000,
    show_default=True,
    help="Tracks in the generated catalog (without --catalog).",
)
@click.option(
    "--seed", type=int, default=0, show_default=True, help="Seed of the generated catalog."
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=0,
    show_default=True,
    help="Port to listen on; 0 picks a free one.",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--config",
    "config_path",
    type=click.Path(exists=True, dir_okay=False),
    help="Behaviour TOML (latency, faults, outages, rate limits).",
)
@click.option(
    "--quirks/--no-quirks",
    default=True,
    show_default=True,
    help="Answer with the real APIs' quirks (Deezer duets, Discogs markers, ...); "
    "--no-quirks overrides the TOML.",
)
def simulate(
    catalog_path: str | None, size: int, seed: int, port: int, host: str, config_path: str | None,
    quirks: bool,
) -> None:
    """Serve simulated MusicBrainz, Spotify, Deezer, Last.fm and Discogs APIs on one port."""
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.INFO,
        format="%(asctime)s level=%(levelname)s logger=%(name)s %(message)s",
    )
    try:
        config = SimConfig.from_toml(config_path) if config_path else SimConfig()
    except ValueError as exc:
        raise click.ClickException(f"--config {config_path}: {exc}") from None
    if not quirks:
        config = config.model_copy(update={"quirks": False})
    asyncio.run(_serve(catalog_path, size, seed, host, port, config))
