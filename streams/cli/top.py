"""``trackflow top``: a live terminal view of the workers, read from their ``/metrics``."""

from __future__ import annotations

import time
from collections import deque

import click
import httpx
from rich.console import Console
from rich.live import Live
from rich.text import Text

from trackflow.streams.top import (
    DEFAULT_URL,
    ETA_WINDOW_S,
    Snapshot,
    build_view,
    merge,
    no_worker_message,
    render,
    scrape_all,
)


@click.command()
@click.option("--url", "urls", multiple=True, default=(DEFAULT_URL,), show_default=True,
              help="A worker's /metrics URL (repeat for several workers).")
@click.option("--interval", type=click.FloatRange(min=0.1), default=1.0, show_default=True,
              help="Seconds between refreshes.")
@click.option("--once", is_flag=True, help="Print one frame (two scrapes --interval apart), exit.")
def top(urls: tuple[str, ...], interval: float, once: bool) -> None:
    """Live view of the workers: throughput, latency, lag, providers, cache, DLQ."""
    console = Console()
    with httpx.Client(timeout=min(2.0, max(interval, 0.5))) as client:
        prev: Snapshot | None = None
        if once:
            first, errors = scrape_all(client, urls)
            if not first:
                raise click.ClickException(no_worker_message(urls, errors))
            time.sleep(interval)
            snaps, errors = scrape_all(client, urls)
            if not snaps:
                raise click.ClickException(no_worker_message(urls, errors))
            view = build_view(merge(first), merge(snaps), per_worker=snaps)
            console.print(render(view, urls=urls, answered=len(snaps)))
            return
        # The frames of the last ETA_WINDOW_S: the backlog ETA reads the replays' rate over them.
        history: deque[Snapshot] = deque()
        with Live(console=console, refresh_per_second=4, screen=False) as live:
            try:
                while True:
                    snaps, errors = scrape_all(client, urls)
                    if snaps:
                        cur = merge(snaps)
                        while history and cur.t - history[0].t > ETA_WINDOW_S:
                            history.popleft()
                        window = history[0] if history else None
                        live.update(render(build_view(prev, cur, per_worker=snaps,
                                                      window=window),
                                           urls=urls, answered=len(snaps)))
                        prev = cur if len(snaps) == len(urls) else None
                    else:
                        live.update(Text(no_worker_message(urls, errors), style="yellow"))
                        prev = None
                    if prev is None:
                        history.clear()  # a worker missing: its counters would seem to drop
                    else:
                        history.append(prev)
                    time.sleep(interval)
            except KeyboardInterrupt:
                pass
