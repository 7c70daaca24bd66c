"""Matching accuracy on noisy scraper-style queries built from the real catalog.

    python tests/bench/matching_bench.py [--seed S] [--limit N] [--examples K] [--no-quirks]

For every real track (see ``noise.py``) one noisy query and two candidate lists: the first page
of up to 10 for the query, and what the wider queries (the artist's tracks, the title's) return.
A quarter of the tracks are absent from both; the first list also lacks the true recording when
the query's title is mistyped in every distinctive word or its artist in every word, as a
strict search (MusicBrainz phrase query, Spotify field filter) would. Three pickers:

* before: ``providers.matching.best_match`` on the first list alone;
* after: the same, then, when it gives nothing, ``best_match(..., second_look=True)`` on the
  wider list (with the second looks made and recovered, and second looks per recovered track);
* baseline: the provider's first result.

Each prints precision (correct matches / matches made) and recall (correct matches / queries
whose truth is present) and example errors (the after leg's second-look errors marked); before
and after also a table by noise kind. By default a share of the candidates is dressed as the
real services answer (``noise.provider_quirks``: Deezer credits, Discogs display markers,
inverted names, unknown durations); ``--no-quirks`` leaves them plain. A script, not a test: it
prints figures and asserts nothing.
"""

from __future__ import annotations

import argparse
import random
import re
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # noise.py sits next to this script

from noise import Case, catalog_dir, load_catalog, make_cases  # noqa: E402

from trackflow.providers.base import Candidate  # noqa: E402
from trackflow.providers.matching import THRESHOLD, TYPOS, best_match, rank, score  # noqa: E402

#: The by-kind row of the cases whose first list lacks a present truth (a derived kind).
FIRST_MISSES = "(first list lacks the truth)"


@dataclass(frozen=True, slots=True)
class Pick:
    """What a picker chose for one case."""

    candidate: Candidate | None
    second_look: bool = False
    """Whether the first list gave nothing and a second look was made."""


Picker = Callable[[Case], Pick]


def first_only(case: Case) -> Pick:
    match = best_match(case.query, case.candidates)
    return Pick(None if match is None else match.candidate)


def with_second_look(case: Case) -> Pick:
    first = first_only(case)
    if first.candidate is not None:
        return first
    match = best_match(case.query, case.second, second_look=True)
    return Pick(None if match is None else match.candidate, second_look=True)


def first_result(case: Case) -> Pick:
    return Pick(case.candidates[0] if case.candidates else None)


def outcome(case: Case, chosen: Candidate | None) -> str:
    """correct, wrong (truth present), false positive (truth absent), missed or refused."""
    present = bool(case.truth)
    if chosen is None:
        return "missed" if present else "refused"
    if str(chosen.get("bench_id")) in case.truth:
        return "correct"
    return "wrong" if present else "false positive"


def kinds(case: Case) -> list[str]:
    """The case's noise kinds, durations in buckets around the matcher's 10 s grace."""
    out = []
    for noise in case.noise:
        off = re.fullmatch(r"duration off (\d+)s", noise)
        if off is not None:
            seconds = int(off.group(1))
            noise = f"duration off {'<=2' if seconds <= 2 else '3-10' if seconds <= 10 else '>10'}s"
        out.append(noise)
    if case.truth and not case.first_has_truth:
        out.append(FIRST_MISSES)
    return out


def print_by_kind(results: Sequence[tuple[Case, Pick, str]]) -> None:
    rows: defaultdict[str, Counter[str]] = defaultdict(Counter)
    for case, _, result in results:
        for kind in ["all", *kinds(case)]:
            rows[kind]["queries"] += 1
            rows[kind]["present"] += bool(case.truth)
            rows[kind][result] += 1
    print(f"  {'noise kind':<36}{'queries':>8}{'present':>8}{'correct':>8}{'wrong':>6}"
          f"{'f.p.':>5}{'missed':>7}{'recall':>8}")
    for kind, n in sorted(rows.items(), key=lambda row: (row[0] != "all", -row[1]["queries"])):
        recall = f"{n['correct'] / n['present']:.3f}" if n["present"] else "-"
        print(f"  {kind:<36}{n['queries']:>8}{n['present']:>8}{n['correct']:>8}{n['wrong']:>6}"
              f"{n['false positive']:>5}{n['missed']:>7}{recall:>8}")


def explain(case: Case, pick: Pick) -> str:
    """Why a present truth was missed: its score in the list(s) the picker saw."""
    in_first = [c for c in case.candidates if str(c.get("bench_id")) in case.truth]
    if in_first:
        s = score(case.query, in_first[0])
        text = " ".join([f"truth scored {s.total} t={s.title} a={s.artist} d={s.duration}",
                         "; ".join(s.reasons)]).rstrip()
    else:
        text = "truth not in the first list (strict search)"
    if pick.second_look:
        ranked = rank(case.query, case.second, typos=TYPOS)
        truth = next(m for m in ranked if str(m.candidate.get("bench_id")) in case.truth)
        rival = next((m for m in ranked if str(m.candidate.get("bench_id")) not in case.truth),
                     None)
        s = truth.score
        text += f"\n    second look: truth scored {s.total} t={s.title} a={s.artist} d={s.duration}"
        if rival is not None:
            text += (f"; best other {rival.candidate.get('title')!r} scored "
                     f"{rival.score.total}")
    return text


def print_example(case: Case, pick: Pick, result: str) -> None:
    q, chosen = case.query, pick.candidate
    where = " (second look)" if pick.second_look and chosen is not None else ""
    label = {"wrong": "wrong (truth present)", "false positive": "false positive (truth absent)"}
    print(
        f"  - {label.get(result, result)}{where}: query artist={q.artist!r} title={q.title!r} "
        f"dur={q.duration_ms} isrc={q.isrc}"
    )
    print(
        f"    truth {case.track.artist!r} / {case.track.title!r} "
        f"({case.track.duration_ms} ms)  noise: {', '.join(case.noise)}"
    )
    if chosen is not None:
        s = score(q, chosen)
        print(
            f"    chose {chosen.get('artist')!r} / {chosen.get('title')!r} "
            f"({chosen.get('duration_ms')} ms)  score {s.total} t={s.title} a={s.artist}"
        )
    else:
        print(f"    {explain(case, pick)}")


def evaluate(name: str, pick: Picker, cases: Sequence[Case], examples: int,
             by_kind: bool) -> None:
    results = [(case, chosen, outcome(case, chosen.candidate))
               for case, chosen in ((case, pick(case)) for case in cases)]
    counts = Counter(result for _, _, result in results)
    present = sum(bool(case.truth) for case in cases)
    matched = counts["correct"] + counts["wrong"] + counts["false positive"]
    precision = counts["correct"] / matched if matched else 1.0
    recall = counts["correct"] / present if present else 0.0
    print(f"\n== {name}")
    print(
        f"queries {len(cases)}  truth present {present}  matches made {matched}  "
        f"correct {counts['correct']}"
    )
    print(
        f"wrong with truth present {counts['wrong']}  false positives with truth absent "
        f"{counts['false positive']}  missed {counts['missed']}"
    )
    print(f"precision {precision:.4f}   recall {recall:.4f}")
    second = Counter(result for _, chosen, result in results if chosen.second_look)
    if second:
        looks, recovered = second.total(), second["correct"]
        per = f"{looks / recovered:.1f}" if recovered else "-"
        print(
            f"second looks {looks}: recovered {recovered}, wrong {second['wrong']}, false "
            f"positives {second['false positive']}; {per} second looks per recovered track"
        )
    if by_kind:
        print_by_kind(results)
    errors = [r for r in results if r[2] in ("wrong", "false positive")]
    shown = [r for r in errors if not r[1].second_look][:examples]
    shown += [r for r in errors if r[1].second_look][:examples]
    shown += [r for r in results if r[2] == "missed"][:examples]
    for case, chosen, result in shown:
        print_example(case, chosen, result)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    parser.add_argument("--limit", type=int, default=0, help="use at most N tracks (0: all)")
    parser.add_argument("--examples", type=int, default=5, help="error examples to print")
    parser.add_argument("--no-quirks", dest="quirks", action="store_false",
                        help="candidates without the providers' real-world quirks")
    args = parser.parse_args(argv)

    directory = catalog_dir(HERE.parent.parent)
    if not directory.is_dir():
        print(f"catalog not found at {directory}; set TRACKFLOW_CATALOG_DIR", file=sys.stderr)
        return 2
    tracks = load_catalog(directory)
    if args.limit:
        tracks = random.Random(args.seed).sample(tracks, min(args.limit, len(tracks)))
    started = time.perf_counter()
    cases = make_cases(tracks, args.seed, quirks=args.quirks)
    print(
        f"catalog {directory}: {len(tracks)} tracks, seed {args.seed}, "
        f"threshold {THRESHOLD}, quirks {'on' if args.quirks else 'off'}, "
        f"built in {time.perf_counter() - started:.1f}s"
    )
    present = [case for case in cases if case.truth]
    print(
        f"first lists lacking a present truth (title mistyped in every distinctive word or "
        f"artist in every word): "
        f"{sum(not case.first_has_truth for case in present)} of {len(present)}; "
        f"wider lists: {sum(len(case.second) for case in cases) / max(1, len(cases)):.1f} "
        f"candidates on average"
    )
    for name, pick, by_kind in (
        ("before: best_match on the first list", first_only, True),
        ("after: with the second look", with_second_look, True),
        ("baseline: provider's first result", first_result, False),
    ):
        started = time.perf_counter()
        evaluate(name, pick, cases, args.examples, by_kind)
        print(f"({time.perf_counter() - started:.1f}s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
