"""What is particular to ``UnivariateDetector`` (the shared interface is in the battery)."""

from __future__ import annotations

import pickle
import random

import pytest

from models.univariate import UnivariateDetector


def steady(det: UnivariateDetector, n: int = 400) -> None:
    for i in range(n):
        det.update(50.0 + (i % 5) * 0.2, t=i * 300.0)


def test_flagged_spike_is_not_learned():
    det = UnivariateDetector(warmup=50)
    steady(det)
    fast, slow = det.fast, det.slow
    assert det.update(500.0, t=400 * 300.0) > det.protect
    assert (det.fast, det.slow) == (fast, slow)


def test_level_shift_is_accepted_after_max_protect():
    det = UnivariateDetector(warmup=50)
    steady(det)
    scores = [det.update(80.0, t=(400 + i) * 300.0) for i in range(300)]
    assert scores[0] > 0.3 and max(scores[50:]) < 0.1
    assert abs(det.fast - 80.0) < 1.0


def test_state_carries_a_version():
    det = UnivariateDetector()
    steady(det, 10)
    state = det.__getstate__()
    assert state["version"] == UnivariateDetector.VERSION
    state["version"] = 0
    with pytest.raises(ValueError):
        pickle.loads(pickle.dumps(det)).__setstate__(state)


def test_v3_state_loads_with_the_refractory_period_expired():
    det = UnivariateDetector()
    steady(det, 200)
    state = det.__getstate__()
    for k in ("refractory", "escalate", "since_alarm", "alarm"):
        del state[k]
    state["version"] = 3
    old = UnivariateDetector.__new__(UnivariateDetector)
    old.__setstate__(state)
    assert pickle.dumps(old) == pickle.dumps(det)


def noisy(det: UnivariateDetector, n: int, start: int = 0, offset: float = 0.0, seed: int = 1) -> list[float]:
    rng = random.Random(seed)
    return [det.update(50.0 + offset + rng.gauss(0.0, 1.0), t=(start + i) * 300.0) for i in range(n)]


def test_sustained_shift_is_caught_earlier_with_the_shift_channel():
    """A 3-sigma step, over ten seeds: the short mean of the surprise scores it higher."""
    wins, gain = 0, 0.0
    for seed in range(2, 12):
        with_shift, without = UnivariateDetector(), UnivariateDetector(shift_span=1)
        for det in (with_shift, without):
            noisy(det, 2000)
        a = max(noisy(with_shift, 20, start=2000, offset=3.0, seed=seed))
        b = max(noisy(without, 20, start=2000, offset=3.0, seed=seed))
        wins, gain = wins + (a >= b), gain + (a - b) / 10
    assert wins >= 9 and gain > 0.03


def spiky(det: UnivariateDetector, seed: int) -> list[float]:
    rng = random.Random(seed)
    return [det.update(50.0 + rng.gauss(0.0, 1.0) + (rng.choice([5, 8, 12]) if rng.random() < 0.02 else 0),
                       t=i * 300.0) for i in range(4000)]


def test_hold_reports_an_alarm_once_unless_a_stronger_one_follows():
    def repeats(scores: list[float]) -> int:  # a reported score not above one of the 3 before it
        return sum(1 for i, s in enumerate(scores) if s >= 0.2 and max(scores[max(0, i - 3):i], default=0) >= s)

    held = sum(repeats(spiky(UnivariateDetector(), seed)) for seed in range(5, 10))
    unheld = sum(repeats(spiky(UnivariateDetector(hold_halflife=1e-6, refractory=0), seed)) for seed in range(5, 10))
    assert held == 0 < unheld


def test_daily_profile_flags_a_missing_daily_peak():
    """Hourly points, a daily peak 09:00-17:00; after ten days, a day without it is an
    anomaly (the weekly profile alone has seen that hour once: not yet trusted)."""
    det = UnivariateDetector(warmup=48)
    rng = random.Random(3)
    level = [80.0 if 9 <= h < 17 else 20.0 for h in range(24)]
    for i in range(24 * 10):
        det.update(level[i % 24] + rng.gauss(0.0, 1.0), t=i * 3600.0)
    flat = [det.update(20.0 + rng.gauss(0.0, 1.0), t=(24 * 10 + h) * 3600.0) for h in range(24)]
    assert max(flat[9:12]) > 0.3


def second_spike(first: float, gap: int, second: float, refractory: int) -> tuple[float, float]:
    """Scores of a spike of ``first`` sigmas and of one of ``second`` sigmas ``gap`` points later."""
    rng, det = random.Random(1), UnivariateDetector(warmup=50, refractory=refractory)
    for i in range(1000):
        det.update(50.0 + rng.gauss(0.0, 1.0), t=i * 300.0)
    alarm = det.update(50.0 + first, t=1000 * 300.0)
    for i in range(1, gap):
        det.update(50.0 + rng.gauss(0.0, 1.0), t=(1000 + i) * 300.0)
    return alarm, det.update(50.0 + second, t=(1000 + gap) * 300.0)


@pytest.mark.parametrize("first, gap, second, refractory, reported", [
    (6.0, 40, 6.0, 50, False),  # the same onset again within the refractory period: part of it
    (6.0, 40, 6.0, 0, True),  # ... a new alarm without one
    (6.0, 70, 6.0, 50, True),  # after the refractory period: a new alarm
    (4.4, 20, 40.0, 50, True),  # at least twice the alarm: escalates through the period
    (4.6, 20, 40.0, 50, False),  # strong, but less than twice the (stronger) alarm
])
def test_refractory_period_after_a_flagged_alarm(first, gap, second, refractory, reported):
    alarm, score = second_spike(first, gap, second, refractory)
    assert alarm > 0.3  # flagged: it opens a refractory period
    assert (score > 0.0) is reported
