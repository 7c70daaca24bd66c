"""The generated catalog: seeded determinism, variety, identifiers and search ranking."""

from __future__ import annotations

import re
import unicodedata
from collections import defaultdict

from trackflow.providers.normalize import ISRC_PATTERN
from trackflow.providers.simulator.catalog import Catalog
from trackflow.providers.simulator.generate import generate_catalog


def _catalog() -> Catalog:
    return generate_catalog(3000, seed=7)


def test_same_seed_gives_the_same_catalog_and_another_seed_does_not() -> None:
    assert generate_catalog(500, seed=1).tracks == generate_catalog(500, seed=1).tracks
    assert generate_catalog(500, seed=1).tracks != generate_catalog(500, seed=2).tracks


def test_size_is_exact() -> None:
    for n in (1, 17, 250):
        assert len(generate_catalog(n, seed=3)) == n


def test_catalog_contains_the_cases_a_matcher_must_handle() -> None:
    tracks = _catalog().tracks
    titles = [t.title for t in tracks]
    artists = {t.artist for t in tracks}
    checks = {
        "leading The": any(a.startswith("The ") for a in artists),
        "accented name": any(re.search(r"[^\x00-\x7f]", a) for a in artists),
        "featured artist": any(" feat. " in a for a in artists),
        "remix": any(re.search(r"\(.+ Remix\)$", t) for t in titles),
        "radio edit": any(t.endswith(" - Radio Edit") for t in titles),
        "original mix": any(t.endswith("(Original Mix)") for t in titles),
        "live": any(t.endswith("(Live)") for t in titles),
        "unknown bpm": any(t.bpm == 0 for t in tracks),
        "known bpm": any(t.bpm > 0 for t in tracks),
        "single release": any(t.album_type == "single" for t in tracks),
        "year-only date": any(len(t.release_date) == 4 for t in tracks),
    }
    missing = [name for name, present in checks.items() if not present]
    assert not missing, f"generated catalog lacks: {missing}"


def test_covers_same_title_by_another_artist_with_their_own_isrc() -> None:
    by_title: dict[str, set[tuple[str, str]]] = defaultdict(set)
    for t in _catalog().tracks:
        by_title[t.title].add((t.artist.split(" feat. ")[0], t.isrc))
    assert any(len({artist for artist, _ in versions}) > 1 for versions in by_title.values()), (
        "expected at least one title recorded by two different artists"
    )


def test_isrcs_are_well_formed_and_identify_one_recording() -> None:
    catalog = _catalog()
    recordings: dict[str, set[tuple[str, str, int]]] = defaultdict(set)
    for t in catalog.tracks:
        assert ISRC_PATTERN.match(t.isrc), f"malformed ISRC {t.isrc!r}"
        recordings[t.isrc].add((t.artist, t.title, t.duration_ms))
    shared = [isrc for isrc, recs in recordings.items() if len(recs) > 1]
    assert not shared, f"ISRCs used by different recordings: {shared[:5]}"
    multi = [isrc for isrc in recordings if len(catalog.by_isrc(isrc)) > 1]
    assert multi, "expected some recording on several releases (single + album)"
    albums = {t.album for t in catalog.by_isrc(multi[0])}
    assert len(albums) > 1


def test_provider_ids_have_the_real_shapes_and_are_unique() -> None:
    tracks = _catalog().tracks
    uuid_re = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
    for t in tracks:
        assert re.fullmatch(r"[0-9A-Za-z]{22}", t.spotify_id)
        assert uuid_re.match(t.mbid)
        assert t.deezer_id > 0 and t.discogs_release_id > 0
    assert len({t.spotify_id for t in tracks}) == len(tracks)
    assert len({t.deezer_id for t in tracks}) == len(tracks)
    assert len({t.mbid for t in tracks}) == len({t.isrc for t in tracks})


def test_ids_are_stable_across_catalog_sizes() -> None:
    small, large = generate_catalog(100, seed=5), generate_catalog(400, seed=5)
    assert [t.spotify_id for t in small.tracks] == [t.spotify_id for t in large.tracks[:100]]


def test_lookups_by_each_provider_id() -> None:
    catalog = _catalog()
    t = catalog.tracks[42]
    assert catalog.by_spotify_id(t.spotify_id) == t
    assert catalog.by_deezer_id(t.deezer_id) == t
    assert t in catalog.by_isrc(t.isrc.lower())
    assert t in catalog.by_mbid(t.mbid)
    assert t in catalog.by_discogs_release(t.discogs_release_id)


def test_search_ranks_the_exact_row_first_then_distractors() -> None:
    catalog = _catalog()
    target = next(
        t
        for t in catalog.tracks
        if any(
            o.title.startswith(t.title + " (") or o.title.startswith(t.title + " - ")
            for o in catalog.tracks
            if o.isrc != t.isrc
        )
        and " feat. " not in t.artist
    )
    hits = catalog.search(title=target.title, artist=target.artist, limit=10)
    assert hits[0].track.title == target.title and hits[0].track.artist == target.artist
    assert hits[0].score == 1.0
    assert len(hits) > 1, "expected distractors after the exact match"
    distractors = [h for h in hits[1:] if h.track.isrc != target.isrc]
    assert any(target.title in h.track.title for h in distractors), (
        "expected a remix/edit/live version of the same title among the distractors"
    )
    scores = [h.score for h in hits]
    assert scores == sorted(scores, reverse=True)


def test_search_folds_accents_and_case() -> None:
    catalog = _catalog()
    target = next(t for t in catalog.tracks if re.search(r"[^\x00-\x7f]", t.artist))
    plain = "".join(
        c for c in unicodedata.normalize("NFKD", target.artist) if not unicodedata.combining(c)
    ).upper()
    hits = catalog.search(title=target.title, artist=plain, limit=5)
    assert any(h.track.artist == target.artist for h in hits)


def test_required_field_excludes_rows_without_any_shared_token() -> None:
    catalog = _catalog()
    target = catalog.tracks[10]
    hits = catalog.search(title=target.title, artist="zzqx nobody", require=["artist"])
    assert hits == []


def test_a_field_search_ranks_exactly_as_scoring_every_candidate() -> None:
    """The pruned field search (it stops once no remaining row can reach the top ``limit``)
    returns the same hits in the same order as scoring every candidate, ties included."""
    import random

    from trackflow.providers.simulator.search import SCORE_ALL_BELOW, tokens

    catalog = generate_catalog(6000, seed=11)
    index = catalog.index
    rng = random.Random(5)
    pruned = 0
    for t in rng.sample(catalog.tracks, 150):
        for fields, require in (
            ({"title": t.title, "artist": t.artist}, ()),
            ({"title": t.title.split(" (")[0], "artist": t.artist.split(" & ")[0],
              "album": t.album}, ()),
            ({"title": t.title, "artist": t.artist}, ("title", "artist")),
            ({"title": "The " + t.title.split()[0]}, ()),  # a stopword and one common word
            ({"artist": t.artist, "album": t.album}, ("artist",)),
        ):
            query = {name: tokens(text) for name, text in fields.items() if tokens(text)}
            candidates = index._candidates(query, require)
            pruned += len(candidates) > SCORE_ALL_BELOW
            for limit in (1, 5, 55):
                expected = index._score_all(query, candidates, limit)
                assert index.search(**fields, require=require, limit=limit) == expected, \
                    (fields, require, limit)
    assert pruned > 300, "the queries must exercise the pruned path, not only the small one"


def test_a_fuzzy_term_stands_for_the_title_words_within_its_edits() -> None:
    catalog = _catalog()
    target = next(t for t in catalog.tracks
                  if len(t.title.split()[0]) >= 6 and t.title.split()[0].isalpha())
    word = target.title.split()[0].lower()
    swapped = word[0] + word[2] + word[1] + word[3:]  # two letters swapped: one edit
    assert word in catalog.index.fuzzy("title", swapped, 1)
    assert word not in catalog.index.fuzzy("title", swapped, 0)
    assert catalog.index.fuzzy("title", swapped, 5) == catalog.index.fuzzy("title", swapped, 2), \
        "Lucene allows 2 edits at most"
    # Without a fuzzy term the words match exactly (Spotify, Deezer, a plain MusicBrainz term).
    assert not [h for h in catalog.search(title=swapped, artist=target.artist,
                                          require=["title", "artist"])
                if h.track.isrc == target.isrc]
