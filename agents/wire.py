"""What the agents write with and read with: the wire format of their outputs, and the registry's
id lookups for inputs in the Confluent wire format (``schemas.codec``; the registry client is
``streams.schema_registry``, handed in by the worker). Without a registry: single-object Avro out,
and a Confluent-framed input is a dead letter (``unknown_schema_id``)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from trackflow.schemas.codec import SINGLE_OBJECT, DecodeError, WireFormat, decode_raw_track
from trackflow.schemas.registry import SchemaVersion


class SchemaLookup(Protocol):
    """A schema registry's ids, looked up once each."""

    @property
    def writers(self) -> Mapping[int, SchemaVersion | None]: ...

    async def writer(self, schema_id: int) -> SchemaVersion | None:
        """Look ``schema_id`` up; raises :class:`~providers.errors.ConfigError` when the
        registry cannot be asked."""
        ...


@dataclass(frozen=True, slots=True)
class Schemas:
    """The agents' wire format and schema lookups."""

    wire: WireFormat = SINGLE_OBJECT
    lookup: SchemaLookup | None = None

    @property
    def writers(self) -> Mapping[int, SchemaVersion | None] | None:
        """The ids looked up so far (None without a registry)."""
        return None if self.lookup is None else self.lookup.writers

    async def decode_raw(self, value: bytes | None,
                         headers: Iterable[tuple[str, bytes]]) -> dict[str, Any]:
        """A tracks.raw value in any format, its registry id looked up first if new."""
        try:
            return decode_raw_track(value, headers, writers=self.writers)
        except DecodeError as exc:
            if exc.reason != "unknown_schema_id" or self.lookup is None \
                    or exc.schema_id is None or exc.schema_id in self.lookup.writers:
                raise
            await self.lookup.writer(exc.schema_id)
            return decode_raw_track(value, headers, writers=self.writers)


NO_REGISTRY = Schemas()
