"""Matching: a wrong match is worse than no match."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from trackflow.providers.base import Candidate, TrackQuery
from trackflow.providers.matching import THRESHOLD, best_match, score, similarity, typo_edits
from trackflow.providers.titles import parse_title


def cand(
    artist: str,
    title: str,
    *,
    provider_score: float | None = None,
    via: str = "search",
    **fields: Any,
) -> Candidate:
    return Candidate("test", {"artist": artist, "title": title, **fields}, provider_score, via)


def accepted(query: TrackQuery, candidate: Candidate) -> bool:
    return score(query, candidate).total >= THRESHOLD


SAME = [
    (TrackQuery("Faithless", "We Come 1 - Radio Edit"), cand("Faithless", "We Come 1")),
    (TrackQuery("Faithless", "We Come 1"), cand("Faithless", "We Come 1 (Original Mix)")),
    (TrackQuery("The Killers", "Mr. Brightside"), cand("Killers", "Mr Brightside")),
    (TrackQuery("Beyoncé", "Halo"), cand("Beyonce", "Halo")),
    (TrackQuery("BEYONCE", "HALO"), cand("Beyoncé", "Halo")),
    (
        TrackQuery("Calvin Harris feat. Rihanna", "This Is What You Came For"),
        cand("Calvin Harris", "This Is What You Came For (feat. Rihanna)"),
    ),
    (
        TrackQuery("Calvin Harris", "This Is What You Came For (feat. Rihanna)"),
        cand("Calvin Harris, Rihanna", "This Is What You Came For"),
    ),
    (
        TrackQuery("Calvin Harris", "This Is What You Came For"),
        cand("Calvin Harris", "This Is What You Came For (feat. Rihanna)"),
    ),
    (
        TrackQuery("", "Calvin Harris - This Is What You Came For"),
        cand("Calvin Harris", "This Is What You Came For"),
    ),
    (TrackQuery("Simon and Garfunkel", "The Boxer"), cand("Simon & Garfunkel", "The Boxer")),
    (
        TrackQuery("deadmau5", "Strobe (Eric Prydz Remix)"),
        cand("deadmau5", "Strobe - Eric Prydz Remix"),
    ),
    (
        TrackQuery("Sidney Samson", "Rivresdie", duration_ms=319_000),
        cand("Sidney Samson", "Riverside", duration_ms=320_348),
    ),
    (TrackQuery("Macklemore", "Thrift Shop"), cand("Macklemore & Ryan Lewis", "Thrift Shop")),
    (TrackQuery("Shaboozey", "A Bar Song"), cand("Shaboozey", "A Bar Song (Tipsy)")),
]


@pytest.mark.parametrize(("query", "candidate"), SAME)
def test_same_recording_matches(query: TrackQuery, candidate: Candidate) -> None:
    result = score(query, candidate)
    assert result.total >= THRESHOLD, (
        f"expected {query.artist!r} / {query.title!r} to match {candidate.fields} "
        f"(score {result.total} below {THRESHOLD}; {result})"
    )


DIFFERENT = [
    (TrackQuery("deadmau5", "Strobe"), cand("deadmau5", "Strobe (Eric Prydz Remix)")),
    (TrackQuery("deadmau5", "Strobe (Eric Prydz Remix)"), cand("deadmau5", "Strobe")),
    (
        TrackQuery("deadmau5", "Strobe (Eric Prydz Remix)"),
        cand("deadmau5", "Strobe (Tiesto Remix)"),
    ),
    (TrackQuery("deadmau5", "Strobe - Remix"), cand("deadmau5", "Strobe (Nirvana Remix)")),
    (TrackQuery("deadmau5", "Strobe"), cand("deadmau5", "Strobe (Eric Prydz Edit)")),
    (TrackQuery("The Killers", "Mr. Brightside"), cand("The Killers", "Mr. Brightside - Live")),
    (TrackQuery("The Killers", "Mr. Brightside - Live"), cand("The Killers", "Mr. Brightside")),
    (
        TrackQuery("The Killers", "Mr. Brightside"),
        cand("The Killers", "Mr. Brightside (Live at Wembley)"),
    ),
    (TrackQuery("Adele", "Hello"), cand("Adele", "Hello (Acoustic)")),
    (TrackQuery("Adele", "Hello"), cand("Boyce Avenue", "Hello")),
    (TrackQuery("Adele", "Hello"), cand("MUSIC LAB JPN", "Hello - Cover")),
    (TrackQuery("Bon Jovi", "It's My Life"), cand("Jon Bon Jovi", "It's My Life")),
    (TrackQuery("Drake", "Hotline Bling"), cand("Drake Bell", "Hotline Bling")),
    (TrackQuery("Selena Gomez", "Wolves"), cand("Selena Gomez & The Scene", "Wolves")),
    (TrackQuery("Drake", "Love"), cand("Drake", "Love Me")),
    (TrackQuery("Faithless", "We Come 1"), cand("Faithless", "We Come 2")),
    (TrackQuery("PinkPantheress", "Boy's a Liar"), cand("PinkPantheress", "Boy's a Liar (Part 2)")),
    (TrackQuery("RAYE", "Escapism."), cand("RAYE", "Escapism. - Sped Up")),
    (TrackQuery("", "Halo"), cand("Beyoncé", "Halo")),
]


@pytest.mark.parametrize(("query", "candidate"), DIFFERENT)
def test_different_recording_does_not_match(query: TrackQuery, candidate: Candidate) -> None:
    result = score(query, candidate)
    assert result.total < THRESHOLD, (
        f"expected {query.artist!r} / {query.title!r} NOT to match {candidate.fields} "
        f"(score {result.total} reaches {THRESHOLD}; {result})"
    )


def test_bon_jovi_is_not_matched_on_artist_alone() -> None:
    result = score(
        TrackQuery("Bon Jovi", "Livin' on a Prayer"), cand("Jon Bon Jovi", "Livin' on a Prayer")
    )
    assert result.title == 1.0, "expected the titles to agree fully"
    assert result.artist < 0.75, (
        f"expected Bon Jovi and Jon Bon Jovi to differ, artist {result.artist}"
    )


def test_same_isrc_dominates_noisy_text() -> None:
    query = TrackQuery("Tarvis Scot", "K-PPOP", isrc="USSM12305652")
    result = score(query, cand("Travis Scott", "K-POP", isrc="USSM12305652"))
    assert result.identity is True, "expected the ISRCs to be recognised as equal"
    assert result.total >= 0.95, (
        f"expected a very high confidence for the same ISRC, got {result.total}"
    )


def test_isrc_lookup_counts_as_agreement() -> None:
    query = TrackQuery("Travis Scott", "K-POP", isrc="USSM12305652")
    result = score(query, cand("Travis Scott", "K-POP", via="isrc"))
    assert result.identity is True, "expected a candidate found by ISRC lookup to agree on identity"


def test_same_isrc_with_unrelated_text_is_refused() -> None:
    query = TrackQuery("Adele", "Hello", isrc="GBBKS1500214")
    result = score(query, cand("Metallica", "Enter Sandman", isrc="GBBKS1500214"))
    assert result.total < THRESHOLD, (
        "expected a shared ISRC with nothing else in common to be refused"
    )


def test_different_isrc_is_strong_evidence_against() -> None:
    query = TrackQuery("Adele", "Hello", isrc="GBBKS1500214", duration_ms=295_000)
    result = score(query, cand("Adele", "Hello", isrc="GBBKS9999999", duration_ms=295_000))
    assert result.identity is False, "expected the ISRCs to be recognised as different"
    assert result.total < THRESHOLD, (
        f"expected different ISRCs to refuse the match, got {result.total}"
    )


@pytest.mark.parametrize(
    ("candidate_ms", "expected"),
    [(200_000, 1.0), (209_000, 1.0), (220_000, 0.5), (230_000, 0.0), (400_000, 0.0)],
)
def test_duration_grace_and_penalty(candidate_ms: int, expected: float) -> None:
    result = score(
        TrackQuery("Adele", "Hello", duration_ms=200_000),
        cand("Adele", "Hello", duration_ms=candidate_ms),
    )
    assert result.duration == pytest.approx(expected), (
        f"expected duration agreement {expected} for {candidate_ms - 200_000} ms off, "
        f"got {result.duration}"
    )


def test_far_off_duration_refuses_a_perfect_text_match() -> None:
    result = score(
        TrackQuery("Adele", "Hello", duration_ms=200_000),
        cand("Adele", "Hello", duration_ms=420_000),
    )
    assert result.total < THRESHOLD, "expected a duration minutes off to refuse the match"


def test_missing_duration_is_neutral() -> None:
    with_none = score(TrackQuery("Adele", "Hello"), cand("Adele", "Hello", duration_ms=295_000))
    on_both = score(TrackQuery("Adele", "Hello", duration_ms=295_000), cand("Adele", "Hello"))
    assert with_none.duration is None and on_both.duration is None, "expected no duration component"
    assert with_none.total == 1.0 and on_both.total == 1.0, (
        "expected a missing duration not to cost anything"
    )


def test_hostile_title_does_not_crash() -> None:
    query = TrackQuery("x", 'AND (Remix) "Edit" OR artist:x')
    assert best_match(query, [cand("x", "and"), cand("", ""), cand("x", "(((")]) is None, (
        "expected no match and no exception for a title full of query syntax"
    )


def test_best_match_prefers_the_true_recording_over_a_higher_ranked_remix() -> None:
    query = TrackQuery("deadmau5", "Strobe", duration_ms=634_000)
    remix = cand("deadmau5", "Strobe (Eric Prydz Remix)", provider_score=1.0, duration_ms=640_000)
    studio = cand("deadmau5", "Strobe", provider_score=0.6, duration_ms=633_000)
    match = best_match(query, [remix, studio])
    assert match is not None and match.candidate is studio, (
        "expected the studio recording, not the remix"
    )
    assert match.index == 1 and match.confidence >= THRESHOLD, (
        "expected index 1 with a high confidence"
    )


def test_best_match_refuses_when_only_other_versions_are_offered() -> None:
    query = TrackQuery("The Killers", "Mr. Brightside")
    offered = [cand("The Killers", "Mr. Brightside - Live"), cand("Boyce Avenue", "Mr. Brightside")]
    assert best_match(query, offered) is None, (
        "expected no match when the studio recording is absent"
    )


def test_provider_score_only_breaks_ties() -> None:
    query = TrackQuery("Adele", "Hello")
    weak = cand("Adele", "Hello", provider_score=0.2, isrc="GBBKS1500214")
    strong = cand("Adele", "Hello (Album Version)", provider_score=1.0, isrc="GBBKS1500214")
    match = best_match(query, [weak, strong])
    assert match is not None and match.candidate is strong, (
        "expected the provider's score to break the tie"
    )
    assert (
        best_match(TrackQuery("Adele", "Goodbye"), [cand("Adele", "Hello", provider_score=1.0)])
        is None
    ), "expected a perfect provider score not to make a match on its own"


def test_tie_between_different_recordings_is_refused() -> None:
    query = TrackQuery("Central Cee", "Doja")
    a = cand("Central Cee", "Doja", isrc="GBUM72205415", duration_ms=97_000)
    b = cand("Central Ce", "Doja", isrc="QZAB12300001", duration_ms=180_000)
    assert best_match(query, [a, b]) is None, (
        "expected two equally good, different recordings to be refused"
    )


def test_tie_is_settled_by_duration_agreement() -> None:
    query = TrackQuery("Central Cee", "Doja", duration_ms=97_500)
    a = cand("Central Ce", "Doja", isrc="QZAB12300001", duration_ms=180_000)
    b = cand("Central Cee", "Doja", isrc="GBUM72205415", duration_ms=97_000)
    match = best_match(query, [a, b])
    assert match is not None and match.candidate is b, (
        "expected the candidate whose duration agrees"
    )


def test_two_releases_of_one_recording_are_not_a_tie() -> None:
    query = TrackQuery("Adele", "Hello")
    single = cand("Adele", "Hello", isrc="GBBKS1500214", duration_ms=295_000)
    album = cand("Adele", "Hello - Remastered 2021", isrc="GBBKS2100001", duration_ms=295_500)
    assert best_match(query, [single, album]) is not None, (
        "expected the single and the album release of one recording to be accepted, not refused"
    )


def test_threshold_is_a_keyword_argument() -> None:
    query = TrackQuery("Sidney Samson", "Rivresdie")
    candidate = cand("Sidney Samson", "Riverside")
    assert best_match(query, [candidate], threshold=0.99) is None, (
        "expected a strict threshold to refuse"
    )
    assert best_match(query, [candidate], threshold=0.5) is not None, (
        "expected a loose threshold to accept"
    )


def test_empty_candidate_list() -> None:
    assert best_match(TrackQuery("Adele", "Hello"), []) is None, (
        "expected no match from no candidates"
    )


def test_similarity_bounds() -> None:
    assert similarity("abc", "abc") == 1.0, "expected equal strings to be 1.0"
    assert similarity("", "abc") == 0.0, "expected an empty string to be 0.0"
    assert similarity("deadmau5", "dead mau5") > 0.9, "expected spacing differences to count little"


def test_the_stated_length_picks_between_two_recordings_with_the_same_title() -> None:
    from trackflow.providers.base import Candidate as C
    from trackflow.providers.base import TrackQuery as Q
    from trackflow.providers.matching import best_match as pick

    cands = [C("musicbrainz", {"artist": "Northern Horses", "title": "Stars", "duration_ms": 216742,
                               "isrc": "USAPU0437539"}),
             C("musicbrainz", {"artist": "Northern Horses", "title": "Stars", "duration_ms": 223640,
                               "isrc": "QZO000145648"})]
    chosen = pick(Q("Northern Horses", "Stars", duration_ms=223_640), cands)
    assert chosen is not None and chosen.candidate.get("isrc") == "QZO000145648", (
        "the recording whose length the query states exactly should win")
    assert pick(Q("Northern Horses", "Stars", duration_ms=220_000), cands) is None, (
        "with the length halfway between, the answer is ambiguous and must be refused")
    assert pick(Q("Northern Horses", "Stars"), cands) is None, "without a length: ambiguous"


def test_a_second_look_takes_a_typo_only_when_sure() -> None:
    def cand(title: str, artist: str = "Lady Gaga", duration_ms: int = 220_000) -> Candidate:
        return Candidate("x", {"artist": artist, "title": title, "duration_ms": duration_ms})

    typo = TrackQuery(artist="Lady Gaga", title="Telephnoe", duration_ms=221_000)
    found = best_match(typo, [cand("Telephone"), cand("Bad Romance")], second_look=True)
    assert found is not None and found.candidate.get("title") == "Telephone"
    # The same list, another length: the duration must agree where both sides know it.
    assert best_match(typo, [cand("Telephone", duration_ms=260_000)], second_look=True) is None
    # Another act's song is no typo of this artist's.
    assert best_match(typo, [cand("Telephone", artist="Lady A")], second_look=True) is None
    # Two near-titles of one artist: no sure winner.
    close = TrackQuery(artist="Lady Gaga", title="Telephnoes")
    assert best_match(close, [cand("Telephone"), cand("Telephones")], second_look=True) is None
    # One edit in a short title is another song ("Love" is not "Lover")...
    short = TrackQuery(artist="Taylor Swift", title="Love")
    assert best_match(short, [cand("Lover", "Taylor Swift")], second_look=True) is None
    # ...unless a length that agrees vouches for it.
    timed = TrackQuery(artist="Papa Roach", title="Sars", duration_ms=215_000)
    scars = [cand("Scars", "Papa Roach", 210_000), cand("Last Resort", "Papa Roach", 200_000)]
    assert best_match(timed, scars, second_look=True) is not None
    assert best_match(replace(timed, duration_ms=None), scars, second_look=True) is None
    assert best_match(replace(timed, duration_ms=260_000), scars, second_look=True) is None


def test_a_second_look_scores_typos_by_edits_over_the_unspaced_title() -> None:
    def cand(title: str, artist: str = "Jung Kook") -> Candidate:
        return Candidate("x", {"artist": artist, "title": title, "duration_ms": 317_000})

    # Two typos in a short word ("Newr" for "Never") cost the whole word at the first look;
    # over the unspaced title they are 2 edits in 10 letters.
    two = TrackQuery(artist="Jung Kook", title="Newr Let Go", duration_ms=316_115)
    assert best_match(two, [cand("Never Let Go")]) is None
    found = best_match(two, [cand("Never Let Go"), cand("Seven")], second_look=True)
    assert found is not None and found.candidate.get("title") == "Never Let Go"
    # A space moved breaks two words; unspaced, it is one swap.
    moved = TrackQuery(artist="Drake", title="Girls aWn tGirls")
    found = best_match(moved, [cand("Girls Want Girls", "Drake")], second_look=True)
    assert found is not None
    # Two edits in nine letters are another song ("Yankee 150" and "Yandel 150" both exist).
    other = TrackQuery(artist="Yandel", title="Yankee 150")
    assert best_match(other, [cand("Yandel 150", "Yandel")], second_look=True) is None
    # Numbers must agree: one edit, another part.
    part = TrackQuery(artist="Jung Kook", title="Never Let Go Pt. 3")
    assert best_match(part, [cand("Never Let Go Pt. 2")], second_look=True) is None
    # A title the query gives as "Artist - Title" counts its letters after the split.
    split = TrackQuery(artist="", title="Sia - Chandelirr")
    found = best_match(split, [cand("Chandelier", "Sia")], second_look=True)
    assert found is not None


def test_a_second_look_takes_a_mistyped_artist() -> None:
    def cand(artist: str, title: str = "Time of Our Lives") -> Candidate:
        return Candidate("x", {"artist": artist, "title": title, "duration_ms": 229_000})

    typo = TrackQuery(artist="Badsgah", title="Time Of Our Lives")
    found = best_match(typo, [cand("Badshah"), cand("Pitbull")], second_look=True)
    assert found is not None and found.candidate.get("artist") == "Badshah"
    # A typo on both sides: only a length that agrees vouches for it.
    both = TrackQuery(artist="Badsgah", title="Tmie Of Our Lives")
    assert best_match(both, [cand("Badshah")], second_look=True) is None
    timed = TrackQuery(artist="Badsgah", title="Tmie Of Our Lives", duration_ms=230_000)
    assert best_match(timed, [cand("Badshah")], second_look=True) is not None
    # A word more is another act, not a typo ("Billie Eilish" vs "Billie Eilish Jr.").
    near = TrackQuery(artist="Billie Eilish", title="Time Of Our Lives")
    assert best_match(near, [cand("Billie Eilish Jr.")], second_look=True) is None


def test_typo_edits_allow_lucene_like_budgets() -> None:
    assert typo_edits("love", "lover") is None  # under five letters: none
    assert typo_edits("telephnoe", "telephone") == 1
    assert typo_edits("animks", "animals") is None  # two edits need eight letters
    assert typo_edits("newrletgo", "neverletgo") == 2
    assert typo_edits("part2", "part3") is None
    assert typo_edits("sars", "scars", vouched=True) == 1, "a length that agrees: Lucene's AUTO"
    assert typo_edits("animks", "animals", vouched=True) == 2


def test_a_suffix_after_a_dash_spaced_on_one_side_is_still_a_suffix() -> None:
    q = TrackQuery(artist="DJ Fresh", title="Gold Dust  -Radio Edit")
    assert score(q, Candidate("x", {"artist": "DJ Fresh", "title": "Gold Dust"})).total >= 0.82
    assert parse_title("Ob-La-Di, Ob-La-Da").base == "ob la di ob la da"
