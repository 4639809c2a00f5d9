"""What is particular to ``UnivariateDetector`` (the shared interface is in the battery)."""

from __future__ import annotations

import pickle

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
