"""What is particular to ``UnivariateDetector`` (the shared interface is in the battery)."""

from __future__ import annotations

import pickle
import random
from array import array

import pytest

from models.univariate import _STATE, UnivariateDetector


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


@pytest.mark.parametrize("version", [3, 4])
def test_older_state_loads_with_the_newer_parts_fresh(version):
    """v3 lacked the refractory period (it loads expired), v3 and v4 the learned range
    (learned anew from the next point); everything else is carried over."""
    det = UnivariateDetector()
    steady(det, 200)
    state = det.__getstate__()
    added = ("record_bits", "record_tol", "record_after", "lo", "hi", "since_record")
    if version == 3:
        added += ("refractory", "escalate", "since_alarm", "alarm")
    for k in added:
        del state[k]
    state["version"] = version
    old = UnivariateDetector.__new__(UnivariateDetector)
    old.__setstate__(state)
    got, was, new = old.__getstate__(), det.__getstate__(), UnivariateDetector().__getstate__()
    for k in _STATE:
        want = (new if k in added else was)[k]
        assert pickle.dumps(got[k]) == pickle.dumps(want), k  # NaN slots compare equal
    old.update(50.4, t=200 * 300.0)
    assert old.lo == old.hi == 50.4 and old.score_one(1e6, t=201 * 300.0) > 0.5


def test_channel_figures_pickle_as_the_arrays_they_were():
    """The evidence channels' figures are held as nine floats but pickled as the three arrays
    of earlier versions (a worker's snapshot from before loads, and one written now loads there)."""
    det = UnivariateDetector(warmup=50)
    steady(det)
    state = det.__getstate__()
    for k in ("long_mean", "long_var", "cap_rate"):
        assert type(state[k]) is array and state[k].typecode == "d" and len(state[k]) == 3, k
    assert any(state["long_var"]) and any(state["long_mean"])
    copy = UnivariateDetector.__new__(UnivariateDetector)
    copy.__setstate__(state)
    assert copy.__getstate__() == state or pickle.dumps(copy.__getstate__()) == pickle.dumps(state)
    spikes = [(400 + i, 50.0 + (30.0 if i % 17 == 0 else 0.0)) for i in range(120)]
    assert [copy.update(x, t=i * 300.0) for i, x in spikes] == [det.update(x, t=i * 300.0) for i, x in spikes]


def noisy(det: UnivariateDetector, n: int, start: int = 0, offset: float = 0.0, seed: int = 1) -> list[float]:
    rng = random.Random(seed)
    return [det.update(50.0 + offset + rng.gauss(0.0, 1.0), t=(start + i) * 300.0) for i in range(n)]


def test_sustained_shift_is_caught_earlier_with_the_shift_channel():
    """A 3-sigma step, over ten seeds: the short mean of the surprise scores it higher (the
    record evidence, which also sees a step out of the range, is off in both)."""
    wins, gain = 0, 0.0
    for seed in range(2, 12):
        with_shift, without = UnivariateDetector(record_bits=0), UnivariateDetector(shift_span=1, record_bits=0)
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
    """Scores of a spike of ``first`` sigmas and of one of ``second`` sigmas ``gap`` points later
    (the spikes' sizes are set by the surprise channel alone: no record evidence)."""
    rng, det = random.Random(1), UnivariateDetector(warmup=50, refractory=refractory, record_bits=0)
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


def bimodal(det: UnivariateDetector, n: int = 2000, seed: int = 4) -> None:
    """A load that flips between 30 and 100: its noise is as wide as its range."""
    rng = random.Random(seed)
    for i in range(n):
        det.update(rng.choice([30.0, 100.0]) + rng.gauss(0.0, 1.0), t=i * 300.0)


def test_a_value_below_anything_seen_is_a_record_the_sigmas_miss():
    with_record, without = UnivariateDetector(), UnivariateDetector(record_bits=0)
    for det in (with_record, without):
        bimodal(det)
    assert with_record.score_one(15.0, t=2000 * 300.0) > 0.3 > 0.1 > without.score_one(15.0, t=2000 * 300.0)
    assert with_record.score_one(50.0, t=2000 * 300.0) == 0.0  # inside the range: no record


def test_a_trend_keeps_setting_records_without_alarms():
    """Records every few points are routine: they add (almost) nothing to a trend's scores."""
    def scores(det: UnivariateDetector) -> list[float]:
        rng = random.Random(4)
        return [det.update(i * 0.05 + rng.gauss(0.0, 1.0), t=i * 300.0) for i in range(3000)]

    with_record, without = scores(UnivariateDetector()), scores(UnivariateDetector(record_bits=0))
    assert max(with_record[300:]) < 0.27 and max(with_record) - max(without) < 0.05
