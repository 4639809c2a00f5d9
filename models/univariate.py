"""Univariate online anomaly detector: one number per event, one detector per series.

Design (why each part is there):

1. **Robust forecasters.** Two exponentially weighted (EW) levels, fast and slow, and an
   hour-of-day seasonal level. Each keeps an EW mean *absolute* residual as its scale
   (robust to the heavy tails of real metrics; x1.25 turns a mean absolute deviation
   into a Gaussian sigma). Learning uses residuals clipped at ``clip`` scales (a Huber
   update), so a spike moves nothing much while a true level shift is followed within
   a few dozen points.
2. **Seasonality only where it helps.** The seasonal forecaster is used for a point
   only when the timestamps let us infer a sampling step well under a day and its
   running error is smaller than the fast level's (NAB mixes 5-minute, hourly and
   irregular series; a wrong seasonal model would only add noise).
3. **Evidence, multi-scale.** Per point: the one-step surprise (residual of the better
   forecaster, in scales) and the level-shift evidence (fast minus slow level, in slow
   scales, which averages noise out so a small persistent shift stands out).
4. **Anomaly likelihood** (Ahmad et al., "Unsupervised real-time anomaly detection for
   streaming data", Neurocomputing 2017). The raw evidence is averaged over a short
   EW window and compared with its own long-run EW mean and variance; the Gaussian
   tail probability is mapped to [0, 1] on a log scale. That calibrates every series
   to its own noise level, so one threshold fits all series.
5. **Protection.** A point scored above ``protect`` is not learned by the forecasters
   (as River's ``AnomalyFilter(protect_anomaly_detector=True)``), for at most
   ``max_protect`` points in a row, after which the new regime is accepted.

Missing values (None, NaN, ±inf) score 0 and are not learned: a gap is not evidence.
All state is a fixed set of floats plus 24 seasonal slots: O(1) memory per series.
"""

from __future__ import annotations

import math
from datetime import datetime, timezone

__all__ = ["UnivariateDetector"]

_SLOTS = 168  # hour-of-week baseline: hour of day, and weekdays apart from weekends


def _epoch(t: datetime | float | None) -> float | None:
    if t is None:
        return None
    if isinstance(t, datetime):
        if t.tzinfo is None:
            t = t.replace(tzinfo=timezone.utc)
        return t.timestamp()
    t = float(t)
    return t if math.isfinite(t) else None


def _finite(x: float | None) -> float | None:
    if x is None:
        return None
    try:
        x = float(x)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def _neg_log10_tail(z: float) -> float:
    """-log10 P(Z > z) for a standard normal, accurate far into the tail."""
    if z < 5.0:
        return -math.log10(0.5 * math.erfc(z / math.sqrt(2.0)))
    # Mills ratio: P(Z > z) ~ phi(z) / z for large z
    return (0.5 * z * z + math.log(z * math.sqrt(2.0 * math.pi))) / math.log(10.0)


def _ew(a: float, mean: float, x: float) -> float:
    return mean + a * (x - mean)


def _clip(r: float, bound: float) -> float:
    return max(-bound, min(bound, r))


class UnivariateDetector:
    """Online anomaly detector for one numeric series (see the module docstring).

    >>> det = UnivariateDetector(warmup=20)
    >>> scores = [det.update(10.0 + (i % 3) * 0.1, t=i * 60.0) for i in range(200)]
    >>> max(scores[:20]), det.score_one(25.0, t=200 * 60.0) > 0.5
    (0.0, True)
    """

    VERSION = 1
    _STATE = (
        "n", "last_t", "step", "fast", "fast_mad", "slow", "slow_mad", "season", "season_mad",
        "drift", "short", "long_mean", "long_var", "protect_run",
    )

    def __init__(
        self,
        warmup: int = 150,
        fast_span: int = 5,
        slow_span: int = 300,
        short_span: int = 5,
        long_span: int = 2000,
        mad_span: int = 100,
        season_span: int = 30,
        clip: float = 4.0,
        zcap: float = 8.0,
        sd_floor: float = 0.2,
        protect: float = 4.0,
        max_protect: int = 60,
        peak_halflife: float = 50.0,
        seed: int = 0,
    ) -> None:
        self.peak_decay = 0.5 ** (1.0 / peak_halflife)
        self.warmup, self.clip, self.zcap, self.sd_floor = warmup, clip, zcap, sd_floor
        self.protect, self.max_protect = protect, max_protect
        self.seed = seed  # the detector is deterministic; kept for the River interface
        self.a_fast, self.a_slow = 2.0 / (fast_span + 1), 2.0 / (slow_span + 1)
        self.a_short, self.a_long = 2.0 / (short_span + 1), 2.0 / (long_span + 1)
        self.a_mad, self.a_season = 2.0 / (mad_span + 1), 2.0 / (season_span + 1)
        self._reset()

    def _reset(self) -> None:
        self.n, self.last_t, self.step = 0, None, None
        self.fast = self.fast_mad = self.slow = self.slow_mad = 0.0
        self.season: list[float | None] = [None] * _SLOTS
        self.season_mad = 0.0
        # per evidence channel: one-step surprise, distance from the slow level
        self.short, self.long_mean, self.long_var = [0.0] * 2, [0.0] * 2, [0.0] * 2
        self.protect_run = 0
        self.peak = 0.0

    # -- River interface ---------------------------------------------------------------

    def score_one(self, x: float | None, t: datetime | float | None = None) -> float:
        """Anomaly score in [0, 1] of ``x`` at ``t``, before learning it; no state changes."""
        return self._step(x, t, learn=False)

    def learn_one(self, x: float | None, t: datetime | float | None = None) -> None:
        """Learn ``x`` (unless it scores above ``protect``: see the module docstring)."""
        self._step(x, t, learn=True)

    def update(self, x: float | None, t: datetime | float | None = None) -> float:
        """Score then learn, in one pass; returns the score ``score_one`` would have given."""
        return self._step(x, t, learn=True)

    # -- internals ---------------------------------------------------------------------

    def _sigma(self, mad: float) -> float:
        # 1.25 * mean absolute deviation = sigma for Gaussian noise; the floor keeps a
        # flat line from turning float rounding into infinite surprise.
        return 1.25 * mad + 1e-4 * abs(self.slow) + 1e-9

    def _slot(self, t: datetime | float | None) -> int | None:
        """Hour of week, when the series is sampled at least hourly."""
        if t is None or self.step is None or self.step > 3600.0:
            return None
        if isinstance(t, datetime):
            return t.weekday() * 24 + t.hour
        return (int(float(t) // 3600.0) + 72) % _SLOTS  # the epoch was a Thursday

    def _surprise(self, x: float, slot: int | None) -> float:
        """Residual of the better forecaster, in its own robust sigmas."""
        offset = self.season[slot] if slot is not None else None
        if offset is not None and self.season_mad < self.fast_mad:
            return (x - self.slow - offset) / self._sigma(self.season_mad)
        return (x - self.fast) / self._sigma(self.fast_mad)

    def _bits(self, short: list[float]) -> float:
        """Numenta's anomaly likelihood, as -log10 tail, of the most surprising channel."""
        bits = [
            _neg_log10_tail((s - m) / (math.sqrt(v) + self.sd_floor))
            for s, m, v in zip(short, self.long_mean, self.long_var)
        ]
        return max(bits)

    def _step(self, x: float | None, t: datetime | float | None, learn: bool) -> float:
        x = _finite(x)
        if x is None:
            return 0.0
        if self.n == 0:
            if learn:
                self._first(x, t)
            return 0.0
        slot = self._slot(t)
        z = max(-self.zcap, min(self.zcap, self._surprise(x, slot)))
        z_slow = (x - self.slow) / self._sigma(self.slow_mad)
        evidence = (abs(z), min(self.zcap, abs(z_slow)))
        short = [_ew(self.a_short, s, e) for s, e in zip(self.short, evidence)]
        bits = self._bits(short) if self.n >= self.warmup else 0.0
        peak = self.peak * self.peak_decay
        onset = max(0.0, bits - peak)
        # Numenta clips at likelihood 1 - 1e-10, which ties every strong anomaly at 1.0;
        # a smooth map of -log10(tail) keeps them ranked: 10 -> 0.5, 20 -> 0.67, ...
        score = onset / (onset + 10.0)
        if learn:
            self.short, self.peak = short, max(peak, bits)
            self._learn_likelihood(short)
            self._observe_time(t)
            if score > self.protect and self.protect_run < self.max_protect:
                self.protect_run += 1
            else:
                self.protect_run = 0
                self._learn_level(x, slot)
            self.n += 1
        return score

    def _first(self, x: float, t: datetime | float | None) -> None:
        self.fast = self.slow = x
        self._observe_time(t)
        self.n = 1

    def _rate(self, a: float, count: int) -> float:
        """EW rate with a running-mean start, so early points do not bias for long."""
        return max(a, 1.0 / (count + 1))

    def _observe_time(self, t: datetime | float | None) -> None:
        """Track the median sampling step (multiplicative sign updates: robust to gaps)."""
        ts = _epoch(t)
        if ts is None:
            return
        if self.last_t is not None and ts > self.last_t:
            dt = ts - self.last_t
            if self.step is None:
                self.step = dt
            elif dt != self.step:
                self.step *= math.exp(0.05 if dt > self.step else -0.05)
        if self.last_t is None or ts > self.last_t:
            self.last_t = ts

    def _learn_likelihood(self, short: float) -> None:
        start = self.warmup // 3  # let the forecasters settle before calibrating on them
        if self.n < start:
            return
        a = self._rate(self.a_long, self.n - start)
        for k, s in enumerate(short):
            delta = s - self.long_mean[k]
            self.long_mean[k] += a * delta
            self.long_var[k] = (1.0 - a) * (self.long_var[k] + a * delta * delta)

    def _learn_level(self, x: float, slot: int | None) -> None:
        """Huber-style updates: residuals clipped at ``clip`` sigmas move the levels."""
        a_mad = self._rate(self.a_mad, self.n)
        r = x - self.fast
        bound = self.clip * self._sigma(self.fast_mad) if self.n > 10 else math.inf
        self.fast += self._rate(self.a_fast, self.n) * _clip(r, bound)
        self.fast_mad = _ew(a_mad, self.fast_mad, min(abs(r), bound))
        r = x - self.slow
        bound = self.clip * self._sigma(self.slow_mad) if self.n > 10 else math.inf
        self.slow += self._rate(self.a_slow, self.n) * _clip(r, bound)
        self.slow_mad = _ew(a_mad, self.slow_mad, min(abs(r), bound))
        if slot is not None:
            self._learn_season(x, slot)

    def _learn_season(self, x: float, slot: int) -> None:
        r = x - self.slow
        offset = self.season[slot]
        if offset is None:
            self.season[slot] = r
            self.season_mad = max(self.season_mad, self.fast_mad * 2.0)  # earn trust first
            return
        err = r - offset
        bound = self.clip * self._sigma(self.season_mad)
        self.season[slot] = offset + self.a_season * _clip(err, bound)
        self.season_mad = _ew(self.a_mad, self.season_mad, min(abs(err), bound))

    # -- persistence -------------------------------------------------------------------

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["version"] = self.VERSION
        return state

    def __setstate__(self, state: dict) -> None:
        version = state.pop("version", None)
        if version != self.VERSION:
            raise ValueError(f"UnivariateDetector state version {version!r}, expected {self.VERSION}")
        self.__dict__.update(state)
