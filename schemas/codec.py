"""Encode and decode topic values.

Two wire formats (documented in the README, "Wire format"), told apart by the first byte:

- Avro single-object encoding, as defined by the Avro specification (the default): two marker
  bytes ``C3 01``, the writer schema's 8-byte CRC-64-AVRO fingerprint (little-endian), then the
  Avro binary body.
- The Confluent wire format, what Kafka Connect, ksqlDB, Flink and the Confluent serializers
  read and write: a zero byte, the writer schema's id in a schema registry (4 bytes,
  big-endian), then the Avro binary body. :class:`WireFormat` holds the ids our schemas have in
  the registry; the ids of other writers are looked up there (``streams.schema_registry``) and
  handed to :func:`decode`.

Either way the header says which schema wrote the message; a reader resolves that writer schema
to its own (latest) version with Avro's schema-resolution rules, so old messages stay readable
after a field is added.

``tracks.raw`` also accepts JSON: a message with the header ``content-type: application/json``
holding one RawTrack object, checked against the same schema.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import fastavro
from fastavro.validation import ValidationError as AvroValidationError
from fastavro.validation import validate

from trackflow.schemas.registry import SchemaRegistry, SchemaVersion, default_registry

MAGIC = b"\xc3\x01"
HEADER_LEN = 10
CONFLUENT_MAGIC = b"\x00"
CONFLUENT_HEADER_LEN = 5
CONTENT_TYPE = "content-type"
JSON_CONTENT_TYPE = "application/json"
AVRO_CONTENT_TYPE = "application/vnd.trackflow.avro"


class DecodeError(ValueError):
    """A message that cannot be decoded; ``reason`` is a short machine-readable code."""

    def __init__(self, reason: str, message: str, *, schema_id: int | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.schema_id = schema_id
        """For ``unknown_schema_id``: the registry id the message names."""


@dataclass(frozen=True, slots=True)
class WireFormat:
    """How our records are framed when written: the Confluent wire format for the schema
    versions registered (``ids``, by fingerprint), single-object encoding for the others; with
    no ids (the default), single-object encoding throughout."""

    ids: Mapping[bytes, int] = field(default_factory=dict)
    """The registry id of each registered schema version, by its fingerprint."""

    def header(self, sv: SchemaVersion) -> bytes:
        """The bytes before a record of ``sv``'s body."""
        schema_id = self.ids.get(sv.fingerprint)
        if schema_id is None:
            return MAGIC + sv.fingerprint
        return CONFLUENT_MAGIC + schema_id.to_bytes(4, "big")

    @property
    def confluent(self) -> bool:
        return bool(self.ids)


SINGLE_OBJECT = WireFormat()
"""No registry: Avro single-object encoding."""


def encode(name: str, record: Mapping[str, Any], *, registry: SchemaRegistry | None = None,
           version: int | None = None, wire: WireFormat = SINGLE_OBJECT) -> bytes:
    """Encode ``record`` with the latest (or the given) version of ``name``, framed as ``wire``
    says (single-object encoding by default)."""
    reg = registry or default_registry()
    sv = reg.latest(name) if version is None else reg.get(name, version)
    buf = io.BytesIO()
    buf.write(wire.header(sv))
    fastavro.schemaless_writer(buf, sv.parsed, dict(record))
    return buf.getvalue()


def confluent_schema_id(data: bytes | None) -> int | None:
    """The registry id in a Confluent-framed message's header, or None for any other value."""
    if data is None or len(data) < CONFLUENT_HEADER_LEN or data[:1] != CONFLUENT_MAGIC:
        return None
    return int.from_bytes(data[1:CONFLUENT_HEADER_LEN], "big")


class SegmentedWriter:
    """Writes the latest version of record ``name`` in consecutive runs of its fields.

    The Avro binary of a record is the concatenation of its fields' encodings, so
    ``header + segment 0 + segment 1 + ...`` is exactly what :func:`encode` writes for the same
    record, and a segment encoded once serves every record that has the same values in it.
    ``split_before`` names the fields that start a new segment (the first field always does).
    """

    def __init__(self, name: str, split_before: Iterable[str], *,
                 registry: SchemaRegistry | None = None,
                 wire: WireFormat = SINGLE_OBJECT) -> None:
        sv = (registry or default_registry()).latest(name)
        fields = sv.schema["fields"]
        names = [f["name"] for f in fields]
        starts = sorted({0, *(names.index(n) for n in split_before)})
        bounds = list(zip(starts, [*starts[1:], len(fields)], strict=True))
        # Each segment is a record of its own fields; a named type defined in an earlier
        # segment (where the whole record defines it) is known to the later ones. Names are
        # not part of the binary encoding, types are.
        named: dict[str, Any] = {}
        parsed = [fastavro.parse_schema(
            {"type": "record", "name": f"{sv.schema['name']}Segment{i}",
             "namespace": sv.schema.get("namespace", ""), "fields": fields[a:b]},
            named_schemas=named) for i, (a, b) in enumerate(bounds)]
        self.header: bytes = wire.header(sv)
        """The header (single-object or Confluent, as ``wire`` says)."""
        self.segments: tuple[tuple[str, ...], ...] = tuple(tuple(names[a:b]) for a, b in bounds)
        """The field names of each segment, in order."""
        self._parsed = parsed

    def encode_segment(self, index: int, record: Mapping[str, Any]) -> bytes:
        """The encoding of segment ``index``'s fields of ``record`` (other keys are ignored)."""
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, self._parsed[index], record)
        return buf.getvalue()


def decode(name: str, data: bytes, *, registry: SchemaRegistry | None = None,
           writers: Mapping[int, SchemaVersion | None] | None = None) -> dict[str, Any]:
    """Decode a ``name`` record, single-object encoded or Confluent-framed, into the latest
    version's shape. ``writers`` are the writer schemas of registry ids looked up so far; an id
    not among them raises ``unknown_schema_id`` (with the id: look it up, then decode again)."""
    reg = registry or default_registry()
    if data is not None and data[:1] == CONFLUENT_MAGIC:
        if len(data) < CONFLUENT_HEADER_LEN:
            raise DecodeError("truncated", "message shorter than the Confluent wire format header")
        schema_id = int.from_bytes(data[1:CONFLUENT_HEADER_LEN], "big")
        writer = writers.get(schema_id) if writers is not None else None
        if writer is None:
            raise DecodeError("unknown_schema_id",
                              f"schema id {schema_id} is not in the schema registry"
                              + ("" if writers is not None else " (no registry configured)"),
                              schema_id=schema_id)
        header = CONFLUENT_HEADER_LEN
    else:
        if data is None or len(data) < HEADER_LEN:
            raise DecodeError("truncated", "message shorter than the Avro single-object header")
        if data[:2] != MAGIC:
            raise DecodeError("not_avro", "message starts with neither the Avro single-object "
                              "marker nor the Confluent wire format's zero byte")
        found = reg.by_fingerprint(bytes(data[2:HEADER_LEN]))
        if found is None:
            raise DecodeError("unknown_schema", "unknown writer schema fingerprint "
                              f"{bytes(data[2:HEADER_LEN]).hex()}")
        writer, header = found, HEADER_LEN
    reader = reg.latest(name)
    if writer.name != reader.name:
        raise DecodeError("wrong_schema", f"message is a {writer.name}, expected a {name}")
    return _read_body(data, writer, reader, header)


def _read_body(data: bytes, writer: SchemaVersion, reader: SchemaVersion,
               header: int) -> dict[str, Any]:
    buf = io.BytesIO(data)
    buf.seek(header)
    try:
        # Written with the reader's own version (nearly every message): no schema resolution.
        record = fastavro.schemaless_reader(
            buf, writer.parsed, None if reader is writer else reader.parsed)
    except Exception as exc:  # arbitrary bytes can break the reader in any way
        raise DecodeError("corrupt_avro",
                          f"Avro body does not match its schema: {type(exc).__name__}: "
                          f"{str(exc)[:200]}") from None
    if buf.tell() != len(data):
        raise DecodeError("trailing_bytes", f"{len(data) - buf.tell()} bytes after the Avro body")
    if not isinstance(record, dict):
        raise DecodeError("corrupt_avro", "Avro body is not a record")
    return record


def decode_json(name: str, data: bytes, *, registry: SchemaRegistry | None = None
                ) -> dict[str, Any]:
    """Decode a JSON object and check it against the latest ``name`` schema, filling defaults."""
    reg = registry or default_registry()
    try:
        obj = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DecodeError("invalid_json", f"not valid JSON: {exc}") from None
    except RecursionError:
        raise DecodeError("invalid_json", "JSON nested too deeply") from None
    if not isinstance(obj, dict):
        raise DecodeError("invalid_json", "JSON value is not an object")
    sv = reg.latest(name)
    record = _fill_defaults(sv.schema, obj)
    try:
        validate(record, sv.parsed, raise_errors=True)
    except AvroValidationError as exc:
        fields = sorted({_field_of(e) for e in exc.errors})
        raise DecodeError("schema_mismatch",
                          f"JSON does not match {name}: bad or missing {', '.join(fields)}"
                          ) from None
    return record


def _fill_defaults(schema: Mapping[str, Any], obj: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(obj)
    for f in schema["fields"]:
        if f["name"] not in out and "default" in f:
            out[f["name"]] = f["default"]
    return out


def _field_of(error: Any) -> str:
    text = str(error)
    # fastavro reports "ns.Record.field is <value> ..." or "Field(ns.Record.field) is None ...".
    head = text.split(" is ", 1)[0].removeprefix("Field(").removesuffix(")")
    return head.rsplit(".", 1)[-1] or text


def header_value(headers: Iterable[tuple[str, bytes]] | Mapping[str, bytes] | None,
                 name: str) -> str | None:
    """The last value of header ``name`` (case-insensitive), decoded as UTF-8, or None."""
    if not headers:
        return None
    items = headers.items() if isinstance(headers, Mapping) else headers
    found: str | None = None
    for key, value in items:
        if key.lower() == name and value is not None:
            raw = value if isinstance(value, bytes | bytearray) else str(value).encode()
            found = bytes(raw).decode("utf-8", "replace")
    return found


def decode_raw_track(data: bytes | None,
                     headers: Iterable[tuple[str, bytes]] | Mapping[str, bytes] | None = None,
                     *, registry: SchemaRegistry | None = None,
                     writers: Mapping[int, SchemaVersion | None] | None = None
                     ) -> dict[str, Any]:
    """Decode a ``tracks.raw`` value: JSON when its content-type says so, else Avro."""
    if data is None:
        raise DecodeError("empty", "message has no value")
    ctype = (header_value(headers, CONTENT_TYPE) or "").split(";", 1)[0].strip().lower()
    if ctype == JSON_CONTENT_TYPE:
        return decode_json("RawTrack", data, registry=registry)
    if ctype and ctype != AVRO_CONTENT_TYPE:
        raise DecodeError("unsupported_content_type", f"unsupported content-type {ctype!r}")
    return decode("RawTrack", data, registry=registry, writers=writers)
