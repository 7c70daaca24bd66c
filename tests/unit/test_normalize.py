"""Normalisation: folding, credits, version suffixes, "Artist - Title" splitting."""

from __future__ import annotations

import pytest

from trackflow.providers.normalize import (
    fold,
    normalize_artist,
    normalize_isrc,
    parse_artists,
    split_artist_title,
    split_featured,
)
from trackflow.providers.titles import Version, edit_distance, parse_title


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Beyoncé", "beyonce"),
        ("SIGUR RÓS", "sigur ros"),
        ("Mø", "mo"),
        ("Simon & Garfunkel", "simon and garfunkel"),
        ("Florence + The Machine", "florence and the machine"),
        ("Don\u2019t Stop Me Now", "dont stop me now"),
        ("Oops!...I Did It Again", "oops i did it again"),
        ("R.E.M.", "rem"),
        ("P!nk", "pink"),
        ("Ke$ha", "kesha"),
        ("  many   spaces\t", "many spaces"),
    ],
)
def test_fold(raw: str, expected: str) -> None:
    assert fold(raw) == expected, f"expected {raw!r} to fold to {expected!r}, got {fold(raw)!r}"


@pytest.mark.parametrize(
    ("a", "b"),
    [("The Killers", "Killers"), ("Beyoncé", "Beyonce"), ("THE WEEKND", "the weeknd")],
)
def test_artist_variants_normalise_equal(a: str, b: str) -> None:
    assert normalize_artist(a) == normalize_artist(b), (
        f"expected {a!r} and {b!r} to normalise equal"
    )


def test_the_alone_is_kept() -> None:
    assert normalize_artist("The The") == "the", "expected only one leading 'the' to be dropped"


def test_bon_jovi_and_jon_bon_jovi_stay_different() -> None:
    assert normalize_artist("Bon Jovi") != normalize_artist("Jon Bon Jovi"), (
        "expected Bon Jovi and Jon Bon Jovi to remain different names"
    )


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("usum7-24-02908", "USUM72402908"),
        ("GB DUW 00 00059", "GBDUW0000059"),
        ("gb-duw-00-00059", "GBDUW0000059"),
        ("GBDUW0000059/../x", None),  # never part of a lookup path
        ("", None),
        ("nope", None),
        (None, None),
    ],
)
def test_normalize_isrc(raw: str | None, expected: str | None) -> None:
    assert normalize_isrc(raw) == expected, f"expected ISRC {raw!r} to normalise to {expected!r}"


@pytest.mark.parametrize(
    ("artist", "main", "featured"),
    [
        ("Calvin Harris feat. Rihanna", ("calvin harris",), ("rihanna",)),
        ("Calvin Harris ft. Rihanna", ("calvin harris",), ("rihanna",)),
        ("Calvin Harris featuring Rihanna", ("calvin harris",), ("rihanna",)),
        (
            "DJ Snake (feat. Selena Gomez, Ozuna & Cardi B)",
            ("dj snake",),
            ("selena gomez", "ozuna", "cardi b"),
        ),
        ("Post Malone, Swae Lee", ("post malone", "swae lee"), ()),
        ("Macklemore & Ryan Lewis", ("macklemore", "ryan lewis"), ()),
        ("Selena Gomez & The Scene", ("selena gomez and the scene",), ()),
        ("Hootie and the Blowfish", ("hootie and the blowfish",), ()),
        ("Lil Nas X", ("lil nas x",), ()),
        ("", (), ()),
    ],
)
def test_parse_artists(artist: str, main: tuple[str, ...], featured: tuple[str, ...]) -> None:
    credit = parse_artists(artist)
    assert credit.main == main, f"expected main artists {main} for {artist!r}, got {credit.main}"
    assert credit.featured == featured, (
        f"expected featured artists {featured} for {artist!r}, got {credit.featured}"
    )


def test_split_featured_keeps_original_spelling() -> None:
    assert split_featured("Calvin Harris Feat. Rihanna") == ("Calvin Harris", "Rihanna"), (
        "expected the main and featured parts in their original spelling"
    )
    assert split_featured("Defeated Sanity") == ("Defeated Sanity", ""), (
        "expected 'feat' inside a word not to split the name"
    )


@pytest.mark.parametrize(
    ("title", "base", "versions"),
    [
        ("Strobe (Eric Prydz Remix)", "strobe", (Version("remix", "eric prydz"),)),
        ("Strobe - Eric Prydz Remix", "strobe", (Version("remix", "eric prydz"),)),
        ("Strobe (Eric Prydz Edit)", "strobe", (Version("edit", "eric prydz"),)),
        ("Mr. Brightside - Live", "mr brightside", (Version("live", ""),)),
        ("Mr. Brightside (Live at Wembley)", "mr brightside", (Version("live", "at wembley"),)),
        ("Hello (Acoustic Version)", "hello", (Version("acoustic", ""),)),
        ("Hello - Instrumental", "hello", (Version("instrumental", ""),)),
        ("Danza Kuduro - Cover", "danza kuduro", (Version("cover", ""),)),
        ("Song (Karaoke Version)", "song", (Version("karaoke", ""),)),
        ("Song (VIP)", "song", (Version("vip", ""),)),
        ("Song (Club Dub)", "song", (Version("dub", "club"),)),
        ("Song (Techno Mix)", "song", (Version("remix", "techno"),)),
        ("Song - Sped Up", "song", (Version("sped up", ""),)),
        ("SNAP - High and Fast", "snap", (Version("sped up", ""),)),
        ("Song (Slowed + Reverb)", "song", (Version("slowed", "reverb"),)),
        ("Song (Bootleg)", "song", (Version("bootleg", ""),)),
        ("Song (Mashup)", "song", (Version("mashup", ""),)),
        ("Song (Rework)", "song", (Version("rework", ""),)),
        ("Is It Over Now? (Taylor's Version)", "is it over now", (Version("version", "taylors"),)),
        ("Strobe Eric Prydz Remix", "strobe eric prydz remix", (Version("remix", None),)),
        ("Marisola - Rmeix", "marisola", (Version("remix", ""),)),
    ],
)
def test_distinguishing_versions(title: str, base: str, versions: tuple[Version, ...]) -> None:
    parsed = parse_title(title)
    assert parsed.base == base, f"expected base title {base!r} for {title!r}, got {parsed.base!r}"
    assert parsed.versions == versions, (
        f"expected {title!r} to be the distinguishing version {versions}, got {parsed.versions}"
    )


@pytest.mark.parametrize(
    "title",
    [
        "We Come 1 - Radio Edit",
        "We Come 1 (Radio Edit)",
        "We Come 1 - Radio Version",
        "We Come 1 (Original Mix)",
        "We Come 1 [Extended]",
        "We Come 1 (Extended Mix)",
        "We Come 1 - Extended Version",
        "We Come 1 - Remastered 2011",
        "We Come 1 - 2015 Remaster",
        "We Come 1 (Remasterizado 2024/30th Anniversary)",
        "We Come 1 - Single Version",
        "We Come 1 (Album Version)",
        "We Come 1 (Explicit)",
        "We Come 1 (Clean Ver.)",
        "We Come 1 - Mono",
        "We Come 1 - Edit",
        'We Come 1 - From "Frozen"/Soundtrack Version',
    ],
)
def test_neutral_suffixes_are_normalised_away(title: str) -> None:
    parsed = parse_title(title)
    assert parsed.base == "we come 1", (
        f"expected base 'we come 1' for {title!r}, got {parsed.base!r}"
    )
    assert parsed.versions == (), (
        f"expected {title!r} to be the same recording, got {parsed.versions}"
    )
    assert parsed.extras == (), f"expected no leftover subtitle for {title!r}, got {parsed.extras}"


@pytest.mark.parametrize(
    ("title", "featured"),
    [
        ("This Is What You Came For (feat. Rihanna)", ("rihanna",)),
        ("STAY (with Justin Bieber)", ("justin bieber",)),
        ("Too Many Nights (feat. Don Toliver & with Future)", ("don toliver", "future")),
        ("Knife Talk (with 21 Savage ft. Project Pat)", ("21 savage", "project pat")),
        ("This Is What You Came For feat. Rihanna - Radio Edit", ("rihanna",)),
    ],
)
def test_featured_in_title(title: str, featured: tuple[str, ...]) -> None:
    parsed = parse_title(title)
    assert parsed.featured == featured, (
        f"expected featured {featured} in {title!r}, got {parsed.featured}"
    )
    assert "feat" not in parsed.full and "with" not in parsed.full, (
        f"expected the credit removed from the title, got {parsed.full!r}"
    )


def test_subtitles_and_leading_brackets() -> None:
    assert parse_title("A Bar Song (Tipsy)").extras == ("tipsy",), "expected '(Tipsy)' as an extra"
    assert parse_title("(It Goes Like) Nanana - Edit").base == "it goes like nanana", (
        "expected a leading bracket to stay part of the title"
    )
    assert parse_title("Born to Live").versions == (), (
        "expected a title ending in 'Live' to be studio"
    )
    assert parse_title("Song (Endless Love)").versions == (), "expected 'Love' not read as 'Live'"


@pytest.mark.parametrize(
    "title",
    [
        'AND (Remix) "Edit" OR artist:x',
        "((((",
        ")))",
        "[",
        " - - - ",
        "",
        "feat.",
        "(feat. )",
        "\\/:*?",
    ],
)
def test_hostile_titles_do_not_crash(title: str) -> None:
    parsed = parse_title(title)
    assert isinstance(parsed.full, str), f"expected a parsed title for {title!r}"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Daft Punk - One More Time", ("Daft Punk", "One More Time")),
        ("Daft Punk \u2013 Aerodynamic - Edit", ("Daft Punk", "Aerodynamic - Edit")),
        ("Bling-Bang-Bang-Born", None),
        ("One More Time", None),
        (" - One More Time", None),
    ],
)
def test_split_artist_title(text: str, expected: tuple[str, str] | None) -> None:
    assert split_artist_title(text) == expected, f"expected {text!r} to split into {expected}"


def test_edit_distance_counts_a_swap_as_one() -> None:
    assert edit_distance("riverside", "rivresdie") == 2, "expected two swaps to cost two edits"
    assert edit_distance("abc", "abc") == 0, "expected equal strings to be distance 0"
