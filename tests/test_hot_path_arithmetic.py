"""The hot path's shortcuts give exactly what the plain expressions they replace give.

Per event, replay and the worker's ingest take an event's minute (``floor_div``, instead of a float
``//``), put its cost on the grid (``grid_cost``, without ``round``), read an access line without
the regex (``access_line``; an error text's exception class and ``<provider> returned <status>``
likewise), sum the spend per team of the day (``Partials``), and close a minute
through the per-minute index of the accumulator (``Partials.pop_through``). Each check below runs
the shortcut and the plain expression over the same values, including the awkward ones.
"""

from __future__ import annotations

import math
import pickle
import random
import re
from collections import defaultdict

from connectors.litellm import access_line, error_class_in, provider_status_in
from models.events import Event
from models.partials import COST_GRID, Partials, grid_cost
from models.windows import STEP, floor_div
from tests.engine_helpers import request


def test_floor_div_is_floor_division_at_and_around_every_boundary() -> None:
    rng = random.Random(11)
    values = [0.0, -0.0, 59.999999, 60.0, -30.0, -60.0, 1e-300, 1789344059.9999998, 1789344060.0]
    for _ in range(20000):
        whole = rng.randrange(946684800 // 60, 4102444800 // 60) * 60.0
        values += [whole, math.nextafter(whole, 0.0), math.nextafter(whole, math.inf), whole + rng.random() * 60,
                   whole - 30.0 + rng.uniform(-1e-6, 1e-6)]
    for x in values:
        for step in (STEP, 86400):
            assert floor_div(x, step) == int(x // step), (x, step)


def test_grid_cost_is_round_on_the_grid_for_halves_negatives_and_large_costs() -> None:
    rng = random.Random(5)
    halves = [(k + 0.5) / COST_GRID for k in range(-5, 6)]  # exact halves of a grid step: to even
    values = [0.0, -0.0, 1e-13, -1e-13, 0.01, 32767.99, 32768.0, 1e6, -1e6, 1e12, *halves]
    values += [rng.choice([1e-7, 0.0003, 0.0125, 0.42, 30.0]) * rng.random() for _ in range(50000)]
    for usd in values:
        assert grid_cost(usd) == round(usd * COST_GRID) / COST_GRID, usd


def _random_texts(rng: random.Random, real: list[str], pieces: list[str], longest: int, drawn: int,
                  mutated: int) -> list[str]:
    """``drawn`` texts of up to ``longest`` random pieces, then ``mutated`` of the ``real`` ones with
    a few characters changed, dropped or added."""
    texts = ["".join(rng.choice(pieces) for _ in range(rng.randint(0, longest))) for _ in range(drawn)]
    for _ in range(mutated):
        text = list(rng.choice(real))
        for _ in range(rng.randint(1, 3)):
            at = rng.randrange(len(text))
            change = rng.randrange(3)
            if change == 0:
                text[at] = rng.choice(pieces)
            elif change == 1:
                del text[at]
            else:
                text.insert(at, rng.choice(pieces))
        texts.append("".join(text))
    return texts

_ACCESS = re.compile(r'"([A-Z]+) ([^ "?]+)[^ "]* HTTP/[\d.]+" (\d{3})')  # what access_line reads


def _by_regex(message: str) -> tuple[str, int] | None:
    match = _ACCESS.search(message)
    return None if match is None else (match[2], int(match[3]))


def test_access_line_reads_what_the_regex_reads() -> None:
    lines = [
        '172.19.6.111:54088 - "POST /chat/completions HTTP/1.1" 200',
        '10.0.0.1:1 - "GET /health/liveliness?probe=1 HTTP/1.1" 503',
        '"GET /a?b HTTP/2" 2001',  # four digits: the regex takes three
        'x "get /a HTTP/1.1" 200 "POST /b HTTP/1.1" 404',  # the first quote does not match: the second
        '"POST ?x HTTP/1.1" 200 "GET /y HTTP/1.0" 201',
        '"POST /x HTTP/\u0661.1" 200',  # an Arabic-Indic digit: \\d takes it
        '"POST /x HTTP/1.1" \u0662\u0660\u0660',
        '"POST /x HTTP/1.1"  200', '"POST  /x HTTP/1.1" 200', '"POST /x" 200', '"', "", "no quote at all",
    ]
    pieces = ['"', "P", "O", "S", "T", "G", " ", "/", "a", "?", "H", "1", ".", "2", "0", "4", "9", "\u0663",
              "x", "HTTP/", "POST ", '" 200', " HTTP/1.1\" ", "?q=1", '"GET /x', "\n", " HTTP", '" 2']
    lines += _random_texts(random.Random(3), lines[:3], pieces, 14, 50000, 50000)
    matched = 0
    for line in lines:
        assert access_line(line) == _by_regex(line), line
        matched += access_line(line) is not None
    assert matched > 1000  # the random lines do reach the shapes that match



_RETURNED = re.compile(r"(\w+) returned (\d{3})\b")  # what provider_status_in reads
_ERROR_CLASS = re.compile(r"\b([A-Z]\w*(?:Error|Timeout))\b")  # what error_class_in reads


def _error_texts() -> list[str]:
    texts = [
        "litellm.proxy.proxy_server.chat_completion(): Exception occured - litellm.APIError: openai returned 503",
        "litellm.RateLimitError: RateLimitError: OpenAIException - Rate limit reached for requests",
        "litellm.Timeout: APITimeoutError - Request timed out. error_str: Request timed out.",
        "bedrock_runtime returned 429 Too Many Requests", "x returned 5030", "returned 503", " returned 503",
        "a returned returned 503", "Error", "XError", "Timeout", "ReadTimeout", "readTimeout", "ErrorX",
        "APIError_2: x", "_Error", "ÉtatError", "ΩError", "aé returned 50٣", "x returned ٥٠٣", "x returned 503_",
        "Ω returned 404.", "", "no class here",
    ]
    pieces = ["Error", "Timeout", "Err", "Time", " returned ", "returned", " ", "A", "Z", "a", "z", "_", ".", ":",
              "-", "5", "0", "3", "4", "\u0663", "é", "É", "Ω", "²", "litellm.", "openai", "Rate", "Limit", "(", ")"]
    return texts + _random_texts(random.Random(8), texts[:3], pieces, 12, 50000, 30000)


def test_error_class_and_provider_status_read_what_the_regexes_read() -> None:
    classes = statuses = 0
    for text in _error_texts():
        match = _ERROR_CLASS.search(text)
        assert error_class_in(text) == (match[1] if match else ""), text
        match = _RETURNED.search(text)
        assert provider_status_in(text) == (None if match is None else (match[1], int(match[2]))), text
        classes += bool(error_class_in(text))
        statuses += provider_status_in(text) is not None
    assert classes > 5000 and statuses > 1000  # the random texts do reach the shapes that match

def _request(ts: float, team: str, cost: float, reported: float | None = None, model: str = "m") -> Event:
    return request(ts, provider="p", model=model, team=team, key=f"{team}-key", cost=cost, team_spend=reported,
                   budget=50.0)


def test_spend_per_team_and_day_across_midnight_is_the_plain_sum() -> None:
    """Requests that go back and forth over midnight (two sources, slightly out of order): the
    accumulator sums per team of the current day, and what it drains is the sum per (day, team)."""
    rng = random.Random(9)
    midnight = 1789430400.0
    events = [_request(midnight + rng.uniform(-90, 90), rng.choice("abc"), rng.random() / 100,
                       rng.choice([None, rng.uniform(0, 40)])) for _ in range(3000)]
    spend: defaultdict[tuple[int, str], float] = defaultdict(float)
    reported: dict[tuple[int, str], float] = {}
    acc = Partials()
    for ev in events:
        acc.add(ev)
        day = int(ev.ts // 86400)
        spend[(day, ev.team)] += grid_cost(ev.cost)
        if ev.team_spend is not None and ev.team_spend > reported.get((day, ev.team), 0.0):
            reported[(day, ev.team)] = ev.team_spend
    meta = acc.drain_meta()
    assert meta["spend"] == [[d, t, usd] for (d, t), usd in sorted(spend.items())]
    assert meta["reported"] == [[d, t, usd] for (d, t), usd in sorted(reported.items())]
    assert {d for d, _ in spend} == {20710, 20711}
    assert meta["implied"] == [["key", f"{t}-key", {"team": t}] for t in "abc"] + [["model", "m", {"provider": "p"}]]
    assert not acc.has_meta()
    acc.add(_request(midnight + 5, "a", 0.5))  # after a drain the implied labels are noted again
    assert acc.drain_meta()["implied"] == [["key", "a-key", {"team": "a"}], ["model", "m", {"provider": "p"}]]


def test_closing_minutes_takes_exactly_the_buckets_of_those_minutes_in_order() -> None:
    """A worker catching up holds hours of minutes in its accumulator; each close takes only its
    own minutes' buckets, in the order of (kind, key, minute), as the full scan did."""
    rng = random.Random(4)
    t0 = 1789344000.0
    acc = Partials()
    for _ in range(5000):
        acc.add(_request(t0 + rng.uniform(0, 300 * 60), rng.choice("abcdef"), 0.001, model=rng.choice("xyz")))
    everything = dict(acc.buckets)
    first = t0 // 60
    taken = []
    for minute in range(int(first) - 1, int(first) + 300, 7):
        want = sorted(k for k in acc.buckets if k[2] <= minute)
        got = acc.pop_through(minute)
        assert [(kind, key, m) for kind, key, m, _ in got] == want
        assert all(b is everything[(kind, key, m)] for kind, key, m, b in got)
        taken += got
    taken += acc.pop_through(1 << 62)
    assert len(taken) == len(everything) and not acc.buckets and not acc.minutes


def test_an_accumulator_pickled_before_the_minute_index_restores_with_it() -> None:
    acc = Partials()
    t0 = 1789344000.0
    for i in range(200):
        acc.add(_request(t0 + i * 7.0, "ab"[i % 2], 0.01, reported=float(i)))
    state = acc.__getstate__()
    for name in ("minutes", "noted", "day", "day_spend", "day_reported"):
        state.pop(name)
    old_spend = sorted(acc.drain_meta()["spend"])  # drained: what the old accumulator held as spend
    state["spend"] = defaultdict(float, {(int(d), t): usd for d, t, usd in old_spend})

    class OldSnapshot:  # unpickles as an accumulator of the earlier layout would
        def __reduce__(self):
            return (Partials.__new__, (Partials,), state)

    restored = pickle.loads(pickle.dumps(OldSnapshot()))
    assert sorted(restored.minutes) == sorted({k[2] for k in restored.buckets})
    restored.add(_request(t0 + 200 * 7.0, "a", 0.01))
    closed = restored.pop_through(int((t0 + 1000) // 60))
    assert closed and all(m <= (t0 + 1000) // 60 for _, _, m, _ in closed)
    assert restored.drain_meta()["spend"][0][2] > 0
