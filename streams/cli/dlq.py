"""``trackflow dlq``: count, inspect, filter and replay dead letters (the command line only).

The filters, counts and replay headers are in ``streams/dlq_letters.py``; reading topics,
replaying and the replay ledger are in ``streams/dlq_replay.py``; the ledger topic is created by
``streams/topics.py``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import getpass
import json
import socket
import time
from collections.abc import Callable, Iterable
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from trackflow.agents.deadletter import (
    ERROR_PREFIXES,
    H_ATTEMPT,
    H_CLASS,
    H_MESSAGE,
    H_REASON,
    H_RETRYABLE,
    H_STAGE,
)
from trackflow.providers.errors import ConfigError
from trackflow.streams.consume import jsonable
from trackflow.streams.dlq_letters import (
    DeadLetter,
    LetterFilter,
    age_bucket,
    matches,
    ordered,
    parse_since,
    split_replayed,
)
from trackflow.streams.dlq_replay import (
    count_topic,
    find_letters,
    prepare_replay,
    publish_replays,
    read_ledger,
    read_topic,
)
from trackflow.streams.settings import Settings, load_settings
from trackflow.streams.topics import KafkaToolError, replay_ledger_topic

SKIPPED_SHOWN = 10


def _settings(config_path: str | None) -> Settings:
    try:
        return load_settings(config_path)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


def _run(coro: Any) -> Any:
    try:
        return asyncio.run(coro)
    except (KafkaToolError, ConfigError) as exc:
        raise click.ClickException(str(exc)) from None


def _now_ms() -> int:
    return int(time.time() * 1000)


def _when(ms: int | None) -> str:
    if ms is None:
        return ""
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def _no_match(flt: LetterFilter, topic: str, read: int) -> None:
    click.echo(f"no dead letters match {flt.summary()} in {topic} ({read} records read)",
               err=True)


topic_option = click.option(
    "--topic", default=None, help="Dead-letter topic to read (default: tracks.dlq; or "
    "tracks.dlq.parked).")
config_option = click.option("--config", "config_path", type=click.Path(dir_okay=False),
                             envvar="TRACKFLOW_CONFIG")


def filter_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """The filter options of ``show`` and ``replay``, handed to ``func`` as ``flt``."""

    @functools.wraps(func)
    def wrapper(*args: Any, provider: tuple[str, ...], error_class: tuple[str, ...],
                stage: tuple[str, ...], reason: tuple[str, ...], retryable: bool | None,
                since: str | None, track_id: tuple[str, ...], **kwargs: Any) -> Any:
        since_ms = None
        if since is not None:
            try:
                since_ms = parse_since(since, now_ms=_now_ms())
            except ValueError as exc:
                raise click.BadParameter(str(exc), param_hint="--since") from None
        flt = LetterFilter(provider, error_class, stage, reason, retryable, since_ms, since,
                           track_id)
        return func(*args, flt=flt, **kwargs)

    options = [
        click.option("--provider", multiple=True, help="Failed provider (repeatable)."),
        click.option("--error-class", multiple=True, help="Error class, e.g. InvalidRecord."),
        click.option("--stage", multiple=True,
                     help="decode, validate, publish, provider (any) or provider:<name>."),
        click.option("--reason", multiple=True, help="Reason code, e.g. invalid_isrc."),
        click.option("--retryable/--not-retryable", default=None,
                     help="Only retryable, or only not retryable, dead letters."),
        click.option("--since", default=None,
                     help="Last failure at or after T: 15m, 2h, 1d, or an ISO time (UTC)."),
        click.option("--track-id", multiple=True, help="Record key or decoded track_id."),
    ]
    for option in reversed(options):
        wrapper = option(wrapper)
    return wrapper


@click.group()
def dlq() -> None:
    """Count, inspect, filter and replay dead letters."""


@dlq.command()
@topic_option
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table",
              show_default=True)
@config_option
def stats(topic: str | None, fmt: str, config_path: str | None) -> None:
    """Count dead letters by stage, provider, error class, reason, retryable and age."""
    settings = _settings(config_path)
    name = topic or settings.kafka.dlq_topic
    total, counts = _run(count_topic(settings.kafka, name, now_ms=_now_ms()))
    if fmt == "json":
        click.echo(json.dumps({"topic": name, "total": total,
                               **{k: dict(ordered(k, v)) for k, v in counts.items()}}))
        return
    console = Console()
    console.print(f"[bold]{total}[/bold] dead letters in {name}")
    if not total:
        return
    for dim, counter in counts.items():
        table = Table(dim, "count", "share", title=f"by {dim}", title_justify="left")
        for label, n in ordered(dim, counter):
            table.add_row(label, str(n), f"{100 * n / total:.0f}%")
        console.print(table)


SHOW_COLUMNS = ("p/offset", "key", "stage", "error", "retry", "attempt", "last failure (UTC)",
                "track / message")


def _show_table(letters: Iterable[DeadLetter], *, now_ms: int, title: str | None = None) -> Table:
    table = Table(title=title, title_justify="left")
    for name in SHOW_COLUMNS:
        table.add_column(name, overflow="fold")
    for letter in letters:
        facts = letter.facts
        value = (letter.decoded or {}).get("value") or {}
        track = f"{value.get('artist', '')} - {value.get('title', '')}" if value else ""
        last = letter.last_failure_ms
        table.add_row(
            f"{letter.partition}/{letter.offset}",
            (letter.key or b"").decode("utf-8", "replace"),
            facts.get(H_STAGE, ""),
            f"{facts.get(H_CLASS, '')}\n{facts.get(H_REASON, '')}",
            facts.get(H_RETRYABLE, ""),
            facts.get(H_ATTEMPT, ""),
            f"{_when(last)} ({age_bucket(last, now_ms=now_ms)})",
            "\n".join(t for t in (track[:60], facts.get(H_MESSAGE, "")[:120]) if t),
        )
    return table


@dlq.command()
@topic_option
@filter_options
@click.option("--limit", type=int, default=100, show_default=True,
              help="Print at most N dead letters (0: all).")
@click.option("--format", "fmt", type=click.Choice(["table", "jsonl"]), default="table",
              show_default=True)
@config_option
def show(topic: str | None, flt: LetterFilter, limit: int, fmt: str,
         config_path: str | None) -> None:
    """Print dead letters with their headers, decoded where decodable."""
    settings = _settings(config_path)
    name = topic or settings.kafka.dlq_topic
    shown, found, read = _run(find_letters(settings.kafka, name, flt, limit=limit,
                                           enriched_topic=settings.kafka.enriched_topic))
    if not found:
        _no_match(flt, name, read)
        return
    now_ms = _now_ms()
    if fmt == "jsonl":
        for letter in shown:
            item = dict(letter.decoded or {})
            item["headers"] = {k: v.decode("utf-8", "replace") for k, v in letter.headers
                               if not k.startswith(ERROR_PREFIXES)}
            click.echo(json.dumps(item, default=jsonable, ensure_ascii=False))
    else:
        Console().print(_show_table(shown, now_ms=now_ms))
    click.echo(f"{len(shown)} of {found} matching dead letters ({read} in {name})", err=True)


@dlq.command()
@topic_option
@filter_options
@click.option("--dry-run", is_flag=True, help="List what would be replayed; publish nothing.")
@click.option("--force", is_flag=True, help="Replay again what the ledger says was replayed.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@config_option
def replay(topic: str | None, flt: LetterFilter, dry_run: bool, force: bool, yes: bool,
           config_path: str | None) -> None:
    """Republish dead letters to the raw topic with attempts reset to 1.

    The original value, key and non-error headers are sent; a ledger topic remembers what was
    replayed, so running it twice does not republish (unless --force).
    """
    settings = _settings(config_path)
    kafka = settings.kafka
    name = topic or kafka.dlq_topic
    ledger_topic = replay_ledger_topic(kafka)
    letters = _run(read_topic(kafka, name,
                              enriched_topic=kafka.enriched_topic))
    found = [d for d in letters if matches(d, flt)]
    if not found:
        _no_match(flt, name, len(letters))
        return
    ledger = _run(read_ledger(kafka, ledger_topic))
    todo, done = split_replayed(found, ledger, force=force)
    for letter in done[:SKIPPED_SHOWN]:
        entry = ledger[letter.ref]
        click.echo(f"already replayed {letter.ref} at {entry.get('replayed_at', '?')} by "
                   f"{entry.get('by', '?')}; skipped (--force replays it again)", err=True)
    if len(done) > SKIPPED_SHOWN:
        click.echo(f"... and {len(done) - SKIPPED_SHOWN} more already replayed", err=True)
    if dry_run:
        if todo:
            Console().print(_show_table(todo, now_ms=_now_ms(),
                                        title=f"would replay to {kafka.raw_topic}"))
        click.echo(f"dry run: matched {len(found)}, would replay {len(todo)}, would skip "
                   f"{len(done)} already replayed; nothing published")
        return
    replayed = 0
    if todo:
        if not yes:
            click.confirm(f"Replay {len(todo)} dead letters from {name} to {kafka.raw_topic}?",
                          abort=True, err=True)
        _run(prepare_replay(settings))
        by = f"{getpass.getuser()}@{socket.gethostname()}"
        with Progress(TextColumn("replaying"), BarColumn(), MofNCompleteColumn(),
                      console=Console(stderr=True), transient=True) as progress:
            task = progress.add_task("replay", total=len(todo))
            replayed = _run(publish_replays(settings, todo, ledger_topic, by=by,
                                            on_sent=lambda: progress.advance(task)))
    click.echo(f"matched {len(found)}, replayed {replayed} to {kafka.raw_topic}, skipped "
               f"{len(done)} already replayed")
