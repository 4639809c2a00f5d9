"""Named metrics over a window (and, for relative metrics, its baseline).

Each metric returns a ``Reading`` or ``None`` when it is undefined (no traffic).
``volume`` is what minimum-volume guards compare against (requests, cacheable
calls, traces, ...), ``count`` what minimum-count guards compare against (errors,
429s, extra dollars). ``actual`` and ``expected`` are what a human reads in the
notification: "p95 6.1 s (baseline 2.2 s)".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Final

from models.windows import Bucket, quantile


@dataclass(slots=True, init=False)  # __init__ below: compiled (setup.py), a generated one is not
class Reading:
    value: float
    volume: float
    count: float
    actual: float
    expected: float | None = None

    def __init__(self, value: float, volume: float, count: float, actual: float,
                 expected: float | None = None) -> None:
        self.value, self.volume, self.count, self.actual, self.expected = value, volume, count, actual, expected

    def __reduce__(self) -> tuple:  # compiled, unpickling calls the class: with the fields
        return (Reading, (self.value, self.volume, self.count, self.actual, self.expected))


Metric = Callable[[Bucket, "Bucket | None", int, int], "Reading | None"]


def _ratio(num: float, den: float) -> float | None:
    return num / den if den > 0 else None


def five_xx_rate(w: Bucket, base: Bucket | None, minutes: int, base_minutes: int = 60) -> Reading | None:
    r = _ratio(w.e5xx, w.requests)
    if r is None:
        return None
    exp = _ratio(base.e5xx, base.requests) if base else None
    return Reading(r, w.requests, w.e5xx, r, exp)


def error_rate(w: Bucket, base: Bucket | None, minutes: int, base_minutes: int = 60) -> Reading | None:
    r = _ratio(w.errors, w.requests)
    if r is None:
        return None
    exp = _ratio(base.errors, base.requests) if base else None
    return Reading(r, w.requests, w.errors, r, exp)


def rate_limited(w: Bucket, base: Bucket | None, minutes: int, base_minutes: int = 60) -> Reading | None:
    if w.requests == 0 and w.e429 == 0:
        return None
    exp = base.e429 * minutes / max(1, base_minutes) if base else None
    return Reading(w.e429, w.requests, w.e429, w.e429, exp)


def rate_limited_share(w: Bucket, base: Bucket | None, minutes: int, base_minutes: int = 60) -> Reading | None:
    """The share of calls rejected with 429: what makes ten 429s a storm on a small gateway
    and routine on one four times its size."""
    r = _ratio(w.e429, w.requests)
    if r is None:
        return None
    exp = _ratio(base.e429, base.requests) if base else None
    return Reading(r, w.requests, w.e429, r, exp)


def cache_hit_rate(w: Bucket, base: Bucket | None, minutes: int, base_minutes: int = 60) -> Reading | None:
    r = _ratio(w.cache_hits, w.cacheable)
    if r is None:
        return None
    exp = _ratio(base.cache_hits, base.cacheable) if base else None
    return Reading(r, w.cacheable, w.cacheable - w.cache_hits, r, exp)


def cache_hit_ratio(w: Bucket, base: Bucket | None, minutes: int, base_minutes: int = 60) -> Reading | None:
    """Hit rate now over hit rate in the baseline: 0.2 means it fell to a fifth."""
    now = _ratio(w.cache_hits, w.cacheable)
    if base is None:
        return None
    before = _ratio(base.cache_hits, base.cacheable)
    if now is None or not before:
        return None
    return Reading(now / before, w.cacheable, base.cacheable, now, before)


def latency_p95(w: Bucket, base: Bucket | None, minutes: int, base_minutes: int = 60) -> Reading | None:
    p = quantile(w.latency, 0.95)
    if p is None:
        return None
    exp = quantile(base.latency, 0.95) if base else None
    return Reading(p, w.latency_n, w.latency_n, p, exp)


def latency_p95_ratio(w: Bucket, base: Bucket | None, minutes: int, base_minutes: int = 60) -> Reading | None:
    """p95 now over p95 in the baseline; ``count`` is the baseline's sample size."""
    p = quantile(w.latency, 0.95)
    if p is None or base is None:
        return None
    b = quantile(base.latency, 0.95)
    if not b:
        return None
    return Reading(p / b, w.latency_n, base.latency_n, p, b)


def latency_p50_ratio(w: Bucket, base: Bucket | None, minutes: int, base_minutes: int = 60) -> Reading | None:
    """Median now over median in the baseline: stable on the few samples of a quiet model."""
    p = quantile(w.latency, 0.5)
    if p is None or base is None:
        return None
    b = quantile(base.latency, 0.5)
    if not b:
        return None
    return Reading(p / b, w.latency_n, base.latency_n, p, b)


def cost_per_hour(w: Bucket, base: Bucket | None, minutes: int, base_minutes: int = 60) -> Reading | None:
    if w.requests == 0:
        return None
    rate = max(0.0, w.cost) * 60 / minutes
    exp = max(0.0, base.cost) * 60 / max(1, base_minutes) if base else None
    return Reading(rate, w.requests, rate, rate, exp)


def cost_ratio(w: Bucket, base: Bucket | None, minutes: int, base_minutes: int = 60) -> Reading | None:
    """Cost rate now over the baseline's; ``count`` is the extra dollars per hour."""
    if w.requests == 0 or base is None:
        return None
    rate = max(0.0, w.cost) * 60 / minutes
    before = max(0.0, base.cost) * 60 / max(1, base_minutes)
    if before <= 0:
        return None
    return Reading(rate / before, w.requests, rate - before, rate, before)


def requests_per_second(w: Bucket, base: Bucket | None, minutes: int, base_minutes: int = 60) -> Reading | None:
    rps = w.requests / (minutes * 60)
    return Reading(rps, w.requests, w.requests, rps, None)


def request_ratio(w: Bucket, base: Bucket | None, minutes: int, base_minutes: int = 60) -> Reading | None:
    """Request rate now over the baseline's; ``count`` is the baseline's sample size."""
    if base is None or base.requests <= 0:
        return None
    rps = w.requests / (minutes * 60)
    before = base.requests / (max(1, base_minutes) * 60)
    return Reading(rps / before, w.requests, base.requests, rps, before)


def tokens(w: Bucket, base: Bucket | None, minutes: int, base_minutes: int = 60) -> Reading | None:
    return Reading(w.tokens, w.requests, w.tokens, w.tokens, None)


def _count(attr: str) -> Metric:
    def metric(w: Bucket, base: Bucket | None, minutes: int, base_minutes: int = 60) -> Reading | None:
        n = getattr(w, attr)
        return Reading(n, n, n, n, None)

    metric.__name__ = attr
    return metric


def crashes(w: Bucket, base: Bucket | None, minutes: int, base_minutes: int = 60) -> Reading | None:
    n = w.crash + w.oom
    return Reading(n, n, n, n, None)


def ingestion_lag_p95(w: Bucket, base: Bucket | None, minutes: int, base_minutes: int = 60) -> Reading | None:
    p = quantile(w.lag, 0.95)
    if p is None:
        return None
    exp = quantile(base.lag, 0.95) if base else None
    return Reading(p, w.traces, w.traces, p, exp)


def trace_coverage(w: Bucket, base: Bucket | None, minutes: int, base_minutes: int = 60) -> Reading | None:
    """Traces stored per gateway request now, over the same in the baseline.

    Langfuse stores nothing while its ingestion is stalled, so during a stall this
    falls towards 0 while the gateway keeps serving. Undefined where Langfuse was
    never seen (a gateway without tracing must not page for it).
    """
    if base is None or w.requests == 0:
        return None
    before = _ratio(base.traces, base.requests)
    if not before:
        return None
    now = w.traces / w.requests
    return Reading(now / before, w.requests, base.traces, now, before)


def gauge_mean(w: Bucket, base: Bucket | None, minutes: int, base_minutes: int = 60) -> Reading | None:
    """The mean of a sampled gauge over the window (Redis memory, pool use, probe up/down)."""
    if w.gauge_n == 0:
        return None
    mean = w.gauge_sum / w.gauge_n
    return Reading(mean, w.gauge_n, w.gauge_n, mean, None)


METRICS: Final[dict[str, Metric]] = {
    "5xx_rate": five_xx_rate,
    "error_rate": error_rate,
    "rate_limited": rate_limited,
    "rate_limited_share": rate_limited_share,
    "cache_hit_rate": cache_hit_rate,
    "cache_hit_ratio": cache_hit_ratio,
    "latency_p95": latency_p95,
    "latency_p95_ratio": latency_p95_ratio,
    "latency_p50_ratio": latency_p50_ratio,
    "cost_per_hour": cost_per_hour,
    "cost_ratio": cost_ratio,
    "requests_per_second": requests_per_second,
    "request_ratio": request_ratio,
    "tokens": tokens,
    "oom": _count("oom"),
    "crashes": crashes,
    "proxy_errors": _count("proxy_error"),
    "access_5xx": _count("access_5xx"),
    "clickhouse_errors": _count("clickhouse_errors"),
    "ingestion_lag_p95": ingestion_lag_p95,
    "trace_coverage": trace_coverage,
    "gauge_mean": gauge_mean,
}

# The metrics that compare a rate per minute with the baseline's: minutes of the baseline when the
# gateway was down, or before the series existed, deflate it; the engine leaves them out
# (``Engine._base_minutes``).
RATE_RATIOS = frozenset({"request_ratio", "cost_ratio"})

# The metrics that read a histogram (a quantile); every other one reads only counters.
QUANTILE_METRICS = frozenset({"latency_p95", "latency_p95_ratio", "latency_p50_ratio", "ingestion_lag_p95"})

# The counter each metric reports as its ``Reading.volume`` (what minimum-volume guards
# compare), for the metrics where it is one counter of the window: the engine skips a rule
# on a series whose window cannot meet the guard without computing the reading at all.
# tests/test_rules.py checks every entry against the metric itself.
VOLUME_FIELD: dict[str, str] = {
    "5xx_rate": "requests", "error_rate": "requests", "rate_limited": "requests", "rate_limited_share": "requests",
    "cost_per_hour": "requests",
    "cost_ratio": "requests", "requests_per_second": "requests", "tokens": "requests", "trace_coverage": "requests",
    "cache_hit_rate": "cacheable", "cache_hit_ratio": "cacheable", "latency_p95": "latency_n",
    "latency_p95_ratio": "latency_n", "latency_p50_ratio": "latency_n", "ingestion_lag_p95": "traces",
    "gauge_mean": "gauge_n",
}

# The counter each metric reports as its ``Reading.count`` (what minimum-count guards compare),
# for the metrics where it is one counter of the window or of the baseline: with the volume
# gate above, the engine skips a rule whose guard cannot be met without computing the reading.
# tests/test_rules.py checks every entry against the metric itself.
WINDOW, BASELINE = "window", "baseline"
COUNT_FIELD: dict[str, tuple[str, str]] = {
    "5xx_rate": (WINDOW, "e5xx"), "error_rate": (WINDOW, "errors"), "rate_limited": (WINDOW, "e429"),
    "rate_limited_share": (WINDOW, "e429"), "cache_hit_ratio": (BASELINE, "cacheable"),
    "latency_p95": (WINDOW, "latency_n"), "latency_p95_ratio": (BASELINE, "latency_n"),
    "latency_p50_ratio": (BASELINE, "latency_n"), "requests_per_second": (WINDOW, "requests"),
    "request_ratio": (BASELINE, "requests"), "tokens": (WINDOW, "tokens"), "oom": (WINDOW, "oom"),
    "proxy_errors": (WINDOW, "proxy_error"), "access_5xx": (WINDOW, "access_5xx"),
    "clickhouse_errors": (WINDOW, "clickhouse_errors"), "ingestion_lag_p95": (WINDOW, "traces"),
    "trace_coverage": (BASELINE, "traces"), "gauge_mean": (WINDOW, "gauge_n"),
}
