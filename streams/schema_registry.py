"""The schema registry client: registers trackflow's schemas and looks up the writers of ids.

Speaks the Confluent Schema Registry REST API, which Confluent's registry, Apicurio Registry (its
``/apis/ccompat/v7`` API), Karapace and Redpanda all serve. On start a writer registers the
latest version of each record it writes under the topic-name strategy subject
(``tracks.raw-value``, ``tracks.enriched-value``) with the compatibility level of
``kafka.schema_registry.compatibility`` (BACKWARD by default) and gets the
:class:`~schemas.codec.WireFormat` to write with; a reader looks up an id it has not seen once
and keeps the answer (a writer schema, or None when the registry does not know the id), so the
warm path pays a dict lookup.

httpx is imported when a client is made: the client API without a registry stays light.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from trackflow.providers.errors import ConfigError
from trackflow.providers.urls import mask_url
from trackflow.schemas.codec import (
    SINGLE_OBJECT,
    WireFormat,
    confluent_schema_id,
)
from trackflow.schemas.registry import SchemaRegistry, SchemaVersion, default_registry
from trackflow.streams.settings import KafkaSettings, SchemaRegistrySettings

if TYPE_CHECKING:
    import httpx

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"


class SchemaRegistryUnavailable(ConfigError):
    """The registry did not answer, or refused what trackflow asked."""


def subject(topic: str) -> str:
    """The topic-name strategy's subject of a topic's values."""
    return f"{topic}-value"


class SchemaRegistryClient:
    """One registry, for writing (:meth:`register`) and reading (:meth:`writer`)."""

    def __init__(self, settings: SchemaRegistrySettings, *,
                 schemas: SchemaRegistry | None = None,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        import httpx

        if settings.url is None:
            raise ValueError("no schema registry configured (kafka.schema_registry.url)")
        self.settings = settings
        self._schemas = schemas or default_registry()
        auth = None
        if settings.username is not None and settings.password is not None:
            auth = httpx.BasicAuth(settings.username, settings.password.get_secret_value())
        verify: ssl.SSLContext | bool = True
        if settings.ca_file is not None:
            verify = ssl.create_default_context(cafile=str(settings.ca_file))
        self._http = httpx.AsyncClient(
            base_url=settings.url.rstrip("/") + "/", auth=auth, verify=verify,
            timeout=settings.timeout_s, transport=transport,
            headers={"Accept": CONTENT_TYPE, "Content-Type": CONTENT_TYPE})
        self.writers: dict[int, SchemaVersion | None] = {}
        """The writer schema of every id looked up (None: the registry does not know it)."""
        self._lookups: dict[int, asyncio.Future[SchemaVersion | None]] = {}

    def __repr__(self) -> str:
        return f"SchemaRegistryClient(url={mask_url(self.settings.url or '')!r})"

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _call(self, method: str, path: str, body: Any = None) -> Any:
        import httpx

        where = mask_url(self.settings.url or "")
        try:
            response = await self._http.request(
                method, path, content=None if body is None else json.dumps(body))
        except httpx.HTTPError as exc:
            raise SchemaRegistryUnavailable(
                "kafka.schema_registry.url", f"the schema registry at {where} does not answer "
                f"({type(exc).__name__}); start the local one with `trackflow stack up`, or "
                "unset kafka.schema_registry.url to write single-object Avro") from None
        if response.status_code == 404:
            return None
        if response.status_code in (401, 403):
            raise SchemaRegistryUnavailable(
                "kafka.schema_registry.username", f"the schema registry at {where} refused "
                f"the login (HTTP {response.status_code}); check "
                "TRACKFLOW_SCHEMA_REGISTRY_USERNAME and TRACKFLOW_SCHEMA_REGISTRY_PASSWORD")
        if response.status_code >= 300:
            raise SchemaRegistryUnavailable(
                "kafka.schema_registry.url", f"the schema registry at {where} answered "
                f"{method} {path} with HTTP {response.status_code}: {response.text[:300]}")
        try:
            return response.json()
        except ValueError:
            raise SchemaRegistryUnavailable(
                "kafka.schema_registry.url", f"{where} answered {path} with something that is "
                "not JSON: is it the registry's Confluent-compatible API (Apicurio: "
                "/apis/ccompat/v7)?") from None

    async def register(self, subjects: Mapping[str, str]) -> WireFormat:
        """Register the latest version of each record ``subjects`` names (subject -> record
        name) and set the subject's compatibility level; the wire format to write with."""
        ids: dict[bytes, int] = {}
        for name_of_subject, record in subjects.items():
            sv = self._schemas.latest(record)
            await self._call("PUT", f"config/{name_of_subject}",
                             {"compatibility": self.settings.compatibility})
            answer = await self._call("POST", f"subjects/{name_of_subject}/versions",
                                      {"schema": json.dumps(sv.schema), "schemaType": "AVRO"})
            schema_id = answer.get("id") if isinstance(answer, dict) else None
            if not isinstance(schema_id, int):
                raise SchemaRegistryUnavailable(
                    "kafka.schema_registry.url",
                    f"registering {record} under {name_of_subject} gave no id: {answer!r:.200}")
            ids[sv.fingerprint] = schema_id
            self.writers[schema_id] = sv
        return WireFormat(ids)

    async def writer(self, schema_id: int) -> SchemaVersion | None:
        """The writer schema of ``schema_id``, looked up once (None: the registry lacks it or
        it is no Avro record schema)."""
        if schema_id in self.writers:
            return self.writers[schema_id]
        pending = self._lookups.get(schema_id)
        if pending is None:  # one request per id, however many records wait for it
            pending = self._lookups[schema_id] = asyncio.ensure_future(self._fetch(schema_id))
        try:
            return await asyncio.shield(pending)
        finally:
            if pending.done():
                self._lookups.pop(schema_id, None)

    async def _fetch(self, schema_id: int) -> SchemaVersion | None:
        answer = await self._call("GET", f"schemas/ids/{schema_id}")
        found: SchemaVersion | None = None
        if isinstance(answer, dict) and answer.get("schemaType", "AVRO") == "AVRO":
            try:
                found = self._schemas.adopt(json.loads(answer.get("schema", "")))
            except ValueError:
                found = None
        self.writers[schema_id] = found
        return found

    async def prepare(self, data: bytes | None) -> None:
        """Look up the writer of a Confluent-framed ``data`` if its id is new (no-op for any
        other value); :meth:`writers` then has it for a synchronous decode."""
        schema_id = confluent_schema_id(data)
        if schema_id is not None and schema_id not in self.writers:
            await self.writer(schema_id)

    def know(self, wire: WireFormat) -> None:
        """Take the ids of ``wire`` (registered by this process) as looked up."""
        for fp, schema_id in wire.ids.items():
            sv = self._schemas.by_fingerprint(fp)
            if sv is not None:
                self.writers[schema_id] = sv


def pipeline_subjects(kafka: KafkaSettings) -> dict[str, str]:
    """The subjects of the records the pipeline's topics carry (subject -> record name)."""
    return {subject(kafka.raw_topic): "RawTrack", subject(kafka.enriched_topic): "EnrichedTrack"}


async def register_schemas(kafka: KafkaSettings, subjects: Mapping[str, str] | None = None
                           ) -> WireFormat:
    """Register ``subjects`` (by default the pipeline's) in ``kafka``'s registry; the wire
    format to write with (single-object Avro without a registry)."""
    if kafka.schema_registry.url is None:
        return SINGLE_OBJECT
    client = SchemaRegistryClient(kafka.schema_registry)
    try:
        return await client.register(pipeline_subjects(kafka) if subjects is None else subjects)
    finally:
        await client.aclose()
