"""Online anomaly models beside the rules: one univariate detector per (series, signal).

Every closed minute, for every live series of the engine and every signal of its
dimension (``models.signals``), the last ``WINDOW`` minutes give one point. The
point is scored by that pair's ``UnivariateDetector`` *before* it is learned (its
``update``), with the minute's end as timestamp, so the detector's hour-of-week
profile models the daily shape. Its warm-up keeps a new series silent, and its
protection keeps a flagged point out of the levels it forecasts with.

The detector scores *onsets*: a surprise raises the score once, then the new regime
becomes the reference. A page needs more than a surprise, so a pair goes

    quiet → pending   score ≥ ``fire_score`` within the last ``hot`` minutes, and the
                      value is past the signal's band edge (a material change from
                      the series' last hour: ``Signal.edge``). ``hot`` is one window
                      (5 min): the sliding window turns a step into a 5-minute ramp, so
                      the surprise comes at its foot and the material value at its top
    pending → firing  still past the edge ``confirm`` minutes later (sustained)
    firing → quiet    back inside ``clear`` of the way to the frozen baseline for
                      ``clear_for`` minutes, or no judgeable data for ``no_data_for``

Alerts are ``detector="anomaly"``, severity ``warning``, and join the incidents of
the rule alerts they overlap through ``IncidentManager`` grouping. A finer series
(a model, a team, a key) does not page for a signal its coarser series (the gateway,
its provider, its team) already pages for: the coarse alert's explanation names it.

Memory: one ``Track`` (~3 KB with its detector) per (series, signal) that ever had a
judgeable point; series idle for ``expire_hours`` are dropped.
"""

from __future__ import annotations

from typing import ClassVar

from models.explain import explain_anomaly, refresh_rule_explanations
from models.incidents import Alert
from models.signals import BASELINE, BY_DIM, WINDOW, Signal
from models.state import attributes
from models.univariate import UnivariateDetector
from models.windows import STEP, SeriesWindow

__all__ = ["AnomalyModels", "Track", "attach_models"]

_PARENTS = {"model": "provider", "key": "team"}  # a finer series' coarser home (besides the gateway)
_ORDER = {"gateway": 0, "provider": 1, "team": 1, "app": 1, "tracing": 1, "model": 2, "key": 2}


class Track:
    """Detector and alert state of one (series, signal) pair. Pickle-safe, no engine references."""

    def __init__(self, det: UnivariateDetector) -> None:
        self.det = det
        self.hot_until = -1  # last minute a high score still counts as a fresh onset
        self.pending = 0  # minutes the material change has held since the onset
        self.firing = False
        self.base: float | None = None  # baseline frozen at the onset
        self.clear_since: int | None = None
        self.no_data_since: int | None = None
        self.last_seen = 0
        self.score = 0.0  # the highest score of the onset (what the alert reports)
        self.value: float | None = None
        self.peak: float | None = None  # the worst value while firing

    def __reduce__(self) -> tuple:
        # Compiled (setup.py), the class is unpickled by calling it, then given its attributes.
        return (Track, (self.det,), attributes(self))

    def __setstate__(self, state: dict) -> None:
        for k, v in state.items():
            setattr(self, k, v)


class AnomalyModels:
    """The engine's ``extra_detectors`` object: ``on_minute(engine, minute)``."""

    VERSION: ClassVar[int] = 1

    def __init__(self, warmup: int = 60, fire_score: float = 0.4, min_step: float = 0.1, hot: int = WINDOW, confirm: int = 2,
                 clear: float = 0.5, clear_for: int = 5, no_data_for: int = 30, expire_hours: float = 6.0,
                 explain_rules: bool = True, seed: int = 0) -> None:
        self.warmup, self.fire_score, self.hot, self.confirm = warmup, fire_score, hot, confirm
        self.min_step = min_step
        self.clear, self.clear_for, self.no_data_for = clear, clear_for, no_data_for
        self.expire_minutes = int(expire_hours * 60)
        self.explain_rules, self.seed = explain_rules, seed
        self.tracks: dict[tuple[str, str, str], Track] = {}  # (dim, value, signal) -> Track
        self.last_seen: dict[tuple[str, str], int] = {}  # series -> last minute with data

    # --- the engine hook --------------------------------------------------------------
    def on_minute(self, engine, minute: int) -> None:
        now = (minute + 1) * STEP
        firing_now: set[tuple[str, str, str]] = set()
        for key, w in sorted(engine.series.items(), key=lambda kv: _ORDER.get(kv[0][0], 3)):
            if w.closed != minute:
                continue
            if w.buckets.get(minute) is not None:
                self.last_seen[key] = minute
            for sig in BY_DIM.get(key[0], ()):
                self._step(engine, key, w, sig, minute, now, firing_now)
        if self.explain_rules:
            refresh_rule_explanations(engine, minute)
        if minute % 60 == 0:
            self.expire(minute)

    def score_minute(self, engine, minute: int) -> dict[tuple[str, str, str], float]:
        """Scores of this minute's points without learning them (the battery checks it)."""
        out = {}
        for key, w in engine.series.items():
            for sig in BY_DIM.get(key[0], ()):
                track = self.tracks.get((key[0], key[1], sig.name))
                x = _point(w, sig)
                if track is not None and x is not None:
                    out[(key[0], key[1], sig.name)] = track.det.score_one(x, (minute + 1) * STEP)
        return out

    def expire(self, minute: int) -> int:
        """Forget series without data for ``expire_hours`` (unless an alert is still firing)."""
        stale = {k for k, m in self.last_seen.items() if minute - m > self.expire_minutes}
        gone = [t for t in self.tracks if (t[0], t[1]) in stale and not self.tracks[t].firing]
        for t in gone:
            del self.tracks[t]
        for k in stale:
            if not any((k[0], k[1], s.name) in self.tracks for s in BY_DIM.get(k[0], ())):
                del self.last_seen[k]
        return len(gone)

    # --- one (series, signal) per minute ----------------------------------------------
    def _step(self, engine, key, w: SeriesWindow, sig: Signal, minute: int, now: float, firing_now) -> None:
        tkey = (key[0], key[1], sig.name)
        track = self.tracks.get(tkey)
        x = _point(w, sig)
        if x is None:
            if track is not None and track.firing:
                self._no_data(engine, tkey, track, minute, now)
            return
        if track is None:
            track = self.tracks[tkey] = Track(UnivariateDetector(warmup=self.warmup, seed=self.seed))
        score = track.det.update(x, now)  # scored before it is learned
        track.value, track.last_seen, track.no_data_since = x, minute, None
        self._accumulate(track, score, minute)
        base = _baseline(w, sig)
        ref = track.base if track.pending else base  # the onset's frozen baseline once pending
        if track.firing:
            self._while_firing(engine, key, sig, tkey, track, minute, now)
            firing_now.add(tkey)
        elif base is not None and ref is not None and (
                track.pending or track.score >= self.fire_score and minute <= track.hot_until) and sig.material(
                x, ref, w.sums[(WINDOW, 0)]):
            track.base = ref
            track.pending += 1
            if track.pending > self.confirm and not self._covered(engine, key, sig, firing_now):
                self._fire(engine, key, sig, tkey, track, minute, now)
                firing_now.add(tkey)
        else:
            track.pending, track.base = 0, None

    def _accumulate(self, track: Track, score: float, minute: int) -> None:
        """Add up the onset evidence of consecutive minutes.

        The detector scores onsets, and a 5-minute sliding window turns a sudden change
        into a ramp of several smaller onsets; their bits (the score is ``bits / (bits +
        10)``) add up to the surprise of the change as a whole.
        """
        if score < self.min_step:
            return
        bits = 10.0 * score / max(1e-9, 1.0 - score)
        if minute > track.hot_until:
            track.score = 0.0
        total = 10.0 * track.score / (1.0 - track.score) + bits
        track.score = total / (total + 10.0)
        track.hot_until = minute + self.hot - 1

    def _covered(self, engine, key, sig: Signal, firing_now) -> bool:
        """A coarser series already pages for this signal (its explanation names this one), or
        is about to: its change is material and waits out its own ``confirm`` minutes. A team's
        error rate then waits for the gateway's instead of opening a page of its own that the
        gateway's alert, a minute later, could not join (a team and a model share no label)."""
        if key[0] == "gateway":
            return False
        homes = [("gateway", "")]
        parent = _PARENTS.get(key[0])
        if parent:
            implied = engine.incidents.implied.get(key, {}).get(parent)
            if implied:
                homes.append((parent, implied))
        for d, v in homes:
            home = self.tracks.get((d, v, sig.name))
            if (d, v, sig.name) in firing_now or (home is not None and home.pending):
                return True
        return False

    def _fire(self, engine, key, sig: Signal, tkey, track: Track, minute: int, now: float) -> None:
        track.firing, track.clear_since, track.peak = True, None, track.value
        engine.incidents.fire(self._alert(engine, key, sig, tkey, track, now - (self.confirm + 1) * STEP), now)

    def _while_firing(self, engine, key, sig: Signal, tkey, track: Track, minute: int, now: float) -> None:
        base = track.base if track.base is not None else 0.0
        value, peak = track.value, track.peak
        assert value is not None and peak is not None  # set by _step and _fire before this runs
        if sig.past(value, peak):
            track.peak = peak = value
        # Held while past ``clear`` of the band edge and past 30% of the worst deviation:
        # the second criterion resolves a long incident whose frozen baseline the daily
        # cycle has since left behind.
        held = base + max(self.clear * (sig.edge(base) - base), 0.3 * (peak - base), key=abs)
        if sig.past(value, held):
            track.clear_since = None
        else:
            track.clear_since = minute if track.clear_since is None else track.clear_since
            if minute - track.clear_since + 1 >= self.clear_for:
                return self._resolve(engine, tkey, track, now)
        engine.incidents.update(self._alert(engine, key, sig, tkey, track, now))

    def _no_data(self, engine, tkey, track: Track, minute: int, now: float) -> None:
        track.no_data_since = minute if track.no_data_since is None else track.no_data_since
        if minute - track.no_data_since + 1 >= self.no_data_for:
            self._resolve(engine, tkey, track, now)

    def _resolve(self, engine, tkey, track: Track, now: float) -> None:
        track.firing, track.pending, track.base, track.clear_since = False, 0, None, None
        track.hot_until = -1
        engine.incidents.resolve(_alert_id(tkey), now)

    def _alert(self, engine, key, sig: Signal, tkey, track: Track, started: float) -> Alert:
        from models.engine import series_labels

        labels = series_labels(*key)
        where = ", ".join(f"{k} {v}" for k, v in sorted(labels.items())) or "gateway"
        title = f"{where} {sig.label} {sig.fmt(track.value)} (expected {sig.fmt(track.base)})"
        return Alert(
            id=_alert_id(tkey), name=sig.alert, category=sig.category, severity="warning",
            detector="anomaly", labels=labels, value=track.value or 0.0,
            threshold=sig.edge(track.base) if track.base is not None else None,
            started_at=started, title=title, baseline=track.base, score=track.score,
            explanation=explain_anomaly(engine, key, sig, track.value, track.base),
        )

    # --- persistence ------------------------------------------------------------------
    def __getstate__(self) -> dict:
        return {**attributes(self), "version": self.VERSION}  # compiled (setup.py): no __dict__

    def __setstate__(self, state: dict) -> None:
        state = dict(state)
        if state.pop("version", None) != self.VERSION:
            raise ValueError("AnomalyModels state of another version")
        for k, v in state.items():
            setattr(self, k, v)


def _alert_id(tkey: tuple[str, str, str]) -> str:
    return f"anomaly:{tkey[2]}|{tkey[0]}={tkey[1]}"


def _point(w: SeriesWindow, sig: Signal) -> float | None:
    b = w.sums.get((WINDOW, 0))
    return None if b is None else sig.read(b, WINDOW)


def _baseline(w: SeriesWindow, sig: Signal) -> float | None:
    b = w.sums.get((BASELINE, WINDOW))
    return None if b is None else sig.read(b, BASELINE)


def register_windows(engine) -> None:
    """Make every series keep the window and baseline sums the models read."""
    from models.engine import DIMS

    mine = {(WINDOW, 0), (BASELINE, WINDOW)}
    plain = getattr(engine, "plain_specs", {})
    for dim in DIMS:
        engine.specs[dim] = tuple(sorted(set(engine.specs.get(dim, ((1, 0),))) | mine))
        if dim in plain:  # the signals read quantiles from these sums
            plain[dim] = plain[dim] - mine
    if hasattr(engine, "retention"):  # how late an event may be and still count
        engine.retention = max(engine.retention, BASELINE + WINDOW)
    for key, w in list(engine.series.items()):  # series that exist already start their sums now
        if (WINDOW, 0) not in w.sums or w.plain & mine:
            fresh = engine.new_window(key[0])
            fresh.buckets, fresh.closed, fresh.first_minute = w.buckets, w.closed, w.first_minute
            engine.series[key] = fresh


def attach_models(engine, budget_rules=None, **options) -> AnomalyModels:
    """Append the anomaly models (and, with the budget rule on in ``budget_rules``, default the
    engine's, the budget forecast) to ``engine``."""
    from models.budget import attach_budget_forecast

    register_windows(engine)
    opts = {**engine.config.anomaly, **options}
    opts.pop("enabled", None)
    budget = opts.pop("budget_forecast", True)
    models = AnomalyModels(**opts)
    engine.extra_detectors.append(models)
    if budget:
        attach_budget_forecast(engine, budget_rules)
    return models
