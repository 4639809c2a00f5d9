"""The metric family the anomaly models watch, and what counts as a material change.

A ``Signal`` turns a window (a merged ``Bucket`` over ``minutes``) into one number:
an error rate, a p95, dollars per hour. Each signal says which series dimensions it
is watched on, how much volume a window needs before its number means anything
(``min_volume``: no error rate from 3 requests), which direction is bad, and the
smallest change worth a page (``min_change`` absolute and ``min_ratio`` relative to
the series' last hour). The online detector says *whether* a point is surprising for
this series; the effect-size gate says whether it is big enough to wake someone: on a
few hundred (series, metric) pairs a day of minutes, some statistically surprising
points are always operationally irrelevant.

Counts (crashes, proxy errors) are normalised to "per window" and rates to per hour or
per minute, so a window and its one-hour baseline read in the same unit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from models.windows import Bucket, quantile

WINDOW = 5  # minutes per point: long enough to gate volume, short enough to page in minutes
BASELINE = 60  # minutes of "last hour" the effect size is measured against


@dataclass(frozen=True, slots=True)
class Signal:
    name: str
    alert: str  # alert name in notifications
    category: str  # CONTRACT §3 category
    dims: tuple[str, ...]
    value: Callable[[Bucket, int], float | None]
    volume: Callable[[Bucket], float]
    min_volume: float
    up: bool = True  # True: a rise is bad; False: a fall is bad
    min_change: float = 0.0
    min_ratio: float = 1.0
    unit: str = ""  # "%", "s", "$/h", "/min", "" (a count per window)
    label: str = ""
    count: Callable[[Bucket], float] | None = None  # events behind a rate (failures, 429s)
    min_count: float = 0.0  # ... of which a page needs at least this many in the window

    def read(self, b: Bucket, minutes: int) -> float | None:
        """The value of a window, or None when its volume is too thin to judge."""
        if self.volume(b) < self.min_volume:
            return None
        return self.value(b, minutes)

    def edge(self, base: float) -> float:
        """The band edge: a value past it is a material change from ``base``."""
        if self.up:
            return max(base + self.min_change, base * self.min_ratio)
        return min(base - self.min_change, base / self.min_ratio)

    def past(self, value: float, edge: float) -> bool:
        return value > edge if self.up else value < edge

    def material(self, value: float, base: float, window: Bucket) -> bool:
        """Past the band edge, and (for rates) backed by enough events to be more than luck."""
        if self.count is not None and self.count(window) < self.min_count:
            return False
        return self.past(value, self.edge(base))

    def fmt(self, v: float | None) -> str:
        if v is None:
            return "n/a"
        if self.unit == "%":
            return f"{v:.1%}"
        if self.unit == "s":
            return f"{v:.1f} s"
        if self.unit == "$/h":
            return f"${v:,.2f}/h"
        if self.unit == "/min":
            return f"{v:,.0f}/min"
        return f"{v:,.0f}"


def _ratio(num: float, den: float) -> float | None:
    return num / den if den > 0 else None


def _quantile(attr: str, q: float) -> Callable[[Bucket, int], float | None]:
    return lambda b, m: quantile(getattr(b, attr), q)


def _per_window(count: Callable[[Bucket], float]) -> Callable[[Bucket, int], float | None]:
    return lambda b, m: count(b) * WINDOW / m


def _requests(b: Bucket) -> float:
    return b.requests


G, P, M, T, K, A, TR = "gateway", "provider", "model", "team", "key", "app", "tracing"

SIGNALS: tuple[Signal, ...] = (
    # Error rate: at least 30 calls and 5 failures in the window, doubled and +5 points.
    Signal("error_rate", "ErrorRateAnomaly", "error_rate", (G, P, M, T),
           lambda b, m: _ratio(b.errors, b.requests), _requests, 30, True, 0.05, 2.0, "%", "error rate",
           lambda b: b.errors, 8),
    Signal("rate_limit_share", "RateLimitAnomaly", "rate_limit", (G, P, T, K),
           lambda b, m: _ratio(b.e429, b.requests), _requests, 20, True, 0.10, 2.0, "%", "429 share",
           lambda b: b.e429, 10),
    Signal("cache_hit_rate", "CacheHitRateAnomaly", "cache", (G, M),
           lambda b, m: _ratio(b.cache_hits, b.cacheable), lambda b: b.cacheable, 50, False, 0.15, 1.5, "%",
           "cache hit rate"),
    Signal("latency_p95", "LatencyP95Anomaly", "latency", (G, P, M),
           _quantile("latency", 0.95), lambda b: b.latency_n, 50, True, 1.0, 1.6, "s", "p95 latency"),
    Signal("latency_p50", "LatencyP50Anomaly", "latency", (P, M),
           _quantile("latency", 0.5), lambda b: b.latency_n, 10, True, 0.5, 1.6, "s", "median latency"),
    Signal("cost_per_hour", "CostAnomaly", "cost", (G, T, K),
           lambda b, m: max(0.0, b.cost) * 60 / m, _requests, 10, True, 3.0, 2.0, "$/h", "cost/h"),
    Signal("requests_per_minute", "TrafficAnomaly", "traffic", (G, T),
           lambda b, m: b.requests / m, _requests, 25, True, 30.0, 2.5, "/min", "requests/min"),
    Signal("ingestion_lag_p95", "IngestionLagAnomaly", "tracing", (TR,),
           _quantile("lag", 0.95), lambda b: b.traces, 5, True, 60.0, 3.0, "s", "Langfuse ingestion lag p95"),
    Signal("trace_coverage", "TraceCoverageAnomaly", "tracing", (TR,),
           lambda b, m: _ratio(b.traces, b.requests), _requests, 30, False, 0.3, 2.0, "%", "traces per call"),
    Signal("crashes", "CrashAnomaly", "availability", (A,),
           _per_window(lambda b: b.crash + b.oom), lambda b: 1, 0, True, 2.0, 3.0, "", "crashes and OOM kills"),
    Signal("proxy_errors", "ProxyErrorAnomaly", "availability", (A,),
           _per_window(lambda b: b.proxy_error), lambda b: 1, 0, True, 5.0, 3.0, "", "Fly proxy errors"),
)

BY_DIM: dict[str, tuple[Signal, ...]] = {
    dim: tuple(s for s in SIGNALS if dim in s.dims) for dim in (G, P, M, T, K, A, TR)
}
BY_NAME: dict[str, Signal] = {s.name: s for s in SIGNALS}
# Which signal explains a rule alert of a category (rule alerts get the same "drivers").
FOR_CATEGORY: dict[str, str] = {
    "error_rate": "error_rate", "rate_limit": "rate_limit_share", "cache": "cache_hit_rate",
    "latency": "latency_p95", "cost": "cost_per_hour", "traffic": "requests_per_minute",
}
