"""Publish tracks read from CSV, JSONL or ``Artist - Title`` lines (``trackflow produce``).

Built on the client API's :class:`~streams.client.TrackProducer`: the file's rows are parsed
here (their format and numbering), validated and sent there, like any Python producer's items.
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from trackflow.streams.client.producer import ProduceReport, Rejected, TrackProducer, ValueFormat
from trackflow.streams.ingest import RowRejected, parse_row, read_rows
from trackflow.streams.kafka_io import Kafka


async def produce_file(path: Path, *, kafka: Kafka, topic: str | None, fmt: ValueFormat,
                       source: str | None, console: Console, validate: bool = True
                       ) -> tuple[ProduceReport, list[str]]:
    """Send every usable row; return the producer's report and examples of rejected rows."""
    rows = list(read_rows(path))
    jsonl = path.suffix.lower() in (".jsonl", ".ndjson", ".json")
    examples: list[str] = []
    async with TrackProducer(kafka, topic=topic, source=source, value_format=fmt,
                             validate=validate) as producer:
        with Progress(TextColumn("producing"), BarColumn(), MofNCompleteColumn(),
                      console=console, transient=True) as progress:
            task = progress.add_task("rows", total=len(rows))
            for n, row in rows:
                try:
                    result = await producer.send(parse_row(n, row, source=source, jsonl=jsonl))
                except RowRejected as exc:
                    result = producer.reject(Rejected(exc.reason, exc.field, str(exc), row))
                if isinstance(result, Rejected) and len(examples) < 5:
                    examples.append(f"{path.name}:{n}: {result.message}")
                progress.advance(task)
        # Leaving the block waits for every acknowledgement (raises if the broker refused one).
    return producer.report, examples
