"""The simulator's answer-level quirks: rolled per answer by default, never with the switch off."""

from __future__ import annotations

import json
import random
from collections import Counter

from trackflow.providers.simulator import deezer, lastfm, musicbrainz, spotify
from trackflow.providers.simulator.limits import Decision
from trackflow.providers.simulator.quirks import PLAIN, RATES, Quirks

LIMITED = Decision(allowed=False, limit=5, used=5, retry_after_s=1.2)


def shapes(answer: object, n: int, quirks: Quirks) -> Counter[str]:
    out: Counter[str] = Counter()
    for _ in range(n):
        r = answer(quirks)  # type: ignore[operator]
        out[f"{r.status} {r.content_type} {r.headers.get('Retry-After', '-')}"] += 1
    return out


def test_deezer_throttling_is_sometimes_a_bare_403_or_429() -> None:
    seen = shapes(lambda q: deezer.limit_answer(LIMITED, q), 400, Quirks(True, random.Random(1)))
    assert {"200 application/json -", "403 text/html -", "429 text/html -"} == set(seen)
    share = (seen["403 text/html -"] + seen["429 text/html -"]) / 400
    assert abs(share - RATES["deezer_bare_throttle"]) < 0.08, share
    assert set(shapes(lambda q: deezer.limit_answer(LIMITED, q), 50, PLAIN)) == {
        "200 application/json -"}


def test_deezer_server_errors_are_sometimes_html() -> None:
    seen = shapes(lambda q: deezer.fault_answer(502, q), 200, Quirks(True, random.Random(2)))
    assert set(seen) == {"502 application/json -", "502 text/html -"}


def test_spotify_429_says_api_rate_limit_exceeded_and_retry_after_may_be_zero() -> None:
    seen = shapes(lambda q: spotify.limit_answer(LIMITED, q), 200, Quirks(True, random.Random(3)))
    assert set(seen) == {"429 application/json 0", "429 application/json 2"}
    body = json.loads(spotify.limit_answer(LIMITED, Quirks(True, random.Random(3))).body)
    assert body == {"error": {"status": 429, "message": "API rate limit exceeded"}}
    assert set(shapes(lambda q: spotify.limit_answer(LIMITED, q), 50, PLAIN)) == {
        "429 application/json 2"}


def test_musicbrainz_busy_503_is_not_the_rate_limit_answer() -> None:
    busy = json.loads(musicbrainz.fault_answer(503, Quirks(True)).body)["error"]
    limited = json.loads(musicbrainz.limit_answer(LIMITED, Quirks(True)).body)["error"]
    assert "busy" in busy and "rate limit" not in busy
    assert "allowable rate limit" in limited


def test_lastfm_errors_carry_links_and_29_has_its_new_wording() -> None:
    new = json.loads(lastfm.limit_answer(LIMITED, Quirks(True)).body)
    old = json.loads(lastfm.limit_answer(LIMITED, PLAIN).body)
    assert new["error"] == old["error"] == 29 and new["message"] != old["message"]
    assert new["links"] == [] and "links" not in old
    offline = lastfm.fault_answer(503, Quirks(True))
    assert offline.status == 503 and json.loads(offline.body)["links"] == []
