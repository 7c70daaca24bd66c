"""Forgiving input parsing for ``trackflow produce``."""

from __future__ import annotations

from pathlib import Path

import pytest

from trackflow.streams.ingest import (
    parse_row,
    read_rows,
    row_to_raw,
    split_artist_title,
    stable_track_id,
)


def test_track_id_is_stable_and_insensitive_to_case_and_spacing() -> None:
    assert stable_track_id("Daft Punk", "One More Time") == stable_track_id(
        "daft  punk", " ONE MORE TIME ")
    assert stable_track_id("a", "b", "gb-duw-00-00059") == stable_track_id("x", "y", "GBDUW0000059")
    # The same separators the worker's validation drops (spaces too): one track, one id.
    assert stable_track_id("a", "b", "GB DUW 00 00059") == stable_track_id("x", "y", "GBDUW0000059")
    assert stable_track_id("a", "b") != stable_track_id("a", "c")


@pytest.mark.parametrize(
    ("row", "duration"),
    [
        ({"artist_name": "A", "song": "B", "duration": "3:45"}, 225_000),
        ({"Artist": "A", "Track": "B", "duration_ms": "201000"}, 201_000),
        ({"artist": "A", "title": "B", "length": "200"}, 200_000),
        ({"artist": "A", "name": "B"}, None),
    ],
)
def test_forgiving_column_names_and_durations(row: dict[str, str], duration: int | None) -> None:
    out = row_to_raw(row)
    assert (out["artist"], out["title"], out["duration_ms"]) == ("A", "B", duration)


def test_rows_without_artist_or_title_are_rejected_with_a_reason() -> None:
    with pytest.raises(ValueError, match="no title"):
        row_to_raw({"artist": "A"})
    with pytest.raises(ValueError, match="duration"):
        row_to_raw({"artist": "A", "title": "B", "duration": "long"})


def test_artist_dash_title_lines() -> None:
    assert split_artist_title("Daft Punk - One More Time") == ("Daft Punk", "One More Time")
    assert split_artist_title("Jay-Z \u2013 99 Problems") == ("Jay-Z", "99 Problems")
    assert split_artist_title("No separator") == (None, "No separator")


def test_reads_csv_jsonl_and_text(tmp_path: Path) -> None:
    csv_file = tmp_path / "a.csv"
    csv_file.write_text("artist,title,isrc\nA,B,GBDUW0000059\n")
    jsonl = tmp_path / "b.jsonl"
    jsonl.write_text('{"artist": "A", "title": "B"}\n{oops\n')
    text = tmp_path / "c.txt"
    text.write_text("# comment\nA - B\nnot a track\n")
    rows = list(read_rows(csv_file))
    assert parse_row(*rows[0], source="s", jsonl=False)["isrc"] == "GBDUW0000059"
    lines = list(read_rows(jsonl))
    assert parse_row(*lines[0], source="s", jsonl=True)["title"] == "B"
    with pytest.raises(ValueError, match="invalid JSON"):
        parse_row(*lines[1], source="s", jsonl=True)
    texts = list(read_rows(text))
    assert parse_row(*texts[0], source="s", jsonl=False)["artist"] == "A"
    with pytest.raises(ValueError, match="Artist - Title"):
        parse_row(*texts[1], source="s", jsonl=False)
