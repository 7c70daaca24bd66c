"""Parsers for the query languages the clients send.

- Spotify and Deezer: ``artist:"Daft Punk" track:"One More Time" isrc:GBDUW0000059`` plus free
  words (:func:`parse_filters`).
- MusicBrainz: the Lucene subset ``recording:"..." AND artist:"..."``, ``isrc:X``,
  ``dur:[a TO b]``, bare terms, ``AND``/``OR``/``NOT``, parentheses and backslash escapes
  (:func:`parse_lucene`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_FILTER_RE = re.compile(r'(\w+):(?:"((?:[^"\\]|\\.)*)"|(\S+))')
_UNESCAPE_RE = re.compile(r"\\(.)")
_OPERATORS = {"AND", "OR", "&&", "||"}


def unescape(text: str) -> str:
    """Drop Lucene/JSON-style backslash escapes (``AC\\/DC`` -> ``AC/DC``)."""
    return _UNESCAPE_RE.sub(r"\1", text)


def parse_filters(q: str, known: frozenset[str]) -> tuple[dict[str, str], str]:
    """``(filters, free_text)`` from a Spotify/Deezer query; unknown ``x:`` stays free text."""
    filters: dict[str, str] = {}
    free: list[str] = []
    pos = 0
    for match in _FILTER_RE.finditer(q):
        name = match.group(1).lower()
        if name not in known:
            continue
        free.append(q[pos : match.start()])
        pos = match.end()
        value = match.group(2) if match.group(2) is not None else match.group(3)
        filters[name] = unescape(value).strip()
    free.append(q[pos:])
    return filters, " ".join(" ".join(free).split())


@dataclass(slots=True)
class LuceneQuery:
    """The parts of a MusicBrainz query the simulator uses."""

    fields: dict[str, list[str]] = field(default_factory=dict)
    """Field name -> values (phrases unquoted and unescaped)."""
    ranges: dict[str, tuple[str, str]] = field(default_factory=dict)
    """Field name -> (low, high) of ``[low TO high]``; ``*`` for open ends."""
    free: list[str] = field(default_factory=list)
    """Terms without a field."""
    excluded: list[str] = field(default_factory=list)
    """Terms after ``NOT`` or ``-`` (ignored when ranking)."""

    def text(self, name: str) -> str | None:
        """All values of field ``name`` joined, or None."""
        values = self.fields.get(name)
        return " ".join(values) if values else None


class _Scanner:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def skip_space(self) -> None:
        while self.peek().isspace():
            self.pos += 1

    def quoted(self) -> str:
        self.pos += 1  # opening quote
        out: list[str] = []
        while self.pos < len(self.text) and self.text[self.pos] != '"':
            if self.text[self.pos] == "\\" and self.pos + 1 < len(self.text):
                self.pos += 1
            out.append(self.text[self.pos])
            self.pos += 1
        self.pos += 1  # closing quote (or end)
        return "".join(out)

    def word(self) -> str:
        """A bare word up to whitespace, an unescaped ``:`` or parenthesis."""
        out: list[str] = []
        while self.pos < len(self.text):
            c = self.text[self.pos]
            if c == "\\" and self.pos + 1 < len(self.text):
                out.append(self.text[self.pos + 1])
                self.pos += 2
                continue
            if c.isspace() or c in "():" or (c in "]}" and out):
                break
            out.append(c)
            self.pos += 1
        return "".join(out)


def parse_lucene(query: str) -> LuceneQuery:
    """Parse the Lucene subset described in the module docstring."""
    result = LuceneQuery()
    s = _Scanner(query)
    negate = False
    while True:
        s.skip_space()
        c = s.peek()
        if not c:
            break
        if c in "()":
            s.pos += 1
            continue
        if c in "+-" and s.pos + 1 < len(query) and not query[s.pos + 1].isspace():
            negate = c == "-"
            s.pos += 1
            continue
        if c == '"':
            value, name = s.quoted(), None
        else:
            word = s.word()
            if not word:
                s.pos += 1  # a stray special character
                continue
            if word in _OPERATORS:
                continue
            if word in ("NOT", "!"):
                negate = True
                continue
            if s.peek() != ":":
                (result.excluded if negate else result.free).append(word)
                negate = False
                continue
            name = word.lower()
            s.pos += 1  # the colon
            s.skip_space()
            if s.peek() in "[{":
                s.pos += 1
                s.skip_space()
                low = s.word()
                s.skip_space()
                if s.text[s.pos : s.pos + 2] == "TO":
                    s.pos += 2
                s.skip_space()
                high = s.word()
                s.skip_space()
                if s.peek() in "]}":
                    s.pos += 1
                result.ranges[name] = (low or "*", high or "*")
                negate = False
                continue
            value = s.quoted() if s.peek() == '"' else s.word()
        if negate:
            result.excluded.append(value)
        elif name is None:
            result.free.append(value)
        else:
            result.fields.setdefault(name, []).append(value)
        negate = False
    return result
