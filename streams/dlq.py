"""``trackflow dlq``: count, inspect, filter and replay dead letters.

The filtering, counting and header rewriting are plain functions at the top (unit-tested without
Kafka); reading a topic to its end, the replay ledger and publishing are at the bottom.

Replays are recorded in a small compacted ledger topic (``<dlq topic>.replays``, so
``tracks.dlq.replays`` by default) keyed by ``<topic>/<partition>/<offset>`` of the dead letter, so
running the same replay twice does not republish what was already replayed.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import getpass
import json
import re
import socket
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import click
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from trackflow.providers.errors import ConfigError
from trackflow.streams.consume import _jsonable, assigned_consumer, decode_message
from trackflow.streams.deadletter import (
    ERROR_PREFIXES,
    H_ATTEMPT,
    H_CLASS,
    H_LAST_FAILURE,
    H_MESSAGE,
    H_PROVIDER,
    H_RAW_ATTEMPT,
    H_REASON,
    H_RETRYABLE,
    H_STAGE,
    error_facts,
)
from trackflow.streams.kafka_io import start_consumer, start_producer
from trackflow.streams.settings import Settings, load_settings
from trackflow.streams.topics import KafkaUnavailable, admin_client

#: Carried on tracks.raw by ``dlq replay``: the dead letter it came from.
H_REPLAY_OF = "trackflow.replay.of"
LEDGER_SUFFIX = ".replays"
SKIPPED_SHOWN = 10

AGE_BUCKETS: tuple[tuple[str, int], ...] = (
    ("<1 m", 60_000), ("<10 m", 600_000), ("<1 h", 3_600_000), ("<1 d", 86_400_000),
)
OLDER = "older"
UNKNOWN = "unknown"
_UNITS_MS = {"s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
_RELATIVE = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$", re.IGNORECASE)


# --- pure pieces -------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One record of a dead-letter topic, its original bytes and its error facts."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]
    decoded: Mapping[str, Any] | None = None
    """What ``decode_message`` made of it, when it was decoded."""
    facts: Mapping[str, str] = field(init=False)
    """The error headers as text."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "facts", dict(error_facts(self.headers)))

    @property
    def ref(self) -> str:
        """``<topic>/<partition>/<offset>``: the ledger key and ``trackflow.replay.of`` value."""
        return f"{self.topic}/{self.partition}/{self.offset}"

    @property
    def retryable(self) -> bool | None:
        """The retryable header as a bool, None when missing."""
        value = self.facts.get(H_RETRYABLE)
        return None if value is None else value.strip().lower() == "true"

    @property
    def last_failure_ms(self) -> int | None:
        """Epoch ms of the last failure, None when missing or unreadable."""
        try:
            return int(self.facts[H_LAST_FAILURE])
        except (KeyError, ValueError):
            return None

    @property
    def track_ids(self) -> set[str]:
        """The key and, when decodable, the value's track_id."""
        ids = set()
        if self.key is not None:
            ids.add(self.key.decode("utf-8", "replace"))
        value = (self.decoded or {}).get("value") or {}
        if value.get("track_id"):
            ids.add(str(value["track_id"]))
        return ids


@dataclass(frozen=True, slots=True)
class LetterFilter:
    """What an operator asked for; empty fields match everything. Values of one field are ORed."""

    providers: tuple[str, ...] = ()
    error_classes: tuple[str, ...] = ()
    stages: tuple[str, ...] = ()
    """``provider`` matches every ``provider:<name>`` stage."""
    reasons: tuple[str, ...] = ()
    retryable: bool | None = None
    since_ms: int | None = None
    """Last failure at or after this epoch ms."""
    since_text: str | None = None
    """The ``--since`` value as typed, for the summary."""
    track_ids: tuple[str, ...] = ()

    def summary(self) -> str:
        """A one-line description, e.g. ``provider=spotify retryable=true``."""
        parts = [f"{name}={','.join(values)}" for name, values in (
            ("provider", self.providers), ("error-class", self.error_classes),
            ("stage", self.stages), ("reason", self.reasons), ("track-id", self.track_ids))
            if values]
        if self.retryable is not None:
            parts.append(f"retryable={str(self.retryable).lower()}")
        if self.since_ms is not None:
            parts.append(f"since={self.since_text or self.since_ms}")
        return " ".join(parts) or "(no filter)"


def _one_of(value: str | None, wanted: Sequence[str]) -> bool:
    return value is not None and value.lower() in {w.lower() for w in wanted}


def matches(letter: DeadLetter, flt: LetterFilter) -> bool:
    """Whether ``letter`` passes every part of ``flt``."""
    facts = letter.facts
    if flt.providers and not _one_of(facts.get(H_PROVIDER), flt.providers):
        return False
    if flt.error_classes and not _one_of(facts.get(H_CLASS), flt.error_classes):
        return False
    if flt.reasons and not _one_of(facts.get(H_REASON), flt.reasons):
        return False
    if flt.stages:
        stage = (facts.get(H_STAGE) or "").lower()
        if not any(stage == s.lower() or stage.startswith(s.lower() + ":") for s in flt.stages):
            return False
    if flt.retryable is not None and letter.retryable is not flt.retryable:
        return False
    if flt.since_ms is not None:
        last = letter.last_failure_ms
        if last is None or last < flt.since_ms:
            return False
    return not flt.track_ids or bool(letter.track_ids & set(flt.track_ids))


def parse_since(text: str, *, now_ms: int) -> int:
    """Epoch ms for ``15m``/``2h``/``1d``/``30s``/``1w`` ago, or an ISO time (UTC if no zone)."""
    rel = _RELATIVE.match(text)
    if rel:
        return now_ms - int(rel.group(1)) * _UNITS_MS[rel.group(2).lower()]
    try:
        when = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"{text!r} is neither a relative time (15m, 2h, 1d) nor an ISO time "
            "(2024-05-01T12:00:00Z)") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return int(when.timestamp() * 1000)


def age_bucket(last_failure_ms: int | None, *, now_ms: int) -> str:
    """``<1 m``, ``<10 m``, ``<1 h``, ``<1 d``, ``older``, or ``unknown`` without a time."""
    if last_failure_ms is None:
        return UNKNOWN
    age = now_ms - last_failure_ms
    for label, limit in AGE_BUCKETS:
        if age < limit:
            return label
    return OLDER


#: Stats dimension -> how to read it from a dead letter.
DIMENSIONS: dict[str, Callable[[DeadLetter], str]] = {
    "stage": lambda d: d.facts.get(H_STAGE) or UNKNOWN,
    "provider": lambda d: d.facts.get(H_PROVIDER) or "(none)",
    "error class": lambda d: d.facts.get(H_CLASS) or UNKNOWN,
    "reason": lambda d: d.facts.get(H_REASON) or UNKNOWN,
    "retryable": lambda d: UNKNOWN if d.retryable is None else str(d.retryable).lower(),
}


def tally(letters: Iterable[DeadLetter], *, now_ms: int) -> dict[str, Counter[str]]:
    """Counts per stage, provider, error class, reason, retryable and age bucket."""
    counts: dict[str, Counter[str]] = {name: Counter() for name in [*DIMENSIONS, "age"]}
    for letter in letters:
        for name, read in DIMENSIONS.items():
            counts[name][read(letter)] += 1
        counts["age"][age_bucket(letter.last_failure_ms, now_ms=now_ms)] += 1
    return counts


def ordered(name: str, counter: Counter[str]) -> list[tuple[str, int]]:
    """Ages from young to old, everything else by count, most first."""
    if name == "age":
        labels = [label for label, _ in AGE_BUCKETS] + [OLDER, UNKNOWN]
        return [(label, counter[label]) for label in labels if counter[label]]
    return sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))


def replay_headers(headers: Iterable[tuple[str, bytes]], ref: str) -> list[tuple[str, bytes]]:
    """The original headers without error, attempt or replay headers, plus attempt 1 and ref."""
    dropped = (H_RAW_ATTEMPT, H_REPLAY_OF)
    kept = [(k, bytes(v)) for k, v in headers
            if not k.startswith(ERROR_PREFIXES) and k not in dropped]
    return [*kept, (H_RAW_ATTEMPT, b"1"), (H_REPLAY_OF, ref.encode())]


def ledger_value(*, now: dt.datetime, by: str) -> bytes:
    """The ledger record of one replay."""
    return json.dumps({"replayed_at": now.isoformat(timespec="seconds"), "by": by}).encode()


def split_replayed(letters: Iterable[DeadLetter], ledger: Mapping[str, Mapping[str, Any]],
                   *, force: bool) -> tuple[list[DeadLetter], list[DeadLetter]]:
    """(to replay, already replayed and skipped); ``force`` skips nothing."""
    todo: list[DeadLetter] = []
    done: list[DeadLetter] = []
    for letter in letters:
        (done if letter.ref in ledger and not force else todo).append(letter)
    return todo, done


# --- Kafka edges -------------------------------------------------------------------------------

def letter_of(msg: Any, *, enriched_topic: str | None = None) -> DeadLetter:
    """A DeadLetter from a consumer record; decoded (via decode_message) when a topic is given."""
    decoded = decode_message(msg, enriched_topic=enriched_topic) if enriched_topic else None
    return DeadLetter(msg.topic, msg.partition, msg.offset, msg.key, msg.value,
                      tuple((k, bytes(v)) for k, v in (msg.headers or ()) if v is not None),
                      decoded)


async def read_to_end(consumer: AIOKafkaConsumer) -> AsyncIterator[Any]:
    """Every record of the assigned partitions up to their end offsets as of now, then stop."""
    tps = sorted(consumer.assignment())
    ends = await consumer.end_offsets(tps)
    remaining = {tp for tp in tps if await consumer.position(tp) < ends[tp]}
    while remaining:
        batch = await consumer.getmany(*remaining, timeout_ms=500, max_records=500)
        for tp, records in batch.items():
            for msg in records:
                if msg.offset < ends[tp]:
                    yield msg
        # position, not the last offset seen: compaction and transaction markers leave gaps.
        remaining = {tp for tp in remaining if await consumer.position(tp) < ends[tp]}


async def read_topic(bootstrap: str, topic: str, *, enriched_topic: str | None = None
                     ) -> list[DeadLetter]:
    """All dead letters of ``topic``; ClickException naming it when it does not exist."""
    consumer = await assigned_consumer(bootstrap, topic, from_beginning=True)
    try:
        return [letter_of(m, enriched_topic=enriched_topic) async for m in read_to_end(consumer)]
    finally:
        await consumer.stop()


async def read_ledger(bootstrap: str, ledger_topic: str) -> dict[str, dict[str, Any]]:
    """Dead-letter ref -> its last replay record; empty when the ledger does not exist yet."""
    consumer = await start_consumer(bootstrap)
    try:
        await consumer._client.force_metadata_update()
        if not consumer.partitions_for_topic(ledger_topic):
            return {}
    finally:
        await consumer.stop()
    consumer = await assigned_consumer(bootstrap, ledger_topic, from_beginning=True)
    ledger: dict[str, dict[str, Any]] = {}
    try:
        async for msg in read_to_end(consumer):
            if msg.key is None:
                continue
            ref = msg.key.decode("utf-8", "replace")
            if msg.value is None:
                ledger.pop(ref, None)  # a tombstone forgets a replay
                continue
            try:
                ledger[ref] = json.loads(msg.value)
            except ValueError:
                ledger[ref] = {}
    finally:
        await consumer.stop()
    return ledger


async def prepare_replay(settings: Settings, ledger_topic: str) -> None:
    """Check the raw topic exists and create the compacted ledger topic when missing."""
    kafka = settings.kafka
    admin = await admin_client(kafka.bootstrap_servers)
    try:
        existing = set(await admin.list_topics())
        if kafka.raw_topic not in existing:
            raise click.ClickException(
                f"topic {kafka.raw_topic} does not exist: start a worker once (it creates the "
                "topics) or check the name")
        if ledger_topic not in existing:
            try:
                await admin.create_topics([NewTopic(
                    ledger_topic, 1, kafka.replication_factor,
                    topic_configs={"cleanup.policy": "compact"})])
            except TopicAlreadyExistsError:
                pass  # another operator's replay created it first
    finally:
        await admin.close()


async def publish_replays(settings: Settings, letters: Sequence[DeadLetter], ledger_topic: str,
                          *, by: str, console: Console) -> int:
    """Republish ``letters`` to the raw topic, then record each acknowledged one in the ledger."""
    producer = await start_producer(settings.kafka.bootstrap_servers)
    sent: list[tuple[DeadLetter, asyncio.Future[Any]]] = []
    try:
        with Progress(TextColumn("replaying"), BarColumn(), MofNCompleteColumn(),
                      console=console, transient=True) as progress:
            task = progress.add_task("replay", total=len(letters))
            for letter in letters:
                fut = await producer.send(settings.kafka.raw_topic, value=letter.value,
                                          key=letter.key,
                                          headers=replay_headers(letter.headers, letter.ref))
                sent.append((letter, fut))
                progress.advance(task)
            results = await asyncio.gather(*(f for _, f in sent), return_exceptions=True)
        now = dt.datetime.now(dt.UTC)
        acked = [letter for (letter, _), r in zip(sent, results, strict=True)
                 if not isinstance(r, BaseException)]
        for letter in acked:
            await producer.send(ledger_topic, key=letter.ref.encode(),
                                value=ledger_value(now=now, by=by))
        await producer.flush()
        failed = [r for r in results if isinstance(r, BaseException)]
        if failed:
            raise click.ClickException(
                f"{len(failed)} of {len(letters)} replays failed ({type(failed[0]).__name__}: "
                f"{failed[0]}); {len(acked)} were replayed and recorded, run again to retry")
    finally:
        await producer.stop()
    return len(acked)


# --- command line ------------------------------------------------------------------------------

def _settings(config_path: str | None) -> Settings:
    try:
        return load_settings(config_path)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


def _run(coro: Any) -> Any:
    try:
        return asyncio.run(coro)
    except KafkaUnavailable as exc:
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
    letters = _run(read_topic(settings.kafka.bootstrap_servers, name))
    counts = tally(letters, now_ms=_now_ms())
    if fmt == "json":
        click.echo(json.dumps({"topic": name, "total": len(letters),
                               **{k: dict(ordered(k, v)) for k, v in counts.items()}}))
        return
    console = Console()
    console.print(f"[bold]{len(letters)}[/bold] dead letters in {name}")
    if not letters:
        return
    for dim, counter in counts.items():
        table = Table(dim, "count", "share", title=f"by {dim}", title_justify="left")
        for label, n in ordered(dim, counter):
            table.add_row(label, str(n), f"{100 * n / len(letters):.0f}%")
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
    letters = _run(read_topic(settings.kafka.bootstrap_servers, name,
                              enriched_topic=settings.kafka.enriched_topic))
    found = [d for d in letters if matches(d, flt)]
    if not found:
        _no_match(flt, name, len(letters))
        return
    shown = found[:limit] if limit > 0 else found
    now_ms = _now_ms()
    if fmt == "jsonl":
        for letter in shown:
            item = dict(letter.decoded or {})
            item["headers"] = {k: v.decode("utf-8", "replace") for k, v in letter.headers
                               if not k.startswith(ERROR_PREFIXES)}
            click.echo(json.dumps(item, default=_jsonable, ensure_ascii=False))
    else:
        Console().print(_show_table(shown, now_ms=now_ms))
    click.echo(f"{len(shown)} of {len(found)} matching dead letters ({len(letters)} in {name})",
               err=True)


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
    ledger_topic = kafka.dlq_topic + LEDGER_SUFFIX
    letters = _run(read_topic(kafka.bootstrap_servers, name,
                              enriched_topic=kafka.enriched_topic))
    found = [d for d in letters if matches(d, flt)]
    if not found:
        _no_match(flt, name, len(letters))
        return
    ledger = _run(read_ledger(kafka.bootstrap_servers, ledger_topic))
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
        _run(prepare_replay(settings, ledger_topic))
        by = f"{getpass.getuser()}@{socket.gethostname()}"
        replayed = _run(publish_replays(settings, todo, ledger_topic, by=by,
                                        console=Console(stderr=True)))
    click.echo(f"matched {len(found)}, replayed {replayed} to {kafka.raw_topic}, skipped "
               f"{len(done)} already replayed")
