"""The providers as they really answer: every quirk of issue 13, one client at a time.

Fixtures (``fixtures/providers/quirks/``) are our own, shaped like answers recorded from the real
services; the clients get them through ``httpx.MockTransport``.
"""

from __future__ import annotations

import copy
from typing import Any

import httpx
import pytest

from tests.unit.fixtures.providers.helpers import Router, load, reply
from trackflow.providers.base import TrackQuery
from trackflow.providers.deezer import DeezerClient, parse_track
from trackflow.providers.discogs import DiscogsClient, clean_name
from trackflow.providers.errors import (
    CredentialsRejected,
    NotFound,
    PermanentError,
    TransientError,
)
from trackflow.providers.lastfm import LastfmClient, body_error
from trackflow.providers.matching import best_match
from trackflow.providers.musicbrainz import MusicBrainzClient
from trackflow.providers.spotify import SpotifyClient


def fixture(name: str) -> Any:
    return load(f"quirks/{name}")


# --- Deezer -------------------------------------------------------------------------------------


def deezer(router: Router) -> DeezerClient:
    return DeezerClient(base_url="https://deezer.test", transport=router.transport)


async def test_deezer_duet_credits_every_main_artist_not_only_the_first() -> None:
    router = Router({"/track/isrc:": reply(200, fixture("deezer_track_duet"))})
    (c,) = await deezer(router).lookup(TrackQuery("Lady Gaga & Bradley Cooper", "Shallow",
                                                  isrc="USUM71813192"))
    assert c.get("artist") == "Lady Gaga, Bradley Cooper", (
        "both main contributors, the featured one left out")
    q = TrackQuery("Bradley Cooper & Lady Gaga", "Shallow", duration_ms=215_000)
    assert best_match(q, [c]) is not None, "a credit naming the second main artist still matches"


async def test_deezer_search_items_get_the_full_credit_from_the_track_they_point_to() -> None:
    router = Router({"/search": reply(200, fixture("deezer_search_duet")),
                     "/track/908604612": reply(200, fixture("deezer_track_duet"))})
    (c,) = await deezer(router).lookup(TrackQuery("Lady Gaga", "Shallow"))
    assert c.get("artist") == "Lady Gaga, Bradley Cooper"
    assert c.get("isrc") == "USUM71813192" and c.get("bpm") == 96.0
    assert c.get("release_date") == "2018-10-05"


def test_deezer_search_item_without_release_date_contributors_isrc_or_bpm() -> None:
    item = fixture("deezer_search_duet")["data"][0]
    c = parse_track(item, via="search")
    assert c is not None
    assert c.get("artist") == "Lady Gaga", "a search item only knows its first main artist"
    for absent in ("release_date", "isrc", "bpm"):
        assert absent not in c.fields, f"{absent} must stay unknown, not be made up"


@pytest.mark.parametrize(("bpm", "expected"), [(96, 96.0), (123.4, 123.4), (0, None),
                                               (0.0, None), ("0", None)])
def test_deezer_bpm_is_a_number_often_an_integer_and_zero_is_unknown(
        bpm: Any, expected: float | None) -> None:
    track = copy.deepcopy(fixture("deezer_track_duet"))
    track["bpm"] = bpm
    c = parse_track(track, via="isrc")
    assert c is not None and c.get("bpm") == expected


@pytest.mark.parametrize("status", [401, 403, 429, 500, 502, 503, 504])
async def test_deezer_unexpected_refusals_are_transient(status: int) -> None:
    router = Router({"/track/": reply(status, None)})
    with pytest.raises(TransientError):
        await deezer(router).lookup(TrackQuery("x", "", isrc="USUM71813192"))


async def test_deezer_403_with_an_html_body_is_still_transient() -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        return httpx.Response(403, text="<html><body>403 Forbidden</body></html>")

    with pytest.raises(TransientError) as raised:
        await deezer(Router({"/track/": handle})).lookup(TrackQuery("x", "", isrc="USUM71813192"))
    assert not isinstance(raised.value, PermanentError)
    assert raised.value.rate_limited, "a 403 is Deezer throttling us: pause like a quota answer"


# --- Discogs ------------------------------------------------------------------------------------


def discogs(router: Router) -> DiscogsClient:
    return DiscogsClient(token="dg-tok", contact="ops@example.org",
                         base_url="https://discogs.test", transport=router.transport)


async def test_discogs_markers_placeholders_and_old_shapes() -> None:
    # No X-Discogs-Ratelimit* headers at all on this answer.
    router = Router({"/database/search": reply(200, fixture("discogs_search_markers"))})
    client = discogs(router)
    found = await client.lookup(TrackQuery("The Knife", "Silent Shout"))
    assert client.ratelimit_remaining is None
    ids = [c.get("discogs_release_id") for c in found]
    assert "4120553" not in ids, "a master is not a release"
    knife, royksopp, prince = found
    assert knife.get("artist") == "The Knife" and knife.get("album") == "Silent Shout"
    assert knife.get("label") == "Rabid Records"
    assert knife.get("genres") == ["Electronic", "Synth-pop", "Electro"]
    assert royksopp.get("artist") == "Röyksopp & Robyn"
    assert "label" not in royksopp.fields, "Not On Label is Discogs' placeholder for none"
    assert royksopp.get("genres") == ["Electronic"], "a plain-string genre still counts"
    assert "release_date" not in royksopp.fields, "no year: no date"
    assert prince.get("artist") == "Prince" and prince.get("label") == "Dogmatic Records"
    assert "release_date" not in prince.fields, 'year "" is unknown'


async def test_discogs_plain_string_label_in_older_answers() -> None:
    body = {"results": [{"id": 77, "type": "release", "title": "Daft Punk - Homework",
                         "year": "1997", "label": "Virgin (2)", "genre": ["Electronic"]}]}
    (c,) = await discogs(Router({"/database/search": reply(200, body)})).lookup(
        TrackQuery("Daft Punk", "Around the World"))
    assert c.get("label") == "Virgin"


@pytest.mark.parametrize(("shown", "clean"), [
    ("Röyksopp* & Robyn (2) ", "Röyksopp & Robyn"),
    ("Knife, The", "The Knife"),
    ("Beatles, The*", "The Beatles"),
    ("Prince (3)", "Prince"),
    ("Tyler, The Creator", "Tyler, The Creator"),
    ("Earth, Wind & Fire", "Earth, Wind & Fire"),
    ("  Daft   Punk ", "Daft Punk"),
])
def test_discogs_display_markers_are_stripped(shown: str, clean: str) -> None:
    assert clean_name(shown) == clean


async def test_discogs_cleaned_names_let_the_right_release_match() -> None:
    router = Router({"/database/search": reply(200, fixture("discogs_search_markers"))})
    found = await discogs(router).lookup(TrackQuery("The Knife", "Silent Shout"))
    with_title = [type(c)(c.provider, {**c.fields, "title": "Silent Shout"}, c.provider_score,
                          c.via) for c in found]
    match = best_match(TrackQuery("The Knife", "Silent Shout"), with_title)
    assert match is not None and match.candidate.get("discogs_release_id") == "662877"


async def test_discogs_401_rejects_our_credentials() -> None:
    router = Router({"/database/search": reply(401, {"message": "You must authenticate."})})
    with pytest.raises(CredentialsRejected):
        await discogs(router).lookup(TrackQuery("a", "b"))


# --- Last.fm ------------------------------------------------------------------------------------


def lastfm(router: Router) -> LastfmClient:
    return LastfmClient(api_key="lfm-key", base_url="https://lastfm.test/2.0/",
                        transport=router.transport, top_tags=False)


async def test_lastfm_missing_mbid_and_zero_duration_are_unknown() -> None:
    (c,) = await lastfm(Router({"/2.0/": reply(200, fixture("lastfm_getinfo_no_mbid"))})).lookup(
        TrackQuery("M83", "Midnight City"))
    assert "musicbrainz_recording_id" not in c.fields
    assert "duration_ms" not in c.fields, 'duration "0" means unknown'
    assert c.get("listeners") == 1183022 and c.get("tags") == ["electronic", "synthpop"]


@pytest.mark.parametrize("code", [10, 26])
async def test_lastfm_key_errors_come_with_403_and_reject_our_credentials(code: int) -> None:
    body = {**fixture("lastfm_error_10_403"), "error": code}
    with pytest.raises(CredentialsRejected) as raised:
        await lastfm(Router({"/2.0/": reply(403, body)})).lookup(TrackQuery("a", "b"))
    assert "lfm-key" not in str(raised.value)


async def test_lastfm_error_29_is_read_by_its_code_whatever_the_wording() -> None:
    router = Router({"/2.0/": reply(200, fixture("lastfm_error_29_new_wording"))})
    with pytest.raises(TransientError) as raised:
        await lastfm(router).lookup(TrackQuery("a", "b"))
    assert raised.value.rate_limited
    # The same text under another code means something else: the text is never read.
    assert isinstance(body_error({"error": 6, "message": "Rate limit exceeded", "links": []}),
                      NotFound)


# --- MusicBrainz --------------------------------------------------------------------------------


def musicbrainz(router: Router) -> MusicBrainzClient:
    return MusicBrainzClient(contact="ops@example.org", base_url="https://mb.test/ws/2",
                             transport=router.transport)


async def test_musicbrainz_single_credit_without_joinphrase_and_null_video() -> None:
    router = Router({"/ws/2/recording": reply(200, fixture("musicbrainz_search_no_joinphrase"))})
    (c,) = await musicbrainz(router).lookup(TrackQuery("Aphex Twin", "Windowlicker"))
    assert c.get("artist") == "Aphex Twin"
    assert c.get("isrc") == "GBBPW9900012" and c.get("duration_ms") == 366000


async def test_musicbrainz_503_rate_limit_is_too_fast_but_busy_is_only_transient() -> None:
    limited = {"error": "Your requests are exceeding the allowable rate limit. Please see "
                        "https://musicbrainz.org/doc/MusicBrainz_API/Rate_Limiting"}
    with pytest.raises(TransientError) as too_fast:
        await musicbrainz(Router({"/ws/2/recording": reply(503, limited)})).lookup(
            TrackQuery("a", "b"))
    assert too_fast.value.rate_limited
    busy = Router({"/ws/2/recording": reply(503, fixture("musicbrainz_503_busy"))})
    with pytest.raises(TransientError) as unavailable:
        await musicbrainz(busy).lookup(TrackQuery("a", "b"))
    assert not unavailable.value.rate_limited, "a busy service is not us going too fast"


# --- Spotify ------------------------------------------------------------------------------------


def spotify(router: Router) -> SpotifyClient:
    return SpotifyClient(client_id="cid", client_secret="csecret",
                         base_url="https://api.spotify.test/v1",
                         accounts_url="https://accounts.spotify.test",
                         transport=router.transport)


TOKEN = reply(200, {"access_token": "tok", "token_type": "Bearer", "expires_in": 3600})


async def test_spotify_older_track_without_album_release_date() -> None:
    router = Router({"/api/token": TOKEN,
                     "/v1/tracks/": reply(200, fixture("spotify_track_old"))})
    (c,) = await spotify(router).lookup(TrackQuery("The Killers", "Mr. Brightside",
                                                   spotify_id="3n3Ppam7vgaVa1iaRUc9Lp"))
    assert "release_date" not in c.fields and c.get("album") == "Hot Fuss"
    assert c.get("isrc") == "USIR20400274"


@pytest.mark.parametrize(("header", "expected"), [("0", None), ("7", 7.0), (None, None)])
async def test_spotify_429_retry_after_zero_is_no_hint(header: str | None,
                                                       expected: float | None) -> None:
    headers = {"Retry-After": header} if header is not None else None
    router = Router({"/api/token": TOKEN,
                     "/v1/search": reply(429, fixture("spotify_429"), headers=headers)})
    with pytest.raises(TransientError) as raised:
        await spotify(router).lookup(TrackQuery("a", "b"))
    assert raised.value.rate_limited
    assert raised.value.retry_after == expected, (
        "Retry-After: 0 must not let the gate resend at once: it is treated as no hint")


async def test_spotify_invalid_client_rejects_our_credentials() -> None:
    router = Router({"/api/token": reply(400, {"error": "invalid_client",
                                               "error_description": "Invalid client"})})
    with pytest.raises(CredentialsRejected) as raised:
        await spotify(router).lookup(TrackQuery("a", "b"))
    assert "csecret" not in str(raised.value)


# --- shared matching ----------------------------------------------------------------------------


def test_an_inverted_catalogue_name_matches_its_usual_form() -> None:
    from trackflow.providers.base import Candidate
    from trackflow.providers.normalize import normalize_artist, parse_artists

    assert normalize_artist("Killers, The") == normalize_artist("The Killers") == "killers"
    assert parse_artists("Killers, The").main == ("killers",), "one name, not two"
    assert normalize_artist("Tyler, The Creator") != normalize_artist("Tyler")
    c = Candidate("discogs", {"artist": "Killers, The", "title": "Mr. Brightside"})
    assert best_match(TrackQuery("The Killers", "Mr. Brightside"), [c]) is not None
