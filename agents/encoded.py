"""EnrichedTrack values, encoded once per waterfall result and input, not once per record.

Charts repeat: most records a running pipeline sees are tracks it already knows, and their
waterfall result comes from the result cache (``agents.results.ResultCache``). Of an
EnrichedTrack, only :data:`PER_RECORD_FIELDS` differ between two records with the same input and
the same result; everything between them (the canonical fields, sources, provider outcomes,
status, missing) is decided by the result and the input fields the result depends on. Encoding
that part took most of an encode (about 40 of 50 us, its nested maps and unions are the slow part
of fastavro's writer), and Avro binary is the concatenation of the fields' encodings, so
:class:`EnrichedEncoder` keeps those bytes per input and writes only the per-record fields.

A kept encoding is used only for a result equal to the one it was made from (the result cache
hands out the same field values, so the comparison costs a few identity checks); the output is
byte for byte what ``encode("EnrichedTrack", build_enriched(...))`` gives. Pure: no I/O.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

from trackflow.agents.records import FieldValue, InputKey, Outcome, build_enriched, input_key
from trackflow.schemas.codec import SINGLE_OBJECT, SegmentedWriter, WireFormat
from trackflow.schemas.registry import default_registry

#: EnrichedTrack fields that are the record's own: everything else follows from the waterfall
#: result and the input fields of :func:`agents.records.input_key`.
PER_RECORD_FIELDS = frozenset({"track_id", "input", "attempt", "enriched_at", "revision"})


@dataclass(frozen=True, slots=True)
class _Kept:
    filled: dict[str, FieldValue]
    outcomes: list[Outcome]
    segments: tuple[bytes | None, ...]
    """The result segments' bytes; None where a segment is per record."""
    status: str


class EnrichedEncoder:
    """Encodes EnrichedTrack values, keeping the result-decided bytes of ``max_entries`` inputs
    (least recently used out)."""

    def __init__(self, targets: Sequence[str], *, max_entries: int,
                 wire: WireFormat = SINGLE_OBJECT) -> None:
        self._targets = tuple(targets)
        self.max_entries = max_entries
        fields = [f["name"] for f in default_registry().latest("EnrichedTrack").schema["fields"]]
        # A new segment wherever a field changes from per-record to result-decided or back.
        starts = [f for prev, f in pairwise(fields)
                  if (prev in PER_RECORD_FIELDS) != (f in PER_RECORD_FIELDS)]
        self._writer = SegmentedWriter("EnrichedTrack", starts, wire=wire)
        self._per_record = tuple(seg[0] in PER_RECORD_FIELDS for seg in self._writer.segments)
        self._kept: OrderedDict[InputKey, _Kept] = OrderedDict()

    def __len__(self) -> int:
        return len(self._kept)

    def encode(self, raw: Mapping[str, Any], *, attempt: int, enriched_at_ms: int,
               filled: Mapping[str, FieldValue], outcomes: Sequence[Outcome],
               revision: int = 1) -> tuple[bytes, str]:
        """The single-object encoding of the EnrichedTrack ``build_enriched`` would build from
        these arguments, and its status."""
        key = input_key(raw)
        kept = self._kept.get(key)
        if kept is not None and kept.filled == filled and kept.outcomes == outcomes:
            self._kept.move_to_end(key)
            own = {"track_id": raw["track_id"], "input": raw, "attempt": attempt,
                   "enriched_at": enriched_at_ms, "revision": revision}
        else:
            own = build_enriched(raw, attempt=attempt, enriched_at_ms=enriched_at_ms,
                                 filled=filled, outcomes=outcomes, targets=self._targets,
                                 revision=revision)
            kept = self._keep(key, own, filled, outcomes)
        write = self._writer.encode_segment
        parts = [self._writer.header]
        for i, segment in enumerate(kept.segments):
            parts.append(write(i, own) if segment is None else segment)
        return b"".join(parts), kept.status

    def _keep(self, key: InputKey, record: dict[str, Any], filled: Mapping[str, FieldValue],
              outcomes: Sequence[Outcome]) -> _Kept:
        write = self._writer.encode_segment
        kept = _Kept(dict(filled), list(outcomes),
                     tuple(None if own else write(i, record)
                           for i, own in enumerate(self._per_record)),
                     record["status"])
        if self.max_entries > 0:
            self._kept[key] = kept
            self._kept.move_to_end(key)
            while len(self._kept) > self.max_entries:
                self._kept.popitem(last=False)
        return kept
