"""Query parsers: Spotify/Deezer field filters and the MusicBrainz Lucene subset."""

from __future__ import annotations

from trackflow.providers.simulator.queries import parse_filters, parse_lucene

KNOWN = frozenset({"artist", "track", "isrc", "album", "year"})


def test_spotify_filters_with_quoted_and_bare_values() -> None:
    filters, free = parse_filters('artist:"Daft Punk" track:"One More Time" extra words', KNOWN)
    assert filters == {"artist": "Daft Punk", "track": "One More Time"}
    assert free == "extra words"
    filters, free = parse_filters("isrc:GBDUW0000059", KNOWN)
    assert filters == {"isrc": "GBDUW0000059"} and free == ""


def test_filter_values_keep_escaped_quotes() -> None:
    filters, _ = parse_filters(r'track:"Say \"Hi\"" artist:deadmau5', KNOWN)
    assert filters == {"track": 'Say "Hi"', "artist": "deadmau5"}


def test_lucene_fields_and_operators() -> None:
    q = parse_lucene('recording:"Strobe" AND artist:"deadmau5"')
    assert q.fields == {"recording": ["Strobe"], "artist": ["deadmau5"]}
    assert q.free == []


def test_lucene_escaped_specials_and_ranges() -> None:
    q = parse_lucene(
        r'recording:"Part II\: The Return \(Live\)" AND artist:AC\/DC AND dur:[200000 TO 240000]'
    )
    assert q.text("recording") == "Part II: The Return (Live)"
    assert q.text("artist") == "AC/DC"
    assert q.ranges == {"dur": ("200000", "240000")}


def test_lucene_isrc_bare_terms_and_negation() -> None:
    q = parse_lucene("isrc:USUM71703861 strobe NOT live (remix)")
    assert q.fields == {"isrc": ["USUM71703861"]}
    assert q.free == ["strobe", "remix"]
    assert q.excluded == ["live"]
