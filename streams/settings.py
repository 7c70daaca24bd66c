"""One typed, validated settings object, read from a TOML file and ``TRACKFLOW_*`` variables.

Precedence, highest first: environment variables, the TOML file (``--config`` or
``TRACKFLOW_CONFIG``), the defaults below. Nested keys use ``__`` in variable names:
``TRACKFLOW_KAFKA__PARTITIONS=16`` sets ``[kafka] partitions``. ``KAFKA_BOOTSTRAP_SERVERS`` and
``REDIS_URL`` (what ``trackflow stack up`` prints) are honoured too. Credentials are never read from
the file: provider clients take them from the environment only.

An invalid value stops start-up with :class:`~providers.errors.ConfigError` naming the key and the
variable that sets it.
"""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from trackflow.providers.breaker import BreakerConfig
from trackflow.providers.cache import CacheTtls
from trackflow.providers.errors import ConfigError
from trackflow.providers.gate import ProviderPolicy
from trackflow.providers.specs import PROVIDER_NAMES, SPECS

ENV_PREFIX = "TRACKFLOW_"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class KafkaSettings(_Section):
    """Where Kafka is and how our topics look."""

    bootstrap_servers: str = "127.0.0.1:9092"
    partitions: int = Field(8, ge=1, le=1024)
    replication_factor: int = Field(1, ge=1, le=7)
    raw_topic: str = "tracks.raw"
    enriched_topic: str = "tracks.enriched"
    dlq_topic: str = "tracks.dlq"
    parked_topic: str = "tracks.dlq.parked"
    consumer_group: str = "trackflow"
    commit_interval_s: float = Field(1.0, gt=0, le=60)
    max_poll_records: int = Field(2000, ge=1, le=100_000)
    """Records one fetch hands to the agents at most. Faust's default is everything buffered;
    bounded, the fetcher and the agents take turns (a pass-through agent measured 7,500 records/s
    unbounded, 9,000 at 2,000)."""
    max_message_bytes: int = Field(1_048_576, ge=65_536, le=64 * 1024 * 1024)
    """The largest record a worker publishes (the producer's ``max.request.size``, and
    ``max.message.bytes`` of the topics it creates). A dead letter that would be larger is cut
    to fit, and its headers say so (``streams.deadletter``)."""
    session_timeout_s: float = Field(30.0, ge=6, le=300)
    """How long the group waits for a silent worker before moving its partitions."""


class WorkerSettings(_Section):
    """How one worker process runs."""

    max_in_flight: int = Field(64, ge=1, le=10_000)
    """Records processed at once per partition (providers are slow HTTP calls)."""
    max_queued: int = Field(10_000, ge=1, le=1_000_000)
    """Records received and waiting for a free in-flight place, all partitions together; a
    partition at its maximum queues instead of holding the others up. Bounds memory."""
    web_host: str = "127.0.0.1"
    web_port: int = Field(6066, ge=0, le=65535)
    data_dir: Path = Path(os.path.expanduser("~/.cache/trackflow/worker"))
    log_level: str = Field("info", pattern="^(debug|info|warning|error)$")
    agents: list[Literal["enrich", "reprocess"]] = ["enrich", "reprocess"]
    """Agents this worker runs: enrichment of tracks.raw, reprocessing of tracks.dlq, or both."""
    crash_grace_s: float = Field(30.0, gt=0, le=600)
    """After a fatal error, how long the worker may take to stop cleanly before it exits
    anyway: a crashed worker must never linger without consuming."""




class BreakerSettings(_Section):
    """Circuit breaker thresholds: the settable fields of providers.breaker.BreakerConfig."""

    window_size: int = Field(20, ge=1, le=1000)
    minimum_calls: int = Field(5, ge=1, le=1000)
    failure_rate_threshold: float = Field(0.5, gt=0, le=1)
    consecutive_failures: int = Field(5, ge=1, le=1000)
    slow_call_s: float = Field(5.0, gt=0)
    slow_call_rate_threshold: float = Field(0.8, gt=0, le=1)
    half_open_max_probes: int = Field(1, ge=1, le=100)
    half_open_successes: int = Field(2, ge=1, le=100)
    open_base_s: float = Field(5.0, gt=0)
    open_cap_s: float = Field(300.0, ge=0)


class ProviderSettings(_Section):
    """How one provider is used and called."""

    enabled: bool = True
    rate: float = Field(1.0, gt=0, le=100_000)
    """Calls per second the provider allows this application as a whole (all workers)."""
    window_s: float = Field(1.0, gt=0, le=3600)
    """The window over which the provider counts calls (it allows ``rate * window_s`` each)."""
    rate_slack_s: float = Field(0.1, ge=0, le=60)
    """Pacing counts the provider's window as this much longer: ``rate * window_s`` calls go
    out per ``window_s + rate_slack_s``. A quarter of it absorbs a call leaving late, the rest
    the delay until the request reaches the provider (and clock skew between workers)."""
    max_wait_s: float = Field(30.0, ge=0)
    timeout_s: float = Field(15.0, gt=0)
    max_attempts: int = Field(3, ge=1, le=10)
    backoff_base_s: float = Field(0.5, gt=0)
    backoff_cap_s: float = Field(8.0, gt=0)
    retry_budget_ratio: float = Field(0.2, ge=0, le=1)
    min_confidence: float = Field(0.82, ge=0, le=1)
    """Matches below this confidence are ignored for this provider."""
    requires: list[str] = []
    """Fields that must be known before this stage runs (e.g. ``["isrc"]``)."""
    features: list[str] = []
    """Optional lookups to make: Spotify's ``audio_features`` (BPM and key; off by default,
    apps created after November 2024 get 403 there)."""
    breaker: BreakerSettings = BreakerSettings()

    def policy(self) -> ProviderPolicy:
        """How the gate calls this provider. Every call and breaker setting is passed by name:
        a setting the policy does not know stops start-up instead of being ignored."""
        calls = self.model_dump(exclude={"enabled", "min_confidence", "requires", "features",
                                         "breaker"})
        return ProviderPolicy(**calls, breaker=BreakerConfig(**self.breaker.model_dump()))


class FieldRule(_Section):
    """Which providers may fill a field, and how sure they must be."""

    providers: list[str]
    min_confidence: float = Field(0.85, ge=0, le=1)


def _default_fields() -> dict[str, FieldRule]:
    """By default a provider may fill every field it provides (``ProviderSpec.provides``)."""
    fields = sorted({f for spec in SPECS.values() for f in spec.provides})
    return {f: FieldRule(providers=[n for n, spec in SPECS.items() if f in spec.provides])
            for f in fields}


class WaterfallSettings(_Section):
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


class CacheSettings(_Section):
    """The two-level provider cache (in-process LRU in front of Redis)."""

    enabled: bool = True
    namespace: str = Field("trackflow", pattern=r"^[A-Za-z0-9_.-]+$")
    """Prefix of every Redis key; separate pipelines sharing a Redis use separate namespaces."""
    lru_size: int = Field(50_000, ge=0)
    """Provider answers each worker keeps in process, in front of Redis (0: none)."""
    result_cache_size: int = Field(20_000, ge=0)
    """Waterfall results each worker keeps for inputs it saw recently (0: none); an entry
    never outlives the cached provider answers it was computed from."""
    ttl_id_s: float = Field(30 * 86_400, gt=0)
    ttl_search_s: float = Field(86_400, gt=0)
    ttl_tags_s: float = Field(7 * 86_400, gt=0)
    ttl_features_s: float = Field(7 * 86_400, gt=0)
    """Spotify audio features (BPM, key)."""
    ttl_not_found_s: float = Field(3_600, gt=0)

    def ttls(self) -> CacheTtls:
        """The cache's TTLs: one per lookup kind the provider clients make."""
        return CacheTtls(by_kind={"isrc": self.ttl_id_s, "id": self.ttl_id_s,
                                  "search": self.ttl_search_s, "tags": self.ttl_tags_s,
                                  "features": self.ttl_features_s},
                         default=self.ttl_search_s, not_found=self.ttl_not_found_s)


class DlqSettings(_Section):
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


# (calls per second, the window the provider counts them in), from each API's documentation;
# Spotify publishes no number (it uses a rolling 30 s window), Last.fm asks for about 5/s.
def _default_providers() -> dict[str, ProviderSettings]:
    return {name: ProviderSettings(rate=spec.rate, window_s=spec.window_s,
                                   requires=list(spec.requires))
            for name, spec in SPECS.items()}


class Settings(_Section):
    """All of trackflow's configuration."""

    kafka: KafkaSettings = KafkaSettings()
    worker: WorkerSettings = WorkerSettings()
    redis_url: str = "redis://127.0.0.1:6379/0"
    providers: dict[str, ProviderSettings] = Field(default_factory=_default_providers)
    waterfall: WaterfallSettings = WaterfallSettings()
    cache: CacheSettings = CacheSettings()
    dlq: DlqSettings = DlqSettings()

    @model_validator(mode="after")
    def _known_providers(self) -> Settings:
        for name, provider in self.providers.items():
            if name not in PROVIDER_NAMES:
                raise ValueError(f"unknown provider {name!r} in [providers] "
                                 f"(known: {', '.join(PROVIDER_NAMES)})")
            unknown = set(provider.features) - SPECS[name].features
            if unknown:
                raise ValueError(f"providers.{name}.features: unknown {sorted(unknown)} "
                                 f"(known: {sorted(SPECS[name].features)})")
        for name in self.waterfall.order:
            if name not in PROVIDER_NAMES:
                raise ValueError(f"unknown provider {name!r} in waterfall.order")
        for group in ("required", "targets"):
            for field_name in getattr(self.waterfall, group):
                if field_name not in self.waterfall.fields:
                    raise ValueError(f"waterfall.{group} names {field_name!r}, which has no rule "
                                     "in [waterfall.fields]")
        for field_name, rule in self.waterfall.fields.items():
            for name in rule.providers:
                if name not in PROVIDER_NAMES:
                    raise ValueError(f"unknown provider {name!r} in waterfall.fields.{field_name}")
        return self


def _env_name(loc: tuple[Any, ...]) -> str:
    return ENV_PREFIX + "__".join(str(p).upper() for p in loc)


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def load_settings(path: str | Path | None = None, env: dict[str, str] | None = None) -> Settings:
    """Read the settings, or raise ConfigError naming the first bad key."""
    env = dict(os.environ if env is None else env)
    path = path or env.get("TRACKFLOW_CONFIG")
    file_values: dict[str, Any] = {}
    if path:
        try:
            file_values = tomllib.loads(Path(path).read_text())
        except FileNotFoundError:
            raise ConfigError("TRACKFLOW_CONFIG", f"file {path} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(str(path), f"is not valid TOML: {exc}") from None
    # The conventional variables apply unless the TRACKFLOW_ one is set.
    overrides: dict[str, Any] = {}
    if "KAFKA_BOOTSTRAP_SERVERS" in env and f"{ENV_PREFIX}KAFKA__BOOTSTRAP_SERVERS" not in env:
        overrides["kafka"] = {"bootstrap_servers": env["KAFKA_BOOTSTRAP_SERVERS"]}
    if "REDIS_URL" in env and f"{ENV_PREFIX}REDIS_URL" not in env:
        overrides["redis_url"] = env["REDIS_URL"]
    env_values = _env_tree(env)
    # Start from the defaults so a file or variable that sets one key of a provider keeps the
    # provider's other defaults (its rate, say).
    defaults = Settings().model_dump(mode="json")
    values = _merge(_merge(_merge(defaults, file_values), overrides), env_values)
    try:
        return Settings.model_validate(values)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = tuple(err["loc"]) or ("settings",)
        key = ".".join(str(p) for p in loc)
        raise ConfigError(key, f"{err['msg']} (set by [{'.'.join(map(str, loc[:-1])) or 'top'}] "
                               f"{loc[-1]} in the config file or {_env_name(loc)})") from None


def _env_value(name: str, value: str) -> Any:
    """Lists and tables are written as JSON in variables: ``TRACKFLOW_WATERFALL__ORDER='[]'``."""
    if value.lstrip().startswith(("[", "{")):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            raise ConfigError(name, f"is not valid JSON: {value[:80]!r}") from None
    return value


def _env_tree(env: dict[str, str]) -> dict[str, Any]:
    """``TRACKFLOW_A__B=v`` -> ``{"a": {"b": "v"}}`` for keys Settings knows or rejects."""
    tree: dict[str, Any] = {}
    skip = {"TRACKFLOW_CONFIG"}
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX) or name in skip:
            continue
        parts = name[len(ENV_PREFIX):].lower().split("__")
        if parts[0] not in Settings.model_fields:
            continue  # provider URLs and credentials are read by the provider registry
        node = tree
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = _env_value(name, value)
    return tree
