"""One typed, validated settings object, read from a TOML file and ``TRACKFLOW_*`` variables.

Precedence, highest first: ``TRACKFLOW_*`` variables, ``KAFKA_BOOTSTRAP_SERVERS`` and
``REDIS_URL`` (what ``trackflow stack up`` prints), the TOML file (``--config`` or
``TRACKFLOW_CONFIG``), the defaults below. Nested keys use ``__`` in variable names:
``TRACKFLOW_KAFKA__PARTITIONS=16`` sets ``[kafka] partitions``; lists and tables are JSON. The
sources are pydantic-settings' (its environment and TOML sources, merged in that order); a file or
variable that sets one key of a provider keeps that provider's other defaults. Credentials are
never read from the file: provider clients take them from the environment only.

An invalid value stops start-up with :class:`~providers.errors.ConfigError` naming the key and the
variable that sets it.
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    TomlConfigSettingsSource,
)

from trackflow.agents.settings import (
    DlqSettings,
    FieldRule,
    RefreshSettings,
    TableSettings,
    WaterfallSettings,
)
from trackflow.providers.errors import ConfigError
from trackflow.providers.settings import (
    BreakerSettings,
    CacheSettings,
    LimiterSettings,
    ProviderSettings,
    Section,
    default_providers,
)
from trackflow.providers.specs import PROVIDER_NAMES, PROVIDER_VARIABLES, SPECS

# The sections defined in the layers that read them, importable from here with the rest.
__all__ = ["BreakerSettings", "CacheSettings", "DlqSettings", "FieldRule", "KafkaSecurity",
           "KafkaSettings", "ProviderSettings", "SchemaRegistrySettings", "Settings",
           "WaterfallSettings", "WorkerSettings", "load_settings"]

ENV_PREFIX = "TRACKFLOW_"


SASL_USERNAME_VAR = "TRACKFLOW_KAFKA_SASL_USERNAME"
SASL_PASSWORD_VAR = "TRACKFLOW_KAFKA_SASL_PASSWORD"


class KafkaSecurity(Section):
    """How every Kafka client authenticates and encrypts (``[kafka.security]``).

    The SASL login is read from the environment only (``TRACKFLOW_KAFKA_SASL_USERNAME`` /
    ``TRACKFLOW_KAFKA_SASL_PASSWORD``, by :func:`load_settings`), like the provider credentials;
    a config file that sets it stops start-up. Code that builds the section passes it.
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
    sasl_username: str | None = None
    """The SASL username (``TRACKFLOW_KAFKA_SASL_USERNAME``), used by the SASL_ protocols."""
    sasl_password: SecretStr | None = None
    """The SASL password (``TRACKFLOW_KAFKA_SASL_PASSWORD``); never shown."""

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


REGISTRY_USERNAME_VAR = "TRACKFLOW_SCHEMA_REGISTRY_USERNAME"
REGISTRY_PASSWORD_VAR = "TRACKFLOW_SCHEMA_REGISTRY_PASSWORD"


class SchemaRegistrySettings(Section):
    """The schema registry (``[kafka.schema_registry]``): with ``url`` set, every record
    trackflow writes is in the Confluent wire format with its schema registered there, as Kafka
    Connect, ksqlDB, Flink and the Confluent serializers expect; unset, single-object Avro.
    Readers take both either way. The basic-auth login comes from the environment only
    (``TRACKFLOW_SCHEMA_REGISTRY_USERNAME`` / ``_PASSWORD``), like Kafka's."""

    url: str | None = Field(None, repr=False)
    """The registry's Confluent-compatible API (Apicurio: ``http://host:8080/apis/ccompat/v7``;
    ``SCHEMA_REGISTRY_URL``, what ``trackflow stack up`` prints, sets it too)."""
    username: str | None = None
    password: SecretStr | None = None
    ca_file: Path | None = None
    """PEM file of the CA(s) that signed an ``https`` registry's certificate; unset: the
    system's CAs."""
    timeout_s: float = Field(10.0, gt=0, le=120)
    compatibility: Literal["BACKWARD", "BACKWARD_TRANSITIVE", "FULL", "FULL_TRANSITIVE",
                           "NONE"] = "BACKWARD"
    """Set on each subject trackflow registers (``<topic>-value``, the topic-name strategy)."""

    @field_validator("url", mode="before")
    @classmethod
    def _blank_is_none(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @model_validator(mode="after")
    def _consistent(self) -> SchemaRegistrySettings:
        if self.url is not None and not self.url.startswith(("http://", "https://")):
            raise ValueError(f"url must start with http:// or https:// (got {self.url[:40]!r})")
        if self.ca_file is not None and not self.ca_file.is_file():
            raise ValueError(f"ca_file {self.ca_file} is not a readable file")
        if (self.username is None) != (self.password is None):
            raise ValueError(f"{REGISTRY_USERNAME_VAR} and {REGISTRY_PASSWORD_VAR} go together")
        return self


class KafkaSettings(Section):
    """Where Kafka is and how our topics look."""

    bootstrap_servers: str = "127.0.0.1:9092"
    security: KafkaSecurity = KafkaSecurity()
    schema_registry: SchemaRegistrySettings = SchemaRegistrySettings()
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
    max_replays_in_flight: int = Field(4, ge=1, le=10_000)
    """Dead-letter replays processed at once per partition, beside the ``max_in_flight`` fresh
    records: a replay waits for the budget fresh records and refreshes leave, so in a fresh
    record's place it would hold fresh records back. Further replays wait their turn, counted
    in ``max_queued``."""
    web_host: str = "127.0.0.1"
    web_port: int = Field(6066, ge=0, le=65535)
    data_dir: Path = Path(os.path.expanduser("~/.cache/trackflow/worker"))
    """The tables' RocksDB databases (``[tables]``); keep it across restarts (a volume)."""
    instance_id: str | None = Field(None, min_length=1, max_length=200,
                                    pattern=r"^[A-Za-z0-9._-]+$")
    """Static group membership (Kafka's ``group.instance.id``): a name that stays with this
    worker across restarts, such as its pod's name in a StatefulSet. A worker that comes back
    under its name within ``kafka.session_timeout_s`` gets its partitions back without a
    rebalance, so a rolling restart moves nothing; one that does not come back is noticed only
    after that timeout. Two running workers must never share a name (the broker fences the
    older one). Unset: dynamic membership, each start is a new member."""
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


class Secrets(Mapping[str, str]):
    """The environment variables the provider clients take their credentials, base URLs and
    contact from (:data:`~providers.specs.PROVIDER_VARIABLES`), as :func:`load_settings` read
    them, blank ones left out. Its repr names the variables set, never a value."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self._values = {name: env[name].strip() for name in PROVIDER_VARIABLES
                        if (env.get(name) or "").strip()}

    def __getitem__(self, name: str) -> str:
        return self._values[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"Secrets({', '.join(self._values) or 'none set'})"

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: Any) -> Any:
        from pydantic_core import core_schema

        return core_schema.no_info_plain_validator_function(
            lambda value: value if isinstance(value, Secrets) else Secrets(value))


class Settings(BaseSettings):
    """All of trackflow's configuration.

    Built in code (``Settings(waterfall=...)``) it holds the values given and the defaults;
    :func:`load_settings` adds the file and the environment.
    """

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_nested_delimiter="__",
                                      extra="forbid", frozen=True)

    kafka: KafkaSettings = KafkaSettings()
    worker: WorkerSettings = WorkerSettings()
    redis_url: str = Field("redis://127.0.0.1:6379/0", repr=False)
    """May hold an ACL password (``rediss://user:password@host:port/0?ssl_ca_certs=ca.pem``):
    kept out of reprs, and shown through ``providers.urls.mask_url``."""
    providers: dict[str, ProviderSettings] = Field(default_factory=default_providers)
    secrets: Secrets = Field(default_factory=lambda: Secrets({}), repr=False, exclude=True)
    """The provider clients' credentials and endpoints (``providers.specs``' variables), read
    from the environment only: empty in Settings built in code unless given."""
    waterfall: WaterfallSettings = WaterfallSettings()
    cache: CacheSettings = CacheSettings()
    limiter: LimiterSettings = LimiterSettings()
    dlq: DlqSettings = DlqSettings()
    tables: TableSettings = TableSettings()
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

    @classmethod
    def settings_customise_sources(
            cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        given = _LOADING.get()
        if given is None:
            return (init_settings,)
        sources = [init_settings, _Environment(settings_cls, given.env),
                   _ConventionalVariables(settings_cls, given.env)]
        if given.file is not None:
            sources.append(_File(settings_cls, toml_file=given.file))
        return (*sources, _Defaults(settings_cls))


@dataclass(frozen=True)
class _Given:
    file: Path | None
    env: Mapping[str, str]


#: What :func:`load_settings` reads, while it builds a Settings.
_LOADING: ContextVar[_Given | None] = ContextVar("trackflow_settings_loading", default=None)


class _Environment(EnvSettingsSource):
    """pydantic-settings' environment source, reading the mapping given to load_settings."""

    def __init__(self, settings_cls: type[BaseSettings], env: Mapping[str, str]) -> None:
        self._given_env = env
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        # As the base class reads os.environ: names compared without case.
        return {(k if self.case_sensitive else k.lower()): v for k, v in self._given_env.items()}


class _ConventionalVariables(PydanticBaseSettingsSource):
    """``KAFKA_BOOTSTRAP_SERVERS`` and ``REDIS_URL``, below the ``TRACKFLOW_`` variables."""

    def __init__(self, settings_cls: type[BaseSettings], env: Mapping[str, str]) -> None:
        super().__init__(settings_cls)
        self.env = env

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # __call__ answers for every field at once

    def __call__(self) -> dict[str, Any]:
        values: dict[str, Any] = {"secrets": Secrets(self.env)}
        kafka: dict[str, Any] = {}
        if self.env.get("KAFKA_BOOTSTRAP_SERVERS"):
            kafka["bootstrap_servers"] = self.env["KAFKA_BOOTSTRAP_SERVERS"]
        login = {key: self.env[var] for key, var in (("sasl_username", SASL_USERNAME_VAR),
                                                     ("sasl_password", SASL_PASSWORD_VAR))
                 if self.env.get(var)}
        if login:
            kafka["security"] = login
        registry = {key: self.env[var] for key, var in (("url", "SCHEMA_REGISTRY_URL"),
                                                        ("username", REGISTRY_USERNAME_VAR),
                                                        ("password", REGISTRY_PASSWORD_VAR))
                    if self.env.get(var)}
        if registry:
            kafka["schema_registry"] = registry
        if kafka:
            values["kafka"] = kafka
        if self.env.get("REDIS_URL"):
            values["redis_url"] = self.env["REDIS_URL"]
        return values


class _File(TomlConfigSettingsSource):
    """The TOML file, which may hold no credential."""

    def __call__(self) -> dict[str, Any]:
        values = super().__call__()
        kafka = values.get("kafka", {})
        for section, key, var in (("security", "sasl_username", SASL_USERNAME_VAR),
                                  ("security", "sasl_password", SASL_PASSWORD_VAR),
                                  ("schema_registry", "username", REGISTRY_USERNAME_VAR),
                                  ("schema_registry", "password", REGISTRY_PASSWORD_VAR)):
            given = kafka.get(section, {}) if isinstance(kafka, dict) else {}
            if isinstance(given, dict) and key in given:
                raise ConfigError(f"kafka.{section}.{key}", f"is a credential: set {var} in "
                                  "the environment (credentials are never read from the config "
                                  "file)")
        if "secrets" in values:
            raise ConfigError("secrets", "credentials are never read from the config file: "
                              "set the provider variables in the environment")
        return values


class _Defaults(PydanticBaseSettingsSource):
    """Every default, as the lowest source: a key set for one provider (or one field rule)
    is merged into that provider's defaults instead of replacing them."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        return Settings.model_construct().model_dump()


def _unparsable_variable(env: Mapping[str, str]) -> str | None:
    """The first ``TRACKFLOW_`` variable whose value looks like JSON and does not parse."""
    for name, value in env.items():
        if name.upper().startswith(ENV_PREFIX) and value.lstrip().startswith(("[", "{")):
            try:
                json.loads(value)
            except ValueError:
                return name
    return None


def _env_name(loc: tuple[Any, ...]) -> str:
    return ENV_PREFIX + "__".join(str(p).upper() for p in loc)


def load_settings(path: str | Path | None = None, env: Mapping[str, str] | None = None
                  ) -> Settings:
    """Read the settings, or raise ConfigError naming the first bad key."""
    env = os.environ if env is None else env
    path = path or env.get("TRACKFLOW_CONFIG")
    file = Path(path) if path else None
    if file is not None and not file.is_file():
        raise ConfigError("TRACKFLOW_CONFIG", f"file {file} does not exist")
    token = _LOADING.set(_Given(file, env))
    try:
        return Settings()
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(file), f"is not valid TOML: {exc}") from None
    except SettingsError as exc:  # a variable's JSON that does not parse
        name = _unparsable_variable(env)
        if name is None:
            raise ConfigError("environment", str(exc)) from None
        raise ConfigError(name, f"is not valid JSON: {env[name][:80]!r} (lists and tables "
                                "are written as JSON in variables)") from None
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = tuple(err["loc"]) or ("settings",)
        key = ".".join(str(p) for p in loc)
        raise ConfigError(key, f"{err['msg']} (set by [{'.'.join(map(str, loc[:-1])) or 'top'}] "
                               f"{loc[-1]} in the config file or {_env_name(loc)})") from None
    finally:
        _LOADING.reset(token)
