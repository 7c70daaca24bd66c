"""No credential ever shows in a log record, an exception message or a repr.

Every client runs through its successes and every error path with logging at DEBUG (httpx's own
request lines included); then every captured record, exception and repr is searched for the
secret values and for the Authorization header values that carry them.
"""

from __future__ import annotations

import base64
import logging
from typing import Any

import httpx
import pytest

from tests.unit.fixtures.providers.helpers import Handler, Router, fail, load, reply
from trackflow.providers.base import TrackQuery
from trackflow.providers.deezer import DeezerClient
from trackflow.providers.discogs import DiscogsClient
from trackflow.providers.lastfm import LastfmClient
from trackflow.providers.musicbrainz import MusicBrainzClient
from trackflow.providers.registry import build_providers
from trackflow.providers.spotify import SpotifyClient

SPOTIFY_ID = "spotify-client-id-7f3a"
SPOTIFY_SECRET = "spotify-secret-Q9x2LmZ"
ACCESS_TOKEN = "BQDaccess-token-v8Hk1"
LASTFM_KEY = "lastfm-key-4d5e6f7a8b"
DISCOGS_TOKEN = "discogs-token-ZyXw9876"
BASIC = base64.b64encode(f"{SPOTIFY_ID}:{SPOTIFY_SECRET}".encode()).decode()
SECRETS = [
    SPOTIFY_SECRET,
    ACCESS_TOKEN,
    LASTFM_KEY,
    DISCOGS_TOKEN,
    BASIC,
    f"Bearer {ACCESS_TOKEN}",
    f"Discogs token={DISCOGS_TOKEN}",
]

ERRORS: list[Handler] = [
    reply(500, {"error": "boom"}),
    reply(502, None),
    reply(503, {"error": "Your requests are exceeding the allowable rate limit"}),
    reply(429, {"message": "slow down"}, {"Retry-After": "3"}),
    reply(401, {"error": {"status": 401, "message": "The access token expired"}}),
    reply(403, {"error": {"status": 403}}),
    reply(404, {"error": "Not Found"}),
    reply(400, {"error": "bad"}),
    fail(httpx.ReadTimeout),
    fail(httpx.ConnectError),
    fail(httpx.RemoteProtocolError),
]


def token(request: httpx.Request) -> httpx.Response:
    return httpx.Response(
        200, json={"access_token": ACCESS_TOKEN, "token_type": "Bearer", "expires_in": 3600}
    )


def spotify(routes: dict[str, Any], *, features: bool = True) -> tuple[SpotifyClient, Router]:
    router = Router(routes)
    return SpotifyClient(
        client_id=SPOTIFY_ID,
        client_secret=SPOTIFY_SECRET,
        base_url="https://sp.test/v1",
        accounts_url="https://acc.test",
        transport=router.transport,
        audio_features=features,
    ), router


def scenarios() -> list[tuple[str, Any, TrackQuery]]:
    """(label, client, query) for every success and error path of every client."""
    q = TrackQuery(
        "Daft Punk", 'AND (Remix) "Edit" OR artist:x', isrc="GBDUW0000059", duration_ms=224000
    )
    out: list[tuple[str, Any, TrackQuery]] = []

    def mb(h: Handler) -> MusicBrainzClient:
        return MusicBrainzClient(
            contact="c", base_url="https://mb.test/ws/2", transport=Router({"/": h}).transport
        )

    def dz(h: Handler) -> DeezerClient:
        return DeezerClient(base_url="https://dz.test", transport=Router({"/": h}).transport)

    def lf(h: Handler) -> LastfmClient:
        return LastfmClient(
            api_key=LASTFM_KEY,
            base_url="https://lf.test/2.0/",
            transport=Router({"/": h}).transport,
        )

    def dg(h: Handler) -> DiscogsClient:
        return DiscogsClient(
            token=DISCOGS_TOKEN,
            contact="c",
            base_url="https://dg.test",
            transport=Router({"/": h}).transport,
        )

    out.append(("mb ok", mb(reply(200, load("musicbrainz_isrc"))), q))
    out.append(("dz ok", dz(reply(200, load("deezer_track_isrc"))), q))
    out.append(("lf ok", lf(reply(200, load("lastfm_track_getinfo"))), q))
    out.append(("dg ok", dg(reply(200, load("discogs_search"))), q))
    out.append(
        (
            "sp ok",
            spotify(
                {
                    "/api/token": token,
                    "/v1/search": reply(200, load("spotify_search")),
                    "/v1/audio-features/": reply(200, load("spotify_audio_features")),
                }
            )[0],
            q,
        )
    )
    for i, h in enumerate(ERRORS):
        out += [
            (f"mb err{i}", mb(h), q),
            (f"dz err{i}", dz(h), q),
            (f"lf err{i}", lf(h), q),
            (f"dg err{i}", dg(h), q),
        ]
        out.append((f"sp search err{i}", spotify({"/api/token": token, "/v1/search": h})[0], q))
        out.append((f"sp token err{i}", spotify({"/api/token": h})[0], q))
        out.append(
            (
                f"sp features err{i}",
                spotify(
                    {
                        "/api/token": token,
                        "/v1/search": reply(200, load("spotify_search")),
                        "/v1/audio-features/": h,
                    }
                )[0],
                q,
            )
        )
    for body in (
        load("deezer_error_quota"),
        load("deezer_error_nodata"),
        {"error": {"type": "OAuthException", "message": "token", "code": 300}},
    ):
        out.append(("dz body", dz(reply(200, body)), q))
    for code in (6, 8, 10, 11, 16, 26, 29, 99):
        out.append((f"lf {code}", lf(reply(200, {"error": code, "message": f"error {code}"})), q))
        out.append(
            (f"lf {code} 403", lf(reply(403, {"error": code, "message": f"error {code}"})), q)
        )
    out.append(
        (
            "sp bad client",
            spotify(
                {
                    "/api/token": reply(
                        400, {"error": "invalid_client", "error_description": "Invalid client"}
                    )
                }
            )[0],
            q,
        )
    )
    return out


def assert_clean(where: str, text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"secret {secret[:6]}... leaked in {where}: {text[:300]}"


def exception_texts(exc: BaseException) -> list[str]:
    texts: list[str] = []
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        texts += [str(cur), repr(cur), repr(cur.args)]
        cur = cur.__cause__ or cur.__context__
    return texts


async def run_all(caplog: pytest.LogCaptureFixture, jobs: list[tuple[str, Any, TrackQuery]]) -> int:
    errors = 0
    with caplog.at_level(logging.DEBUG):
        for label, client, query in jobs:
            try:
                result = await client.lookup(query)
                assert_clean(f"{label} result", repr(result))
            except Exception as exc:  # every error path is a test subject here
                errors += 1
                for text in exception_texts(exc):
                    assert_clean(f"{label} exception", text)
            assert_clean(f"{label} repr", repr(client) + str(client))
            await client.aclose()
    for record in caplog.records:
        assert_clean(f"log record {record.name}", record.getMessage())
        assert_clean(f"log record {record.name} args", repr(record.args))
    assert_clean("formatted log", caplog.text)
    return errors


async def test_no_secret_in_logs_exceptions_or_reprs(caplog: pytest.LogCaptureFixture) -> None:
    jobs = scenarios()
    errors = await run_all(caplog, jobs)
    assert errors > 50, f"expected the error paths to raise, only {errors} did"
    assert any(r.name == "httpx" for r in caplog.records), (
        "httpx's request log lines must be checked too"
    )


async def test_spotify_401_refresh_path_is_clean(caplog: pytest.LogCaptureFixture) -> None:
    calls = 0

    def first_401(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls == 1:
            return httpx.Response(
                401, json={"error": {"status": 401, "message": "The access token expired"}}
            )
        return httpx.Response(200, json=load("spotify_search"))

    client, _ = spotify({"/api/token": token, "/v1/search": first_401})
    await run_all(caplog, [("sp 401 refresh", client, TrackQuery("a", "b"))])
    assert calls == 2


async def test_registry_log_lines_and_reprs_are_clean(caplog: pytest.LogCaptureFixture) -> None:
    env = {
        "TRACKFLOW_SPOTIFY_CLIENT_ID": SPOTIFY_ID,
        "TRACKFLOW_SPOTIFY_CLIENT_SECRET": SPOTIFY_SECRET,
        "TRACKFLOW_DISCOGS_TOKEN": DISCOGS_TOKEN,
    }
    with caplog.at_level(logging.DEBUG):
        providers = build_providers(env)
    for p in providers.values():
        assert_clean("registry repr", repr(p))
        await p.aclose()
    assert_clean("registry logs", caplog.text)
    assert "TRACKFLOW_LASTFM_API_KEY" in caplog.text


KAFKA_PASSWORD = "kafka-sasl-pw-Hq7e2Rw"
REDIS_PASSWORD = "redis-acl-pw-Lm4tYx"


async def test_kafka_and_redis_credentials_stay_out_of_logs_errors_and_reprs(
        caplog: pytest.LogCaptureFixture, tmp_path: Any) -> None:
    """The SASL login through settings, every client's kwargs summary, the Faust app, a failed
    start-up against a broker that is not there, and the secure stack's records."""
    import socket

    from trackflow.providers.urls import mask_url
    from trackflow.streams.app import create_app
    from trackflow.streams.kafka_probe import security_problem
    from trackflow.streams.kafka_security import client_security
    from trackflow.streams.settings import load_settings
    from trackflow.streams.stack.config import Ports, SecureInfo, StackInfo
    from trackflow.streams.topics import KafkaUnavailable, ensure_topics

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    redis_url = f"rediss://trackflow:{REDIS_PASSWORD}@127.0.0.1:{closed}/0"
    env = {"KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{closed}", "REDIS_URL": redis_url,
           "TRACKFLOW_LIMITER__REDIS_URL": redis_url.replace("/0", "/1"),
           "TRACKFLOW_KAFKA__SECURITY__PROTOCOL": "SASL_PLAINTEXT",
           "TRACKFLOW_KAFKA__SECURITY__SASL_MECHANISM": "SCRAM-SHA-256",
           "TRACKFLOW_KAFKA_SASL_USERNAME": "svc", "TRACKFLOW_KAFKA_SASL_PASSWORD": KAFKA_PASSWORD,
           "TRACKFLOW_WORKER__DATA_DIR": str(tmp_path)}
    shown: list[str] = []
    with caplog.at_level(logging.DEBUG):
        settings = load_settings(env=env)
        sec = client_security(settings.kafka.security)
        assert settings.limiter.redis_url is not None
        shown += [repr(settings), repr(settings.limiter), repr(sec), sec.describe(),
                  repr(sec.faust_credentials()), mask_url(settings.redis_url),
                  mask_url(settings.limiter.redis_url)]
        import os
        saved = dict(os.environ)
        os.environ.update(env)
        try:
            app = create_app(settings)
            shown += [repr(app), repr(app.conf.broker_credentials)]
            with pytest.raises(KafkaUnavailable) as err:
                await ensure_topics(settings.kafka)
            shown += [str(err.value), repr(err.value)]
            shown.append(str(await security_problem(settings.kafka)))
        finally:
            os.environ.clear()
            os.environ.update(saved)
        info = StackInfo("127.0.0.1:1", redis_url, tmp_path, Ports(1, 2, 3, 4), 10, 11, (),
                         SecureInfo(tmp_path / "ca.pem", "trackflow", KAFKA_PASSWORD))
        shown.append(repr(info))
    shown += [caplog.text, *(r.getMessage() for r in caplog.records)]
    for text in shown:
        assert KAFKA_PASSWORD not in text, f"the SASL password leaked into: {text[:300]}"
        assert REDIS_PASSWORD not in text, f"the Redis password leaked into: {text[:300]}"
