"""Per-minute metric series recorded during a replay, for the report (``replay --report``).

The engine calls ``SeriesRecorder.on_minute(engine, minute)`` after each closed minute
when its ``recorder`` is set (it is off by default and then costs nothing). Memory stays
bounded however long the replay:

* every (series, signal) keeps only its last ``pre`` minutes in a ring;
* when an alert on a series fires, that ring is copied into a *segment* that grows while
  the alert fires and ``post`` minutes after (at most ``max_minutes`` long, at most
  ``max_segments`` of them): the metric around every incident, with its onset;
* the traffic overview keeps requests and failures per series of a few dimensions in at
  most ``overview_points`` bins (the bins double in width as the replay grows).

A point is ``(minute, value, baseline, band edge, anomaly score)``: the value of the
5-minute window the anomaly models judge, the series' last hour, the edge past which a
change is material (``Signal.edge``) and the detector's current onset score.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from models.signals import BASELINE, BY_DIM, BY_NAME, WINDOW, Signal

__all__ = ["SeriesRecorder", "Segment", "RULE_SIGNAL", "alert_series"]

# A rule's metric -> the signal plotted for it, and the factor that turns the rule's value
# and threshold into the signal's unit (None: not comparable, the threshold is not drawn).
RULE_SIGNAL: dict[str, tuple[str, float | None]] = {
    "error_rate": ("error_rate", 1.0), "5xx_rate": ("error_rate", 1.0),
    "rate_limited": ("rate_limit_share", None), "cache_hit_rate": ("cache_hit_rate", 1.0),
    "cache_hit_ratio": ("cache_hit_rate", 1.0), "cost_ratio": ("cost_per_hour", 1.0),
    "latency_p95": ("latency_p95", 1.0), "latency_p95_ratio": ("latency_p95", 1.0),
    "latency_p50_ratio": ("latency_p50", 1.0), "requests_per_second": ("requests_per_minute", 60.0),
    "crashes": ("crashes", None), "oom": ("crashes", None), "proxy_errors": ("proxy_errors", 1.0),
    "ingestion_lag_p95": ("ingestion_lag_p95", 1.0), "trace_coverage": ("trace_coverage", 1.0),
    "spend_today_ratio": ("spend_today_ratio", 1.0),
}
SPEND = "spend_today_ratio"  # a team's spend today over its daily budget (not an anomaly signal)
OVERVIEW_DIMS = ("gateway", "provider", "model", "team")


def alert_series(alert_id: str, rule_metric: str | None) -> tuple[str, str, str, float | None] | None:
    """``(dim, value, signal, scale)`` plotted for an alert id (``Rule|dim=value`` or
    ``anomaly:signal|dim=value``), or None when nothing is recorded for it."""
    head, _, where = alert_id.partition("|")
    dim, _, value = where.partition("=")
    if head.startswith("anomaly:"):
        return dim, value, head[len("anomaly:"):], 1.0
    if rule_metric not in RULE_SIGNAL:
        return None
    signal, scale = RULE_SIGNAL[rule_metric]
    if signal != SPEND and dim not in BY_NAME[signal].dims:
        return None
    return dim, value, signal, scale


@dataclass(slots=True)
class Segment:
    dim: str
    value: str
    signal: str
    points: list = field(default_factory=list)
    until: int = 0
    incidents: set = field(default_factory=set)
    # alert name -> [(minute, value, threshold)] in the signal's unit, while it fires
    alerts: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"dim": self.dim, "value": self.value, "signal": self.signal, "points": self.points,
                "incidents": sorted(self.incidents), "alerts": self.alerts}


class SeriesRecorder:
    def __init__(self, pre: int = 90, post: int = 30, max_minutes: int = 24 * 60, max_segments: int = 400,
                 overview_points: int = 720) -> None:
        self.pre, self.post, self.max_minutes, self.max_segments = pre, post, max_minutes, max_segments
        self.overview_points = overview_points
        self.rings: dict[tuple[str, str, str], deque] = {}
        self.active: dict[tuple[str, str, str], Segment] = {}
        self.segments: list[Segment] = []
        self.dropped_segments = 0
        self.width, self.first = 1, None  # overview bin width (minutes) and first minute
        self.traffic: dict[tuple[str, str], dict[int, list[int]]] = {}
        self._metrics: dict[str, str] | None = None

    # --- the engine hook ------------------------------------------------------------
    def on_minute(self, engine, minute: int) -> None:
        hot = self._hot(engine)
        for tkey, incident in hot.items():
            self._open(tkey, incident, minute)
        tracks = _tracks(engine)
        for key, w in engine.series.items():
            if w.closed != minute:
                continue
            for sig in BY_DIM.get(key[0], ()):
                tkey = (key[0], key[1], sig.name)
                self._add(tkey, _point(w, sig, tracks.get(tkey), minute))
            if key[0] == "team":
                self._add((key[0], key[1], SPEND), _spend_point(engine, key[1], minute))
            if key[0] in OVERVIEW_DIMS:
                self._count(key, w.buckets.get(minute), minute)
        self._alert_values(engine, minute)
        for tkey, seg in list(self.active.items()):
            if minute >= seg.until or len(seg.points) >= self.max_minutes:
                del self.active[tkey]

    def _metric_of(self, engine, name: str) -> str | None:
        if self._metrics is None:
            self._metrics = {r.name: r.metric for r in engine.config.rules}
        return self._metrics.get(name)

    def _hot(self, engine) -> dict[tuple[str, str, str], str]:
        """(series, signal) of every firing alert of an open page-worthy incident -> incident id."""
        hot = {}
        for inc in engine.incidents.open:
            for a in inc.firing():
                if a.severity == "info":
                    continue
                where = alert_series(a.id, self._metric_of(engine, a.name))
                if where is not None:
                    hot[where[:3]] = inc.id
        return hot

    def _open(self, tkey: tuple[str, str, str], incident: str, minute: int) -> None:
        seg = self.active.get(tkey)
        if seg is None:
            if len(self.segments) >= self.max_segments:
                self.dropped_segments += 1
                return
            seg = self.active[tkey] = Segment(*tkey, points=list(self.rings.get(tkey, ())))
            self.segments.append(seg)
        seg.until = minute + self.post
        seg.incidents.add(incident)

    def _add(self, tkey: tuple[str, str, str], point: tuple | None) -> None:
        if point is None:
            return
        ring = self.rings.get(tkey)
        if ring is None:
            ring = self.rings[tkey] = deque(maxlen=self.pre)
        ring.append(point)
        seg = self.active.get(tkey)
        if seg is not None:
            seg.points.append(point)

    def _alert_values(self, engine, minute: int) -> None:
        for inc in engine.incidents.open:
            for a in inc.firing():
                where = alert_series(a.id, None if a.detector == "anomaly" else self._metric_of(engine, a.name))
                seg = self.active.get(where[:3]) if where else None
                if seg is None or where[3] is None:
                    continue
                thr = None if a.threshold is None else a.threshold * where[3]
                seg.alerts.setdefault(a.name, []).append((minute, a.value * where[3], thr))

    # --- the traffic overview -------------------------------------------------------------
    def _count(self, key: tuple[str, str], bucket, minute: int) -> None:
        if bucket is None:
            return
        if self.first is None:
            self.first = minute
        while (minute - self.first) // self.width >= self.overview_points:
            self._coarsen()
        bins = self.traffic.setdefault(key, {})
        b = bins.setdefault(minute // self.width, [0, 0])
        b[0] += bucket.requests
        b[1] += bucket.errors

    def _coarsen(self) -> None:
        self.width *= 2
        for key, bins in self.traffic.items():
            merged: dict[int, list[int]] = {}
            for b, (req, err) in bins.items():
                m = merged.setdefault(b // 2, [0, 0])
                m[0] += req
                m[1] += err
            self.traffic[key] = merged

    def busiest(self, n: int = 6) -> list[dict]:
        """The ``n`` series with most requests: per bin, requests per minute and error rate."""
        totals = sorted(self.traffic, key=lambda k: -sum(r for r, _ in self.traffic[k].values()))
        out = []
        for key in totals[:n]:
            bins = sorted(self.traffic[key].items())
            out.append({"dim": key[0], "value": key[1], "width": self.width,
                        "bins": [(b * self.width, req / self.width, err / req if req else 0.0)
                                 for b, (req, err) in bins]})
        return out

    def export(self, busiest: int = 6) -> dict:
        return {"segments": [s.as_dict() for s in self.segments], "busiest": self.busiest(busiest),
                "dropped_segments": self.dropped_segments, "pre": self.pre, "post": self.post}


def _tracks(engine) -> dict:
    for det in engine.extra_detectors:
        if hasattr(det, "tracks"):
            return det.tracks
    return {}


def _point(w, sig: Signal, track, minute: int) -> tuple | None:
    win, base = w.sums.get((WINDOW, 0)), w.sums.get((BASELINE, WINDOW))
    value = sig.read(win, WINDOW) if win is not None else None
    baseline = sig.read(base, BASELINE) if base is not None else None
    if value is None and baseline is None:
        return None
    edge = sig.edge(baseline) if baseline is not None else None
    score = (track.score if minute <= track.hot_until else 0.0) if track is not None else None
    return minute, value, baseline, edge, score


def _spend_point(engine, team: str, minute: int) -> tuple | None:
    budget = engine.config.budgets.get(team) or engine.reported_budget.get(team)
    if not budget:
        return None
    spent = engine.spend_today(minute // 1440, team)
    return minute, spent / budget, None, None, None
