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

from pydantic import Field, ValidationError, model_validator

from trackflow.agents.settings import DlqSettings, FieldRule, RefreshSettings, WaterfallSettings
from trackflow.providers.errors import ConfigError
from trackflow.providers.settings import (
    BreakerSettings,
    CacheSettings,
    LimiterSettings,
    ProviderSettings,
    Section,
    default_providers,
)
from trackflow.providers.specs import PROVIDER_NAMES, SPECS

# The sections defined in the layers that read them, importable from here with the rest.
__all__ = ["BreakerSettings", "CacheSettings", "DlqSettings", "FieldRule", "KafkaSecurity",
           "KafkaSettings",
           "ProviderSettings", "Settings", "WaterfallSettings", "WorkerSettings", "load_settings"]

ENV_PREFIX = "TRACKFLOW_"


class KafkaSecurity(Section):
    """How every Kafka client authenticates and encrypts (``[kafka.security]``).

    The SASL username and password are not settings: they come from the environment only
    (``TRACKFLOW_KAFKA_SASL_USERNAME`` / ``TRACKFLOW_KAFKA_SASL_PASSWORD``, read by
    ``streams.kafka_security``), like the provider credentials.
    """

    protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    """The Kafka ``security.protocol``."""
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "PLAIN"
    """The Kafka ``sasl.mechanism``, used by the SASL_ protocols."""
    ca_file: Path | None = None
    """PEM file of the CA(s) that signed the brokers' certificates; unset: the system's CAs."""
    cert_file: Path | None = None
    """PEM client certificate for mutual TLS (with ``key_file``)."""
    key_file: Path | None = None
    """PEM private key of ``cert_file``."""
    check_hostname: bool = True
    """Verify that a broker's certificate names the host connected to."""

    @property
    def uses_tls(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")

    @property
    def uses_sasl(self) -> bool:
        return self.protocol.startswith("SASL_")

    @model_validator(mode="after")
    def _consistent(self) -> KafkaSecurity:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together (mutual TLS needs both)")
        tls_files = [n for n in ("ca_file", "cert_file", "key_file") if getattr(self, n)]
        if tls_files and not self.uses_tls:
            raise ValueError(f"{', '.join(tls_files)} set, but protocol {self.protocol} does not "
                             "use TLS (use SSL or SASL_SSL)")
        for name in tls_files:
            path: Path = getattr(self, name)
            if not path.is_file():
                raise ValueError(f"{name} {path} is not a readable file")
        return self


class KafkaSettings(Section):
    """Where Kafka is and how our topics look."""

    bootstrap_servers: str = "127.0.0.1:9092"
    security: KafkaSecurity = KafkaSecurity()
    partitions: int = Field(8, ge=1, le=1024)
    replication_factor: int = Field(1, ge=1, le=7)
    """Replicas of every topic trackflow creates; ``trackflow stack up --brokers 3`` sets 3."""
    min_insync_replicas: int | None = Field(None, ge=1, le=7)
    """``min.insync.replicas`` of the topics created; unset: 2 with 3 replicas or more (an
    acks=all write survives one broker down), else 1."""
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
    to fit, and its headers say so (``agents.deadletter``)."""
    session_timeout_s: float = Field(30.0, ge=6, le=300)
    """How long the group waits for a silent worker before moving its partitions."""
    retry_backoff_ms: int = Field(500, ge=10, le=60_000)
    """The Kafka clients' pause before retrying a failed request or connection (aiokafka's
    ``retry_backoff_ms``, 100 by default). With the broker gone every retry fails, so this sets
    how hard a worker hammers a dead address, and how much it logs and burns meanwhile."""

    @property
    def min_isr(self) -> int:
        """The ``min.insync.replicas`` topics get."""
        if self.min_insync_replicas is not None:
            return self.min_insync_replicas
        return 2 if self.replication_factor >= 3 else 1

    @model_validator(mode="after")
    def _isr_fits(self) -> KafkaSettings:
        if self.min_isr > self.replication_factor:
            raise ValueError(f"min_insync_replicas {self.min_isr} is more than "
                             f"replication_factor {self.replication_factor}: no write could "
                             "ever succeed")
        return self

    @property
    def refresh_topic(self) -> str:
        """The refresh schedule (``agents.refresh``): ``<enriched topic>.refresh``."""
        return f"{self.enriched_topic}.refresh"


class WorkerSettings(Section):
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
    agents: list[Literal["enrich", "reprocess", "refresh"]] = ["enrich", "reprocess", "refresh"]
    """Agents this worker runs: enrichment of tracks.raw, reprocessing of tracks.dlq, refresh
    of partial records (tracks.enriched.refresh)."""
    stop_grace_s: float = Field(25.0, gt=0, le=600)
    """After SIGTERM or SIGINT, how long the clean stop may take before the process exits
    anyway (with no broker it would wait on commits that cannot succeed). Below the 30 s a
    process manager usually grants; nothing is lost, unfinished records are read again."""
    kafka_log_interval_s: float = Field(60.0, ge=1, le=3600)
    """During a broker outage, each kind of Kafka client warning is logged once per interval,
    and one summary line per interval counts the rest (``streams.kafka_logs``)."""
    crash_grace_s: float = Field(30.0, gt=0, le=600)
    """After a fatal error, how long the worker may take to stop cleanly before it exits
    anyway: a crashed worker must never linger without consuming."""




class Settings(Section):
    """All of trackflow's configuration."""

    kafka: KafkaSettings = KafkaSettings()
    worker: WorkerSettings = WorkerSettings()
    redis_url: str = Field("redis://127.0.0.1:6379/0", repr=False)
    """May hold an ACL password (``rediss://user:password@host:port/0?ssl_ca_certs=ca.pem``):
    kept out of reprs, and shown through ``providers.urls.mask_url``."""
    providers: dict[str, ProviderSettings] = Field(default_factory=default_providers)
    waterfall: WaterfallSettings = WaterfallSettings()
    cache: CacheSettings = CacheSettings()
    limiter: LimiterSettings = LimiterSettings()
    dlq: DlqSettings = DlqSettings()
    refresh: RefreshSettings = RefreshSettings()

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
