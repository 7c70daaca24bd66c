"""Matching accuracy on noisy scraper-style queries built from the real catalog.

    python tests/bench/matching_bench.py [--seed S] [--limit N] [--examples K] [--no-quirks]

For every real track (see ``noise.py``) one noisy query and a ranked candidate list of up to 10,
a quarter of them without the true recording. Prints precision (correct matches / matches made)
and recall (correct matches / queries whose truth is present) for ``providers.matching.best_match``
and for a baseline that takes the provider's first result, plus example errors. By default a share
of the candidates is dressed as the real services answer (``noise.provider_quirks``: Deezer
credits, Discogs display markers, inverted names, unknown durations); ``--no-quirks`` leaves them
plain. A script, not a
test: it prints figures and asserts nothing.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # noise.py sits next to this script

from noise import Case, catalog_dir, load_catalog, make_cases  # noqa: E402

from trackflow.providers.base import Candidate  # noqa: E402
from trackflow.providers.matching import THRESHOLD, best_match, score  # noqa: E402

Picker = Callable[[Case], Candidate | None]


def matcher(case: Case) -> Candidate | None:
    match = best_match(case.query, case.candidates)
    return None if match is None else match.candidate


def first_result(case: Case) -> Candidate | None:
    return case.candidates[0] if case.candidates else None


def evaluate(name: str, pick: Picker, cases: Sequence[Case], examples: int) -> None:
    counts: Counter[str] = Counter()
    wrong: list[tuple[Case, Candidate | None, str]] = []
    for case in cases:
        chosen = pick(case)
        present = bool(case.truth)
        counts["present"] += present
        if chosen is None:
            counts["refused"] += 1
            if present:
                counts["missed"] += 1
                wrong.append((case, None, "missed"))
            continue
        counts["matched"] += 1
        if str(chosen.get("bench_id")) in case.truth:
            counts["correct"] += 1
        else:
            kind = "wrong (truth present)" if present else "false positive (truth absent)"
            counts[kind] += 1
            wrong.append((case, chosen, kind))
    precision = counts["correct"] / counts["matched"] if counts["matched"] else 1.0
    recall = counts["correct"] / counts["present"] if counts["present"] else 0.0
    print(f"\n== {name}")
    print(
        f"queries {len(cases)}  truth present {counts['present']}  matches made "
        f"{counts['matched']}  correct {counts['correct']}"
    )
    print(
        f"wrong with truth present {counts['wrong (truth present)']}  false positives with "
        f"truth absent {counts['false positive (truth absent)']}  missed {counts['missed']}"
    )
    print(f"precision {precision:.4f}   recall {recall:.4f}")
    bad = [w for w in wrong if w[2] != "missed"][:examples]
    missed = [w for w in wrong if w[2] == "missed"][:examples]
    for case, chosen, kind in bad + missed:
        q = case.query
        print(
            f"  - {kind}: query artist={q.artist!r} title={q.title!r} "
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
            truth = next(c for c in case.candidates if str(c.get("bench_id")) in case.truth)
            s = score(q, truth)
            print(
                f"    truth scored {s.total} t={s.title} a={s.artist} d={s.duration} "
                f"{'; '.join(s.reasons)}"
            )


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
    for name, pick in (
        ("best_match", matcher),
        ("baseline: provider's first result", first_result),
    ):
        started = time.perf_counter()
        evaluate(name, pick, cases, args.examples)
        print(f"({time.perf_counter() - started:.1f}s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
