"""Univariate online anomaly detector: one number per event, one detector per series.

How it works, and why each part is there:

1. **Robust forecasters.** A fast and a slow exponentially weighted (EW) level, and two
   seasonal profiles on top of the slow level: hour of day and hour of week. Each keeps an
   EW mean *absolute* residual as its scale (robust to heavy tails; x1.25 turns it into a
   Gaussian sigma). Learning clips residuals at ``clip`` sigmas (a Huber update), so a
   spike barely moves a level while a real level shift is followed within tens of points.
2. **Seasonality only where it helps.** A seasonal profile is used only when the sampling
   step inferred online from the timestamps is an hour or less *and* its running error is
   the lowest of the forecasters'. The daily profile is learned after one day (most short
   series), the weekly one tells weekdays from weekends once a week has been seen. NAB
   mixes 5-minute, hourly and irregular series; a seasonal model that does not fit would
   only add noise.
3. **Three evidence channels.** The one-step surprise (residual of the best forecaster, in
   its sigmas) catches spikes; a short EW mean of the signed surprise (span ``shift_span``)
   catches a sustained shift whose single points are unremarkable (noise averages out
   before the fast level has followed); the distance from the slow level (in slow sigmas)
   catches slow drifts out of the usual range.
   A fourth, *record* evidence is about the range ever seen rather than about the noise:
   a value beyond the lowest or highest learned value by more than ``record_tol`` of that
   range (Numenta's "spatial anomaly" in its NAB detector) is worth
   ``record_bits * log10(1 + m)`` bits, where ``m`` is the number of points since the range
   last grew. In a series whose range has settled, a new record after ``m`` quiet points
   has a chance of about ``1 / m``, while a series that keeps setting records (a trend, a
   range still filling in) gets little from it; and it counts only once ``record_after``
   points have been learned. It catches what the sigma-based channels cannot: a value
   outside anything seen in a series whose noise is as wide as its range (a bimodal
   load, a spike train).
4. **Anomaly likelihood** (Ahmad et al., "Unsupervised real-time anomaly detection for
   streaming data", Neurocomputing 2017). Each channel is compared with its own long-run
   EW mean and variance; the Gaussian tail probability, as ``bits = -log10(tail)``, is
   what is surprising *for this series*, so one threshold fits every series. The Gaussian
   tail is far too confident for evidence that keeps hitting the cap ``zcap`` (e.g. regular
   spikes on a flat or quantised line, where the robust scale collapses to ~0): each channel
   also tracks the EW rate of capped evidence, and once the cap has been hit at least
   ``cap_hits`` times per ``long_span`` points, a capped point is worth at most
   ``-log10(rate) + cap_slack`` bits, i.e. it is bounded by how often it actually happens.
   Series whose cap hits are rare (the usual case) are unaffected. Numenta
   also averages the raw score over a short window; measured on NAB that only delayed
   detections, so there is none here.
5. **Onset, not persistence.** The score is the excess of ``bits`` over the decayed
   peak of recent ``bits`` (half-life ``peak_halflife`` points): an incident raises the
   score once, when it starts or gets clearly worse, instead of on every point it
   lasts. Mapped to [0, 1] as ``onset / (onset + 10)``, monotone and unsaturated, so
   strong anomalies stay ranked. A score is then reported only if it beats the decayed
   highest score of recent points (half-life ``hold_halflife``), else 0: a staircase of
   onsets (4, 8, 12 bits) is one alarm, not three. After a *flagged* alarm (above
   ``protect``) nothing is reported for ``refractory`` points unless it is at least
   ``escalate`` times that alarm: an incident's aftershocks and its return to normal are
   part of it, not new alarms, while a much stronger onset still gets through (a blip
   must not mute the outage that follows it). NAB likewise credits only the first
   detection in a window and charges every one outside.
6. **Protection.** A point scored above ``protect`` is not learned by the forecasters
   (River's ``AnomalyFilter(protect_anomaly_detector=True)``), for at most
   ``max_protect`` points in a row, after which the new regime is accepted.

Missing values (None, NaN, ±inf) score 0 and are not learned: a gap is not evidence. A
missing timestamp only disables the seasonal forecasters for that point. State is ~45
numbers plus two float arrays (24 + 168 profile slots, the 2 profiles' deviations): O(1)
memory, about 2.2 KB in memory per detector.
"""

from __future__ import annotations

import math
from array import array
from datetime import datetime, timezone
from typing import ClassVar, Final

__all__ = ["UnivariateDetector"]

# seasonal profiles as (period, slot length) in seconds: hour of day, hour of week; their
# slots are kept one after the other in one float array
_SEASONS: Final = ((86400.0, 3600.0), (604800.0, 3600.0))
_FIRST_SLOT: Final = (0, 24)
_ALL_SLOTS: Final = 24 + 168
_EPOCH_MONDAY: Final = 3 * 86400.0  # 1970-01-01 was a Thursday
_LN10: Final = math.log(10.0)
# state added by each version, filled in from a fresh detector when an older state loads
_ADDED_IN = {4: ("refractory", "escalate", "since_alarm", "alarm"),
             5: ("record_bits", "record_tol", "record_after", "lo", "hi", "since_record")}


def _epoch(t: datetime | float | None) -> float | None:
    """Seconds since the epoch; naive datetimes are taken as UTC."""
    if t is None:
        return None
    if isinstance(t, datetime):
        return (t if t.tzinfo else t.replace(tzinfo=timezone.utc)).timestamp()
    t = float(t)
    return t if math.isfinite(t) else None


def _finite(x: object) -> float | None:
    try:
        x = float(x)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def _neg_log10_tail(z: float) -> float:
    """-log10 P(Z > z) for a standard normal, accurate far into the tail."""
    if z < 5.0:
        return -math.log10(0.5 * math.erfc(z / math.sqrt(2.0)))
    # Mills ratio: P(Z > z) ~ phi(z) / z for large z, where erfc underflows
    return (0.5 * z * z + math.log(z * math.sqrt(2.0 * math.pi))) / _LN10


def _clip(r: float, bound: float) -> float:
    return max(-bound, min(bound, r))


# The detector's attributes: its slots and its pickled state (a compiled class, setup.py, has no
# ``__slots__`` to read back).
_STATE = ("warmup", "clip", "zcap", "sd_floor", "protect", "max_protect", "cap_slack",
          "cap_routine", "seed", "a_fast", "a_slow", "a_mad", "a_season", "a_long", "a_shift",
          "peak_decay", "hold_decay", "n", "last_t", "step", "fast", "fast_mad", "slow",
          "slow_mad", "shift", "season", "season_mad", "long_mean", "long_var", "cap_rate",
          "peak", "held", "protect_run", "refractory", "escalate", "since_alarm", "alarm",
          "record_bits", "record_tol", "record_after", "lo", "hi", "since_record")
# The three evidence channels' figures are pickled as three float arrays (``long_mean``,
# ``long_var``, ``cap_rate``: one entry per channel) and held as nine float attributes: compiled,
# an attribute is a native double, where an array element is a generic index and a boxed float.
_CHANNELS: Final = {"long_mean": ("m0", "m1", "m2"), "long_var": ("v0", "v1", "v2"),
                    "cap_rate": ("r0", "r1", "r2")}
_SLOTS = tuple(k for k in _STATE if k not in _CHANNELS) + tuple(a for names in _CHANNELS.values() for a in names)


class UnivariateDetector:
    """Online anomaly detector for one numeric series (see the module docstring).

    ``score_one(x, t)`` scores before learning, ``learn_one(x, t)`` learns, and
    ``update(x, t)`` does both in one pass. ``t`` is a datetime or epoch seconds or None.

    >>> det = UnivariateDetector(warmup=20)
    >>> scores = [det.update(10.0 + (i % 3) * 0.1, t=i * 60.0) for i in range(200)]
    >>> max(scores[:20]), det.score_one(25.0, t=200 * 60.0) > 0.5
    (0.0, True)
    """

    # 3: daily + weekly profiles, shift channel, score hold; 4: refractory period; 5: record evidence
    VERSION: ClassVar[int] = 5

    # slots, and float arrays rather than lists: ~2.2 KB in memory per detector
    __slots__ = _SLOTS

    def __init__(
        self,
        warmup: int = 150,
        fast_span: int = 10,
        slow_span: int = 200,
        mad_span: int = 300,
        season_span: int = 30,
        long_span: int = 5000,
        shift_span: int = 8,
        clip: float = 4.0,
        zcap: float = 8.0,
        sd_floor: float = 0.1,
        peak_halflife: float = 60.0,
        hold_halflife: float = 30.0,
        refractory: int = 50,
        escalate: float = 2.0,
        protect: float = 0.3,
        max_protect: int = 5,
        cap_hits: float = 20.0,
        cap_slack: float = 3.0,
        record_bits: float = 3.0,
        record_tol: float = 0.01,
        record_after: int = 300,
        seed: int = 0,
    ) -> None:
        # spans are in points (an EW mean with rate 2 / (span + 1) has that centre of mass)
        self.warmup, self.clip, self.zcap, self.sd_floor = warmup, clip, zcap, sd_floor
        self.protect, self.max_protect = protect, max_protect
        self.cap_slack = cap_slack
        # EW rate of capped evidence above which a capped point counts as routine
        self.cap_routine = cap_hits / (long_span + 1.0)
        self.seed = seed  # nothing is random; kept so every detector takes the same arguments
        self.a_fast, self.a_slow = 2.0 / (fast_span + 1), 2.0 / (slow_span + 1)
        self.a_mad, self.a_season = 2.0 / (mad_span + 1), 2.0 / (season_span + 1)
        self.a_long, self.a_shift = 2.0 / (long_span + 1), 2.0 / (shift_span + 1)
        self.peak_decay = 0.5 ** (1.0 / peak_halflife)
        self.refractory, self.escalate = refractory, escalate
        self.since_alarm, self.alarm = refractory, 0.0  # points since the last flagged alarm, its score
        self.hold_decay = 0.5 ** (1.0 / hold_halflife)
        self.n = 0
        self.last_t: float | None = None
        self.step: float | None = None
        self.fast = self.fast_mad = self.slow = self.slow_mad = self.shift = 0.0
        # NaN = slot not seen yet; 8 bytes a slot instead of a 32-byte float object
        self.season = array("d", [math.nan]) * _ALL_SLOTS
        self.season_mad = array("d", [0.0]) * len(_SEASONS)
        # per evidence channel (0: one-step surprise, 1: its short mean, 2: distance from the slow
        # level): the long-run mean and variance of its evidence, and its rate of capped points
        self.m0 = self.m1 = self.m2 = self.v0 = self.v1 = self.v2 = self.r0 = self.r1 = self.r2 = 0.0
        self.peak = self.held = 0.0
        self.protect_run = 0
        self.record_bits, self.record_tol, self.record_after = record_bits, record_tol, record_after
        self.lo = self.hi = math.nan  # the learned range, and points since it last grew
        self.since_record = 0

    # -- River interface ---------------------------------------------------------------

    def score_one(self, x: float | None, t: datetime | float | None = None) -> float:
        """Anomaly score in [0, 1] of ``x`` at ``t``, before learning it; no state changes."""
        return self._step(x, t, learn=False)

    def learn_one(self, x: float | None, t: datetime | float | None = None) -> None:
        """Learn ``x`` (unless it scores above ``protect``: see the module docstring)."""
        self._step(x, t, learn=True)

    def update(self, x: float | None, t: datetime | float | None = None) -> float:
        """Score then learn in one pass; returns what ``score_one`` would have returned."""
        return self._step(x, t, learn=True)

    # -- scoring -----------------------------------------------------------------------

    def _step(self, value: float | None, t: datetime | float | None, learn: bool) -> float:
        finite = _finite(value)
        if finite is None:
            return 0.0
        x: float = finite  # a native double from here on (compiled)
        if self.n == 0:
            if learn:
                self.fast = self.slow = self.lo = self.hi = x
                self._observe_time(t)
                self.n = 1
            return 0.0
        slots = self._slots(t)
        surprise = _clip(self._surprise(x, slots), self.zcap)  # one point cannot swamp the history
        shift = self.shift + self.a_shift * (surprise - self.shift)
        level = min(self.zcap, abs(x - self.slow) / self._sigma(self.slow_mad))
        evidence: tuple[float, float, float] = (abs(surprise), abs(shift), level)
        bits = max(self._bits(evidence), self._record_bits(x)) if self.n >= self.warmup else 0.0
        peak, held = self.peak * self.peak_decay, self.held * self.hold_decay
        onset = max(0.0, bits - peak)
        score = onset / (onset + 10.0)  # 10 bits (tail 1e-10) -> 0.5
        reported = self._report(score if score > held else 0.0)
        if learn:
            self.peak, self.held, self.shift = max(peak, bits), max(held, score), shift
            self._learn(x, t, slots, evidence, flagged=score > self.protect)
            self._observe_alarm(reported)
        return reported

    def _report(self, score: float) -> float:
        """``score``, or 0 within the refractory period of a flagged alarm it does not escalate."""
        if self.since_alarm < self.refractory and score < self.escalate * self.alarm:
            return 0.0
        return score

    def _observe_alarm(self, reported: float) -> None:
        if reported > self.protect:
            self.since_alarm, self.alarm = 0, reported
        else:
            self.since_alarm = min(self.since_alarm + 1, self.refractory)

    def _sigma(self, mad: float) -> float:
        # 1.25 * mean absolute deviation = sigma for Gaussian noise; the floor keeps a
        # flat line from turning float rounding into infinite surprise.
        return 1.25 * mad + 1e-4 * abs(self.slow) + 1e-9

    def _slots(self, t: datetime | float | None) -> list[int | None] | None:
        """Slot of ``t`` in each seasonal profile (None where sampled more coarsely than it)."""
        ts = _epoch(t)
        if ts is None or self.step is None:
            return None
        offset = t.utcoffset() if isinstance(t, datetime) else None
        if offset:
            ts += offset.total_seconds()  # local hour of day and day of week
        return [first + int((ts + _EPOCH_MONDAY) % period // slot) if self.step <= slot else None
                for first, (period, slot) in zip(_FIRST_SLOT, _SEASONS)]

    def _surprise(self, x: float, slots: list[int | None] | None) -> float:
        """Signed residual of the forecaster with the lowest running error, in its sigmas."""
        forecast, mad = self.fast, self.fast_mad
        for profile_mad, slot in zip(self.season_mad, slots or ()):
            if slot is not None and profile_mad < mad and not math.isnan(self.season[slot]):
                forecast, mad = self.slow + self.season[slot], profile_mad
        return (x - forecast) / self._sigma(mad)

    def _bits(self, evidence: tuple[float, float, float]) -> float:
        """Anomaly likelihood, as -log10 of the Gaussian tail, of the most surprising channel."""
        best = max(0.0, self._channel_bits(evidence[0], self.m0, self.v0, self.r0))
        best = max(best, self._channel_bits(evidence[1], self.m1, self.v1, self.r1))
        return max(best, self._channel_bits(evidence[2], self.m2, self.v2, self.r2))

    def _channel_bits(self, e: float, m: float, v: float, rate: float) -> float:
        """One channel's bits. A capped channel is bounded by its observed cap-hit rate once that
        rate shows the cap is routine for this series (see the module docstring, point 4)."""
        bits = _neg_log10_tail((e - m) / (math.sqrt(v) + self.sd_floor))
        if e >= self.zcap and rate > self.cap_routine:
            bits = min(bits, self.cap_slack - math.log10(rate))
        return bits

    def _record_bits(self, x: float) -> float:
        """Bits of a value beyond the learned range (see the module docstring, point 3)."""
        if self.n < self.record_after:
            return 0.0
        tol = self.record_tol * (self.hi - self.lo)
        if not tol > 0.0 or self.lo - tol <= x <= self.hi + tol:  # also NaN: no range yet
            return 0.0
        return self.record_bits * math.log10(1.0 + self.since_record)

    # -- learning ----------------------------------------------------------------------

    def _learn(
        self, x: float, t: datetime | float | None, slots: list[int | None] | None,
        evidence: tuple[float, float, float], flagged: bool,
    ) -> None:
        self._learn_likelihood(evidence)
        self._learn_range(x)
        self._observe_time(t)
        if flagged and self.protect_run < self.max_protect:
            self.protect_run += 1
        else:
            self.protect_run = 0
            self._learn_levels(x, slots)
        self.n += 1

    def _rate(self, a: float, count: int) -> float:
        """EW rate with a running-mean start, so the first points do not bias for long."""
        return max(a, 1.0 / (count + 1))

    def _observe_time(self, t: datetime | float | None) -> None:
        """Track the median sampling step (multiplicative sign steps: robust to gaps)."""
        ts = _epoch(t)
        if ts is None or (self.last_t is not None and ts <= self.last_t):
            return  # missing, repeated or out-of-order timestamps say nothing about the step
        if self.last_t is not None:
            dt = ts - self.last_t
            if self.step is None:
                self.step = dt
            elif dt != self.step:
                self.step *= math.exp(0.05 if dt > self.step else -0.05)
        self.last_t = ts

    def _learn_range(self, x: float) -> None:
        if x < self.lo or x > self.hi:
            self.lo, self.hi, self.since_record = min(x, self.lo), max(x, self.hi), 0
        elif math.isnan(self.lo):
            self.lo = self.hi = x
        else:
            self.since_record += 1

    def _learn_likelihood(self, evidence: tuple[float, float, float]) -> None:
        start = self.warmup // 3  # let the forecasters settle before calibrating on them
        if self.n < start:
            return
        a = self._rate(self.a_long, self.n - start)
        # Per channel, written out (see ``_CHANNELS``). The cap rate has a fixed rate from 0, not
        # a running mean: it is under-estimated early, so the bound only engages once recurring
        # cap hits are well established.
        e, zcap, a_long = evidence[0], self.zcap, self.a_long
        self.r0 += a_long * ((1.0 if e >= zcap else 0.0) - self.r0)
        delta = e - self.m0
        self.m0 += a * delta
        self.v0 = (1.0 - a) * (self.v0 + a * delta * delta)
        e = evidence[1]
        self.r1 += a_long * ((1.0 if e >= zcap else 0.0) - self.r1)
        delta = e - self.m1
        self.m1 += a * delta
        self.v1 = (1.0 - a) * (self.v1 + a * delta * delta)
        e = evidence[2]
        self.r2 += a_long * ((1.0 if e >= zcap else 0.0) - self.r2)
        delta = e - self.m2
        self.m2 += a * delta
        self.v2 = (1.0 - a) * (self.v2 + a * delta * delta)

    def _learn_levels(self, x: float, slots: list[int | None] | None) -> None:
        """Huber-style updates: residuals clipped at ``clip`` sigmas move the levels."""
        self.fast, self.fast_mad = self._huber(x, self.fast, self.fast_mad, self.a_fast)
        self.slow, self.slow_mad = self._huber(x, self.slow, self.slow_mad, self.a_slow)
        for k, slot in enumerate(slots or ()):
            if slot is not None:
                self._learn_season(k, x, slot)

    def _huber(self, x: float, level: float, mad: float, a: float) -> tuple[float, float]:
        r = x - level
        bound = self.clip * self._sigma(mad) if self.n > 10 else math.inf
        level += self._rate(a, self.n) * _clip(r, bound)
        return level, mad + self._rate(self.a_mad, self.n) * (min(abs(r), bound) - mad)

    def _learn_season(self, k: int, x: float, slot: int) -> None:
        """Profile ``k``'s offset from the slow level at ``slot`` (an index into ``season``)."""
        mad, offset, r = self.season_mad[k], self.season[slot], x - self.slow
        if math.isnan(offset):
            self.season[slot] = r
            self.season_mad[k] = max(mad, 2.0 * self.fast_mad)  # earn trust first
            return
        bound = self.clip * self._sigma(mad)
        self.season[slot] = offset + self.a_season * _clip(r - offset, bound)
        self.season_mad[k] = mad + self.a_mad * (min(abs(r - offset), bound) - mad)

    # -- persistence -------------------------------------------------------------------

    def __getstate__(self) -> dict:
        state = {}
        for k in _STATE:
            names = _CHANNELS.get(k)
            state[k] = getattr(self, k) if names is None else array("d", [getattr(self, a) for a in names])
        state["version"] = self.VERSION
        return state

    def __setstate__(self, state: dict) -> None:
        state = dict(state)
        version = state.pop("version", None)
        if version in (3, 4):  # what older states lack starts as in a fresh detector
            fresh, added = UnivariateDetector(), _ADDED_IN[5]  # v5: the range is learned anew
            if version == 3:  # v4: the refractory period, expired (no alarm yet)
                added += _ADDED_IN[4]
            state.update({k: getattr(fresh, k) for k in added})
        elif version != self.VERSION:
            raise ValueError(f"UnivariateDetector state version {version!r}, expected {self.VERSION}")
        for k, v in state.items():
            names = _CHANNELS.get(k)
            if names is None:
                setattr(self, k, v)
            else:
                for a, x in zip(names, v):
                    setattr(self, a, x)
