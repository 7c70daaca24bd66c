"""The schema registry client against the registry's REST API as httpx.MockTransport answers it:
subjects and compatibility set on register, an id looked up once however many records ask, the
login sent and never shown, and clear errors when the registry is away or refuses."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import httpx
import pytest

from trackflow.providers.errors import ConfigError
from trackflow.schemas import codec
from trackflow.schemas.registry import default_registry
from trackflow.streams.schema_registry import SchemaRegistryClient, SchemaRegistryUnavailable
from trackflow.streams.settings import SchemaRegistrySettings, load_settings

URL = "http://127.0.0.1:9/apis/ccompat/v7"


class FakeRegistry:
    """The Confluent-compatible API's few calls, kept in memory."""

    def __init__(self, *, login: tuple[str, str] | None = None) -> None:
        self.schemas: dict[int, str] = {}
        self.config: dict[str, str] = {}
        self.calls: list[str] = []
        self.login = login

    def handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path.removeprefix("/apis/ccompat/v7/")
        self.calls.append(f"{request.method} {path}")
        if self.login is not None:
            expected = "Basic " + base64.b64encode(":".join(self.login).encode()).decode()
            if request.headers.get("authorization") != expected:
                return httpx.Response(401, json={"error_code": 401})
        if request.method == "PUT" and path.startswith("config/"):
            self.config[path.removeprefix("config/")] = json.loads(request.content)[
                "compatibility"]
            return httpx.Response(200, json={"compatibility": "BACKWARD"})
        if request.method == "POST" and path.endswith("/versions"):
            schema = json.loads(request.content)["schema"]
            for schema_id, known in self.schemas.items():
                if known == schema:
                    return httpx.Response(200, json={"id": schema_id})
            schema_id = len(self.schemas) + 1
            self.schemas[schema_id] = schema
            return httpx.Response(200, json={"id": schema_id})
        if request.method == "GET" and path.startswith("schemas/ids/"):
            found = self.schemas.get(int(path.rsplit("/", 1)[1]))
            if found is None:
                return httpx.Response(404, json={"error_code": 40403})
            return httpx.Response(200, json={"schema": found})
        return httpx.Response(404)


def client(fake: FakeRegistry, **settings: Any) -> SchemaRegistryClient:
    return SchemaRegistryClient(SchemaRegistrySettings(url=URL, **settings),
                                transport=httpx.MockTransport(fake.handle))


async def test_register_sets_the_subjects_and_their_compatibility_and_gives_the_wire_format(
        ) -> None:
    fake = FakeRegistry()
    registry = client(fake)
    wire = await registry.register({"tracks.raw-value": "RawTrack",
                                    "tracks.enriched-value": "EnrichedTrack"})
    assert fake.config == {"tracks.raw-value": "BACKWARD", "tracks.enriched-value": "BACKWARD"}
    raw = default_registry().latest("RawTrack")
    assert wire.ids == {raw.fingerprint: 1,
                        default_registry().latest("EnrichedTrack").fingerprint: 2}
    assert json.loads(fake.schemas[1]) == raw.schema
    # A second writer of the same schemas gets the same ids.
    again = await client(fake).register({"tracks.raw-value": "RawTrack"})
    assert again.ids == {raw.fingerprint: 1}
    await registry.aclose()


async def test_an_id_is_looked_up_once_however_many_records_ask() -> None:
    fake = FakeRegistry()
    writer = client(fake)
    wire = await writer.register({"tracks.raw-value": "RawTrack"})
    record = {"track_id": "t1", "artist": "A", "title": "T", "isrc": None, "duration_ms": None,
              "album": None, "spotify_id": None, "source": None, "source_ref": None,
              "observed_at": None, "attributes": {}}
    data = codec.encode("RawTrack", record, wire=wire)
    reader = client(fake)
    await asyncio.gather(*(reader.prepare(data) for _ in range(20)))
    decoded = [codec.decode_raw_track(data, writers=reader.writers) for _ in range(20)]
    assert all(d == record for d in decoded)
    assert fake.calls.count("GET schemas/ids/1") == 1
    unknown = b"\x00" + (99).to_bytes(4, "big") + b"\x00"
    for _ in range(3):
        await reader.prepare(unknown)
        with pytest.raises(codec.DecodeError) as err:
            codec.decode_raw_track(unknown, writers=reader.writers)
        assert err.value.reason == "unknown_schema_id"
    assert fake.calls.count("GET schemas/ids/99") == 1, "an unknown id is asked once, too"


async def test_the_login_is_sent_and_a_refused_one_names_the_variables() -> None:
    fake = FakeRegistry(login=("svc", "pw-9Xq"))
    from pydantic import SecretStr
    ok = client(fake, username="svc", password=SecretStr("pw-9Xq"))
    await ok.register({"tracks.raw-value": "RawTrack"})
    assert "pw-9Xq" not in repr(ok) and "pw-9Xq" not in repr(ok.settings)
    with pytest.raises(SchemaRegistryUnavailable) as err:
        await client(fake).register({"tracks.raw-value": "RawTrack"})
    assert "TRACKFLOW_SCHEMA_REGISTRY_PASSWORD" in str(err.value)


async def test_a_registry_that_does_not_answer_says_which_and_how_to_start_one() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    registry = SchemaRegistryClient(SchemaRegistrySettings(url=URL),
                                    transport=httpx.MockTransport(refuse))
    with pytest.raises(SchemaRegistryUnavailable) as err:
        await registry.register({"tracks.raw-value": "RawTrack"})
    text = str(err.value)
    assert "kafka.schema_registry.url" in text and "127.0.0.1:9" in text
    assert "trackflow stack up" in text


def test_settings_come_from_the_environment_and_the_login_never_from_the_file(
        tmp_path: Any) -> None:
    env = {"SCHEMA_REGISTRY_URL": URL, "TRACKFLOW_SCHEMA_REGISTRY_USERNAME": "svc",
           "TRACKFLOW_SCHEMA_REGISTRY_PASSWORD": "pw-9Xq"}
    registry = load_settings(env=env).kafka.schema_registry
    assert registry.url == URL and registry.username == "svc"
    assert registry.password is not None and registry.password.get_secret_value() == "pw-9Xq"
    assert "pw-9Xq" not in repr(load_settings(env=env))
    config = tmp_path / "c.toml"
    config.write_text('[kafka.schema_registry]\nurl = "http://x:1"\npassword = "p"\n')
    with pytest.raises(ConfigError, match=r"kafka\.schema_registry\.password"):
        load_settings(config, env={})
    with pytest.raises(ConfigError, match="url must start with http"):
        load_settings(env={"TRACKFLOW_KAFKA__SCHEMA_REGISTRY__URL": "localhost:8081"})
