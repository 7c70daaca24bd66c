"""CSV catalogs: the native format and the two real data sets (skipped when absent)."""

from __future__ import annotations

from pathlib import Path

import pytest

from trackflow.providers.normalize import ISRC_PATTERN
from trackflow.providers.simulator.csvload import has_mojibake, load_csv, parse_key

REPO = Path(__file__).resolve().parents[2]
DATA_DIRS = (Path("/work/shared/data/catalog"), REPO.parent / "shared" / "data" / "catalog")


def _real(name: str) -> Path:
    for directory in DATA_DIRS:
        if (directory / name).exists():
            return directory / name
    pytest.skip(f"{name} not present in {[str(d) for d in DATA_DIRS]}")


def test_native_csv(tmp_path: Path) -> None:
    path = tmp_path / "cat.csv"
    path.write_text(
        "artist,title,isrc,duration_ms,album,release_date,bpm,key,genres\n"
        "deadmau5,Strobe,CAN110900195,637000,For Lack of a Better Name,2009-09-22,128,C#m,"
        '"electronic, progressive house"\n'
        "Beyoncé,Halo,,261000,I Am... Sasha Fierce,2008,80,B major,pop\n"
        "Beyoncï¿,Halo,,261000,x,2008,80,,pop\n",
        encoding="utf-8",
    )
    catalog = load_csv(path)
    assert len(catalog) == 2, "the mojibake row must be skipped"
    strobe, halo = catalog.tracks
    assert (strobe.isrc, strobe.bpm, strobe.key, strobe.mode) == ("CAN110900195", 128.0, 1, 0)
    assert strobe.genres == ("electronic", "progressive house")
    assert ISRC_PATTERN.match(halo.isrc), "rows without an ISRC get a synthetic well-formed one"
    assert (halo.key, halo.mode, halo.release_date) == (11, 1, "2008")


def test_parse_key_and_mojibake() -> None:
    assert parse_key("5") == (5, 1)
    assert parse_key("Bb minor") == (10, 0)
    assert parse_key("F#m") == (6, 0)
    assert parse_key("") == (-1, 1)
    assert has_mojibake("Titï¿½ï¿½ Me Pregu") and not has_mojibake("Beyoncé")


def test_top_hits_file_loads() -> None:
    catalog = load_csv(_real("top_hits_2000_2019.csv"))
    assert len(catalog) > 1500
    first = catalog.tracks[0]
    assert (first.artist, first.title) == ("Britney Spears", "Oops!...I Did It Again")
    assert first.duration_ms == 211160 and first.bpm == pytest.approx(95.053)
    assert first.release_date == "2000" and first.genres == ("pop",)
    assert all(ISRC_PATTERN.match(t.isrc) for t in catalog.tracks)
    assert len({t.isrc for t in catalog.tracks}) == len(catalog)


def test_most_streamed_file_loads_without_mojibake() -> None:
    catalog = load_csv(_real("most_streamed_2024.csv"))
    assert 3500 < len(catalog) < 4600
    first = catalog.tracks[0]
    assert (first.title, first.artist, first.isrc) == (
        "MILLION DOLLAR BABY",
        "Tommy Richman",
        "QM24S2402528",
    )
    assert first.release_date == "2024-04-26"
    assert not any(has_mojibake(t.artist, t.title, t.album) for t in catalog.tracks)
    assert catalog.by_isrc("USUG12400910")[0].title == "Not Like Us"


def test_real_catalog_search_returns_candidates() -> None:
    catalog = load_csv(_real("top_hits_2000_2019.csv"))
    hits = catalog.search(title="Oops!... I did it again", artist="britney spears", limit=5)
    assert hits[0].track.title == "Oops!...I Did It Again"
    assert len(hits) > 1
