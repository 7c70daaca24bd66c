"""Publish tracks read from CSV, JSONL or ``Artist - Title`` lines (``trackflow produce``)."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from trackflow.schemas.codec import AVRO_CONTENT_TYPE, CONTENT_TYPE, JSON_CONTENT_TYPE, encode
from trackflow.streams.ingest import parse_row, read_rows
from trackflow.streams.kafka_io import start_producer
from trackflow.streams.settings import KafkaSettings


def _encode(record: dict[str, Any], fmt: str) -> tuple[bytes, list[tuple[str, bytes]]]:
    if fmt == "json":
        return json.dumps(record).encode(), [(CONTENT_TYPE, JSON_CONTENT_TYPE.encode())]
    return encode("RawTrack", record), [(CONTENT_TYPE, AVRO_CONTENT_TYPE.encode())]


async def produce_file(path: Path, *, kafka: KafkaSettings, topic: str, fmt: str,
                       source: str | None, console: Console) -> tuple[int, Counter[str], list[str]]:
    """Send every usable row; return (sent, rejection reasons, examples of rejections)."""
    rows = list(read_rows(path))
    jsonl = path.suffix.lower() in (".jsonl", ".ndjson", ".json")
    producer = await start_producer(kafka)
    sent = 0
    reasons: Counter[str] = Counter()
    examples: list[str] = []
    pending: list[asyncio.Future[Any]] = []
    try:
        with Progress(TextColumn("producing"), BarColumn(), MofNCompleteColumn(),
                      console=console, transient=True) as progress:
            task = progress.add_task("rows", total=len(rows))
            for n, row in rows:
                try:
                    record = parse_row(n, row, source=source, jsonl=jsonl)
                    value, headers = _encode(record, fmt)
                except ValueError as exc:
                    reasons[str(exc)] += 1
                    if len(examples) < 5:
                        examples.append(f"{path.name}:{n}: {exc}")
                    progress.advance(task)
                    continue
                pending.append(await producer.send(topic, value=value,
                                                   key=record["track_id"].encode(),
                                                   headers=headers))
                sent += 1
                progress.advance(task)
            await producer.flush()
            for fut in pending:
                await fut  # raises if the broker refused a record
    finally:
        await producer.stop()
    return sent, reasons, examples
