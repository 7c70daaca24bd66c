"""The agents' configuration: the waterfall's stages and the reprocessing of dead letters, and
:class:`AgentSettings`, the read-only view of the settings object the agents take.

The settings object itself (``streams.settings.Settings``) is assembled and loaded on top; the
agents only declare what they read, so they never import the layer above them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, Protocol

from pydantic import Field

from trackflow.providers.settings import ProviderSettings, Section
from trackflow.providers.specs import PROVIDER_NAMES, SPECS


class FieldRule(Section):
    """Which providers may fill a field, and how sure they must be."""

    providers: list[str]
    min_confidence: float = Field(0.85, ge=0, le=1)


def _default_fields() -> dict[str, FieldRule]:
    """By default a provider may fill every field it provides (``ProviderSpec.provides``)."""
    fields = sorted({f for spec in SPECS.values() for f in spec.provides})
    return {f: FieldRule(providers=[n for n, spec in SPECS.items() if f in spec.provides])
            for f in fields}


class WaterfallSettings(Section):
    """The provider stages: order, what each may fill, and what a publishable record needs."""

    order: list[str] = list(PROVIDER_NAMES)
    fields: dict[str, FieldRule] = Field(default_factory=_default_fields)
    required: list[str] = ["isrc"]
    """Fields a record needs to be published; without them it is dead-lettered."""
    targets: list[str] = [
        "isrc", "spotify_id", "musicbrainz_recording_id", "deezer_id", "discogs_release_id",
        "album", "release_date", "duration_ms", "label", "bpm", "genres", "tags", "popularity",
        "listeners", "playcount",
    ]
    """Fields the waterfall tries to fill; a record with all of them is ``complete``. ``key``
    needs Spotify audio features, which apps created after Nov 2024 cannot use, so it is not a
    default target."""


class DlqSettings(Section):
    """How the reprocessing agent retries dead letters (``[dlq]``, ``TRACKFLOW_DLQ__*``)."""

    max_attempts: int = Field(default=5, ge=1, le=100)
    """Passes a record gets in all (1 = the first pass); then it is parked."""
    backoff_base_s: float = Field(default=30.0, gt=0)
    """Upper bound of the first retry's delay; doubles with every attempt."""
    backoff_cap_s: float = Field(default=3600.0, gt=0)
    """Upper bound of any retry's delay."""
    max_waiting_per_partition: int = Field(default=10_000, ge=1, le=1_000_000)
    """Dead letters of one DLQ partition waiting at once; beyond it they queue (``worker.
    max_queued`` in all), and beyond that the DLQ stops being read."""
    breaker_jitter_s: float = Field(default=2.0, ge=0)
    """Spread added after an open breaker's end, so waiting retries do not probe together."""


class RefreshSettings(Section):
    """Progressive enrichment (``[refresh]``, ``TRACKFLOW_REFRESH__*``; see agents.refresh)."""

    enabled: bool = True
    """Schedule a refresh for every record published with deferred or failed stages."""
    delay_s: float = Field(default=30.0, ge=0)
    """How long after publication the first refresh runs; doubles every round."""
    max_delay_s: float = Field(default=3600.0, ge=0)
    max_rounds: int = Field(default=5, ge=1, le=100)
    """Refreshes of one track at most; what is still missing after them stays missing."""
    max_waiting_per_partition: int = Field(default=10_000, ge=1, le=1_000_000)
    """Refresh requests of one partition waiting at once (then they queue, then the topic
    stops being read)."""


class TableSettings(Section):
    """Where the worker's changelogged tables live (``[tables]``, ``TRACKFLOW_TABLES__*``).

    Each table partition the worker holds (active or standby) is one RocksDB database under
    ``worker.data_dir``. A worker restarted on the same directory reads only the changelog
    written since its last commit; without it (a new pod, an empty volume) it replays the
    changelog from the start. The sizes below are per database, and the memory they take is at
    most ``(block_cache_mb + write_buffer_mb * write_buffers) * tables * partitions held``:
    RocksDB's own defaults (a 2 GiB block cache, three 64 MiB write buffers) are sized for one
    large database, not dozens of small ones in a pod.
    """

    store: Literal["rocksdb", "memory"] = "rocksdb"
    """``memory`` keeps the tables in the process only: every start replays each changelog from
    offset 0, and standby replicas buy nothing. For tests and short-lived tools."""
    block_cache_mb: int = Field(4, ge=1, le=4096)
    """Cache of read blocks per database."""
    write_buffer_mb: int = Field(2, ge=1, le=1024)
    """Size of one in-memory write buffer (memtable) per database."""
    write_buffers: int = Field(2, ge=2, le=16)
    """Write buffers per database (one filling while another is flushed)."""
    max_open_files: int = Field(64, ge=16, le=100_000)
    """Files one database keeps open."""

    @property
    def store_url(self) -> str:
        return f"{self.store}://"

    def rocksdb_options(self) -> dict[str, Any]:
        """The options Faust passes to each table partition's database."""
        mib = 1024 * 1024
        return {"block_cache_size": self.block_cache_mb * mib,
                "write_buffer_size": self.write_buffer_mb * mib,
                "max_write_buffer_number": self.write_buffers,
                "target_file_size_base": 8 * mib, "max_open_files": self.max_open_files,
                "driver": "rocksdict"}


class TopicSettings(Protocol):
    """What the agents read of ``[kafka]``."""

    @property
    def raw_topic(self) -> str: ...
    @property
    def enriched_topic(self) -> str: ...
    @property
    def dlq_topic(self) -> str: ...
    @property
    def parked_topic(self) -> str: ...
    @property
    def refresh_topic(self) -> str: ...
    @property
    def consumer_group(self) -> str: ...
    @property
    def partitions(self) -> int: ...
    @property
    def max_message_bytes(self) -> int: ...


class LimitSettings(Protocol):
    """What the agents read of ``[worker]``."""

    @property
    def max_in_flight(self) -> int: ...
    @property
    def max_queued(self) -> int: ...
    @property
    def max_replays_in_flight(self) -> int: ...


class AgentSettings(Protocol):
    """The part of the settings object the agents read."""

    @property
    def kafka(self) -> TopicSettings: ...
    @property
    def worker(self) -> LimitSettings: ...
    @property
    def providers(self) -> Mapping[str, ProviderSettings]: ...
    @property
    def waterfall(self) -> WaterfallSettings: ...
    @property
    def dlq(self) -> DlqSettings: ...
    @property
    def refresh(self) -> RefreshSettings: ...
    @property
    def tables(self) -> TableSettings: ...

