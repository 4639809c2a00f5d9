"""One battery for every online detector with the River interface (STYLE §9).

A detector factory takes ``seed`` and ``warmup`` and returns an object with
``score_one(x, t) -> float`` (before learning, no side effects) and ``learn_one(x, t)``.
Decided behaviour for bad input: None, NaN and ±inf are *skipped* (score 0.0, not learned);
a missing (None) or repeated timestamp is accepted.

The lead adds the service's multi-series detectors to ``DETECTORS``.
"""

from __future__ import annotations

import math
import pickle
import random
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from models.univariate import UnivariateDetector

WARMUP = 50
DETECTORS: list[tuple[str, Callable[..., Any]]] = [
    ("univariate", lambda seed=0, warmup=WARMUP: UnivariateDetector(seed=seed, warmup=warmup)),
]
START = datetime(2026, 3, 2, tzinfo=timezone.utc)
STEP = timedelta(minutes=5)


def stream(n: int = 600, seed: int = 7) -> list[tuple[float, datetime]]:
    """A daily cycle with noise, sampled every 5 minutes, plus a few planted spikes."""
    rng = random.Random(seed)
    points = []
    for i in range(n):
        x = 100.0 + 10.0 * math.sin(2 * math.pi * i / 288) + rng.gauss(0.0, 1.0)
        points.append((x, START + i * STEP))
    return points


def run(det: Any, points: list[tuple[float | None, Any]]) -> list[float]:
    scores = []
    for x, t in points:
        scores.append(det.score_one(x, t))
        det.learn_one(x, t)
    return scores


def auc(pos: list[float], neg: list[float]) -> float:
    """Probability that a planted anomaly outscores a normal point (ties count half)."""
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


params = pytest.mark.parametrize("name,factory", DETECTORS, ids=[n for n, _ in DETECTORS])


@params
def test_seeded_determinism(name, factory):
    assert run(factory(seed=3), stream()) == run(factory(seed=3), stream())


@params
def test_pickle_round_trip_scores_identically(name, factory):
    points = stream()
    det = factory()
    run(det, points[:300])
    clone = pickle.loads(pickle.dumps(det))
    assert run(clone, points[300:]) == run(det, points[300:])


@params
def test_silent_during_warmup(name, factory):
    points = stream(WARMUP)
    points[WARMUP // 2] = (1e6, points[WARMUP // 2][1])  # even a huge spike
    assert all(s == 0.0 for s in run(factory(), points))


@params
def test_scores_finite_and_in_unit_interval_on_bad_input(name, factory):
    points: list[tuple[Any, Any]] = stream(400)
    bad = [None, math.nan, math.inf, -math.inf, 1e300, -1e300, 0.0]
    for k, x in enumerate(bad):
        points[100 + 40 * k] = (x, points[100 + 40 * k][1])
    scores = run(factory(), points)
    assert all(math.isfinite(s) and 0.0 <= s <= 1.0 for s in scores)


@params
def test_missing_values_are_skipped(name, factory):
    det, points = factory(), stream(300)
    run(det, points)
    before = pickle.dumps(det)
    for x in (None, math.nan, math.inf):
        assert det.score_one(x, points[-1][1] + STEP) == 0.0
        det.learn_one(x, points[-1][1] + STEP)
    assert pickle.dumps(det) == before


@params
def test_score_one_does_not_learn(name, factory):
    det = factory()
    run(det, stream(300))
    before = pickle.dumps(det)
    for x in (100.0, 500.0, -3.0):
        det.score_one(x, START + 300 * STEP)
    assert pickle.dumps(det) == before


@params
def test_planted_spikes_outscore_normal_points(name, factory):
    points = stream(1200)
    planted = range(400, 1200, 97)
    for i in planted:
        points[i] = (points[i][0] + 25.0, points[i][1])  # 25 sigmas above the cycle
    scores = run(factory(), points)
    pos = [scores[i] for i in planted]
    neg = [s for i, s in enumerate(scores) if i >= 300 and i not in planted]
    assert auc(pos, neg) >= 0.8


@params
@pytest.mark.parametrize("times", ["none", "epoch", "gaps", "repeated", "naive"])
def test_timestamps_missing_new_or_irregular(name, factory, times):
    points = stream(500)
    if times == "none":
        points = [(x, None) for x, _ in points]
    elif times == "epoch":
        points = [(x, t.timestamp()) for x, t in points]
    elif times == "gaps":
        points = [(x, t + timedelta(days=3) * (i > 250)) for i, (x, t) in enumerate(points)]
    elif times == "repeated":
        points = [(x, points[i - i % 3][1]) for i, (x, _) in enumerate(points)]
    else:
        points = [(x, t.replace(tzinfo=None)) for x, t in points]
    scores = run(factory(), points)
    assert len(scores) == 500 and all(0.0 <= s <= 1.0 for s in scores)


# --- the same checks for the multi-series detector (``models.anomaly.AnomalyModels``) ----------
# It is driven by a whole engine (series appear as traffic does), so its battery runs a
# synthetic gateway instead of a number stream.

from models.anomaly import AnomalyModels  # noqa: E402
from tests import synth_gateway as SG  # noqa: E402

MULTI: list[tuple[str, Callable[..., Any]]] = [
    ("anomaly-models", lambda seed=0, warmup=WARMUP: SG.engine(seed=seed, warmup=warmup)),
]
multi = pytest.mark.parametrize("name,factory", MULTI, ids=[n for n, _ in MULTI])


def _models(eng) -> AnomalyModels:
    return next(d for d in eng.extra_detectors if isinstance(d, AnomalyModels))


def _scores(eng) -> dict:
    return _models(eng).score_minute(eng, eng.closed_minute)


@multi
def test_multi_seeded_determinism(name, factory):
    plants = [SG.Plant(100, 130, team="analytics", cost_x=5.0)]
    a, b = factory(seed=3), factory(seed=3)
    assert SG.run(a, range(0, 130), plants=plants) == SG.run(b, range(0, 130), plants=plants)
    assert pickle.dumps(_models(a)) == pickle.dumps(_models(b))


@multi
def test_multi_pickle_round_trip(name, factory):
    eng = factory()
    SG.run(eng, range(0, 90))
    clone = pickle.loads(pickle.dumps(eng))
    plants = [SG.Plant(100, 130, provider="openai", fail=True)]
    assert SG.run(clone, range(90, 130), plants=plants) == SG.run(eng, range(90, 130), plants=plants)
    restored = pickle.loads(pickle.dumps(_models(eng)))
    assert restored.tracks.keys() == _models(eng).tracks.keys()


@multi
def test_multi_series_appearing_and_disappearing(name, factory):
    eng = factory()
    newcomer = SG.Team("newcomer", 30, "mistral", "mistral-large", 0.2, error=0.5)
    SG.run(eng, range(0, 80))
    notes = SG.run(eng, range(80, 100), teams=SG.TEAMS + (newcomer,))  # appears, wild from the start
    notes += SG.run(eng, range(100, 140), teams=SG.TEAMS[:1])  # two teams vanish
    assert not [a for a in SG.anomaly_alerts(notes) if "newcomer" in str(a["labels"])]  # in its warm-up
    assert all(0.0 <= s <= 1.0 for s in _scores(eng).values())


@multi
def test_multi_silent_during_warmup(name, factory):
    eng = factory()
    notes = SG.run(eng, range(0, WARMUP), plants=[SG.Plant(WARMUP // 2, WARMUP, cost_x=50.0, fail=True)])
    assert SG.anomaly_alerts(notes) == []
    assert all(s == 0.0 for s in _scores(eng).values())


@multi
def test_multi_scores_in_unit_interval(name, factory):
    eng = factory()
    seen, onsets, plants = [], [], [SG.Plant(120, 140, cost_x=30.0, fail=True)]
    for start in range(0, 160, 20):
        SG.run(eng, range(start, start + 20), plants=plants)
        seen.extend(_scores(eng).values())  # re-scores of learned points
        onsets.extend(t.score for t in _models(eng).tracks.values())  # what the updates reported
    assert seen and all(math.isfinite(s) and 0.0 <= s <= 1.0 for s in seen + onsets)
    assert max(onsets) > 0.0


@multi
def test_multi_score_before_learn(name, factory):
    eng = factory()
    SG.run(eng, range(0, 100))
    before = pickle.dumps(_models(eng))
    _scores(eng)
    assert pickle.dumps(_models(eng)) == before
