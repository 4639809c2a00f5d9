"""Event-time windows: one bucket per series per minute, merged into sliding windows.

A *series* is one place metrics are kept for: the whole gateway, one provider, one
model group, one team, one key, one Fly app, Langfuse ingestion. Each event updates
the buckets of every series it belongs to; rules read sliding windows (the last N
closed minutes) and baselines (the hour before) merged from those buckets.

Buckets are plain counters plus a log-binned latency histogram, so merging windows
is addition and memory per series is bounded by the retention.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any, Final

STEP: Final = 60  # seconds per bucket


def floor_div(x: float, step: float) -> int:
    """``int(x // step)``, the same integer, without the ``fmod`` that Python's float floor division
    runs (compiled, about 30 instructions instead of 300; it runs a few times per event).

    The quotient is corrected both ways, so it is the exact floor of ``x / step`` as ``//`` gives
    it: ``q * step`` is exact for the whole minutes and days of event time (far below 2**53).
    """
    q = int(x / step)  # toward zero, and possibly one off where x / step rounded across an integer
    if q * step > x:
        q -= 1
    elif (q + 1) * step <= x:
        q += 1
    return q

# Latency histogram: bins growing by 8% give quantiles within ~4% of the exact value.
_LOG_BASE: Final = math.log(1.08)
_MIN_LATENCY: Final = 0.001


def latency_bin(seconds: float) -> int:
    return int(math.log(max(seconds, _MIN_LATENCY)) / _LOG_BASE)


# One int object per bin, shared by every histogram: a dict finds a key that is the very object
# it holds without comparing values, and two dicts merged share their keys. Histogram keys are
# made with ``bin_key`` (bins outside the table are plain ints, equal all the same).
_LOWEST_BIN: Final = -100  # latency_bin(0.001) is -89
_BIN_KEYS: Final[list[Any]] = list(range(_LOWEST_BIN, 300))  # up to 1.08**300 s: any latency


def bin_key(b: int) -> Any:
    """The shared key object of bin ``b``."""
    i = b - _LOWEST_BIN
    return _BIN_KEYS[i] if 0 <= i < len(_BIN_KEYS) else b


def count_bin(hist: dict[Any, Any], b: int) -> None:
    """One more sample in bin ``b`` of ``hist`` (typed loosely: see ``_add_hist``)."""
    key = bin_key(b)
    hist[key] = hist.get(key, 0) + 1


def bin_value(b: int) -> float:
    """The geometric middle of bin ``b`` in seconds."""
    return math.exp((b + 0.5) * _LOG_BASE)


def quantile(hist: dict[Any, int], q: float) -> float | None:
    """The middle of the lowest bin at which the samples counted from the bottom (that bin
    included) number more than ``q * (total - 1)``.

    Found from the top down, bin by bin, without sorting the bins: the rules read p95s, near the
    top. The count from the bottom at a bin is the total less what lies above it, so this is the
    bin an ascending count stops at, by the same comparison.
    """
    total = 0
    top = -(1 << 30)  # below every bin (latency_bin(0) is -89)
    for key, count in hist.items():  # one pass for the total and the top bin, native ints
        total += count
        b: int = key
        if b > top:
            top = b
    if total == 0:
        return None
    rank = q * (total - 1)
    if not rank < total:  # q > 1 (or NaN): no bin passes; the ascending count ended on the last
        return bin_value(top)
    if rank < 0:
        return bin_value(min(hist))
    b = answer = top
    above = 0
    while above < total:  # below the lowest sample no bin can pass (the count there is 0 <= rank)
        # (keys typed loosely: compiled, a bin's shared key object finds its entry by identity)
        found = hist.get(bin_key(b))
        if found is not None:
            if not total - above > rank:
                break
            answer = b
            above += found
        b -= 1
    return bin_value(answer)


@dataclass(slots=True, init=False)  # __init__ below: compiled (setup.py), a generated one is not
class Bucket:
    """Counters for one series over one minute (or, merged, over a window)."""

    requests: int = 0
    errors: int = 0  # failed calls other than rate limits
    e5xx: int = 0
    e429: int = 0
    cacheable: int = 0
    cache_hits: int = 0
    saved_cost: float = 0.0
    cost: float = 0.0
    tokens: int = 0
    latency: dict[int, int] = field(default_factory=dict)  # non-cached calls
    latency_n: int = 0
    # Fly / app logs
    access: int = 0
    access_5xx: int = 0
    oom: int = 0
    crash: int = 0
    clean_exit: int = 0
    start: int = 0
    proxy_error: int = 0
    app_error: int = 0
    # Langfuse ingestion
    traces: int = 0
    lag: dict[int, int] = field(default_factory=dict)
    lag_max: float = 0.0
    clickhouse_errors: int = 0
    ingest_batches: int = 0
    # sampled gauges (infrastructure, probes)
    gauge_n: int = 0
    gauge_sum: float = 0.0

    def __init__(
        self, requests: int = 0, errors: int = 0, e5xx: int = 0, e429: int = 0, cacheable: int = 0,
        cache_hits: int = 0, saved_cost: float = 0.0, cost: float = 0.0, tokens: int = 0,
        latency: dict[int, int] | None = None, latency_n: int = 0, access: int = 0, access_5xx: int = 0,
        oom: int = 0, crash: int = 0, clean_exit: int = 0, start: int = 0, proxy_error: int = 0,
        app_error: int = 0, traces: int = 0, lag: dict[int, int] | None = None, lag_max: float = 0.0,
        clickhouse_errors: int = 0, ingest_batches: int = 0, gauge_n: int = 0, gauge_sum: float = 0.0,
    ) -> None:
        self.requests = requests
        self.errors = errors
        self.e5xx = e5xx
        self.e429 = e429
        self.cacheable = cacheable
        self.cache_hits = cache_hits
        self.saved_cost = saved_cost
        self.cost = cost
        self.tokens = tokens
        self.latency = {} if latency is None else latency
        self.latency_n = latency_n
        self.access = access
        self.access_5xx = access_5xx
        self.oom = oom
        self.crash = crash
        self.clean_exit = clean_exit
        self.start = start
        self.proxy_error = proxy_error
        self.app_error = app_error
        self.traces = traces
        self.lag = {} if lag is None else lag
        self.lag_max = lag_max
        self.clickhouse_errors = clickhouse_errors
        self.ingest_batches = ingest_batches
        self.gauge_n = gauge_n
        self.gauge_sum = gauge_sum

    def merge(self, other: Bucket) -> None:
        _merge_counters(self, other)
        if other.latency:
            _add_hist(self.latency, other.latency)
        if other.lag:
            _add_hist(self.lag, other.lag)
        if other.lag_max > self.lag_max:
            self.lag_max = other.lag_max

    def merge_counters(self, other: Bucket) -> None:
        """``merge`` without the histograms: for sums no quantile is ever read from."""
        _merge_counters(self, other)
        if other.lag_max > self.lag_max:
            self.lag_max = other.lag_max

    def subtract(self, other: Bucket) -> None:
        _subtract_counters(self, other)
        if other.latency:
            _subtract_hist(self.latency, other.latency)
        if other.lag:
            _subtract_hist(self.lag, other.lag)
        # lag_max is a window maximum and cannot be subtracted; the lag rules use quantiles.

    def to_dict(self) -> dict:
        """The counters that are not 0, and the histograms and ``lag_max`` when set: one bucket of a
        partials message (the worker's ingest ships hundreds per raw batch). Written out, as
        ``_merge_counters`` is: compiled, each test is a native field read, not a ``getattr``."""
        d: dict[str, Any] = {}
        if self.requests:
            d["requests"] = self.requests
        if self.errors:
            d["errors"] = self.errors
        if self.e5xx:
            d["e5xx"] = self.e5xx
        if self.e429:
            d["e429"] = self.e429
        if self.cacheable:
            d["cacheable"] = self.cacheable
        if self.cache_hits:
            d["cache_hits"] = self.cache_hits
        if self.saved_cost:
            d["saved_cost"] = self.saved_cost
        if self.cost:
            d["cost"] = self.cost
        if self.tokens:
            d["tokens"] = self.tokens
        if self.latency_n:
            d["latency_n"] = self.latency_n
        if self.access:
            d["access"] = self.access
        if self.access_5xx:
            d["access_5xx"] = self.access_5xx
        if self.oom:
            d["oom"] = self.oom
        if self.crash:
            d["crash"] = self.crash
        if self.clean_exit:
            d["clean_exit"] = self.clean_exit
        if self.start:
            d["start"] = self.start
        if self.proxy_error:
            d["proxy_error"] = self.proxy_error
        if self.app_error:
            d["app_error"] = self.app_error
        if self.traces:
            d["traces"] = self.traces
        if self.clickhouse_errors:
            d["clickhouse_errors"] = self.clickhouse_errors
        if self.ingest_batches:
            d["ingest_batches"] = self.ingest_batches
        if self.gauge_n:
            d["gauge_n"] = self.gauge_n
        if self.gauge_sum:
            d["gauge_sum"] = self.gauge_sum
        if self.latency:
            d["latency"] = {str(k): v for k, v in self.latency.items()}
        if self.lag:
            d["lag"] = {str(k): v for k, v in self.lag.items()}
        if self.lag_max:
            d["lag_max"] = self.lag_max
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Bucket:
        """``to_dict``'s inverse (keys it does not know are ignored), written out as ``to_dict`` is."""
        b = cls()
        b.requests = d.get("requests", 0)
        b.errors = d.get("errors", 0)
        b.e5xx = d.get("e5xx", 0)
        b.e429 = d.get("e429", 0)
        b.cacheable = d.get("cacheable", 0)
        b.cache_hits = d.get("cache_hits", 0)
        b.saved_cost = d.get("saved_cost", 0.0)
        b.cost = d.get("cost", 0.0)
        b.tokens = d.get("tokens", 0)
        b.latency_n = d.get("latency_n", 0)
        b.access = d.get("access", 0)
        b.access_5xx = d.get("access_5xx", 0)
        b.oom = d.get("oom", 0)
        b.crash = d.get("crash", 0)
        b.clean_exit = d.get("clean_exit", 0)
        b.start = d.get("start", 0)
        b.proxy_error = d.get("proxy_error", 0)
        b.app_error = d.get("app_error", 0)
        b.traces = d.get("traces", 0)
        b.clickhouse_errors = d.get("clickhouse_errors", 0)
        b.ingest_batches = d.get("ingest_batches", 0)
        b.gauge_n = d.get("gauge_n", 0)
        b.gauge_sum = d.get("gauge_sum", 0.0)
        latency = d.get("latency")
        if latency:
            b.latency = {bin_key(int(k)): v for k, v in latency.items()}
        lag = d.get("lag")
        if lag:
            b.lag = {bin_key(int(k)): v for k, v in lag.items()}
        b.lag_max = d.get("lag_max", 0.0)
        return b


_COUNTERS: Final = tuple(f.name for f in fields(Bucket) if f.name not in ("latency", "lag", "lag_max"))


# ``a.x += b.x`` for every counter, written out: merging is the hot path of the per-minute
# roll-up, and compiled (setup.py) each line is one native field update; a loop of
# getattr/setattr would be generic calls, compiled or not. tests/test_windows_counters.py
# checks that both functions cover every counter of ``Bucket``.
def _merge_counters(a: Bucket, b: Bucket) -> None:
    a.requests += b.requests
    a.errors += b.errors
    a.e5xx += b.e5xx
    a.e429 += b.e429
    a.cacheable += b.cacheable
    a.cache_hits += b.cache_hits
    a.saved_cost += b.saved_cost
    a.cost += b.cost
    a.tokens += b.tokens
    a.latency_n += b.latency_n
    a.access += b.access
    a.access_5xx += b.access_5xx
    a.oom += b.oom
    a.crash += b.crash
    a.clean_exit += b.clean_exit
    a.start += b.start
    a.proxy_error += b.proxy_error
    a.app_error += b.app_error
    a.traces += b.traces
    a.clickhouse_errors += b.clickhouse_errors
    a.ingest_batches += b.ingest_batches
    a.gauge_n += b.gauge_n
    a.gauge_sum += b.gauge_sum


def _subtract_counters(a: Bucket, b: Bucket) -> None:
    a.requests -= b.requests
    a.errors -= b.errors
    a.e5xx -= b.e5xx
    a.e429 -= b.e429
    a.cacheable -= b.cacheable
    a.cache_hits -= b.cache_hits
    a.saved_cost -= b.saved_cost
    a.cost -= b.cost
    a.tokens -= b.tokens
    a.latency_n -= b.latency_n
    a.access -= b.access
    a.access_5xx -= b.access_5xx
    a.oom -= b.oom
    a.crash -= b.crash
    a.clean_exit -= b.clean_exit
    a.start -= b.start
    a.proxy_error -= b.proxy_error
    a.app_error -= b.app_error
    a.traces -= b.traces
    a.clickhouse_errors -= b.clickhouse_errors
    a.ingest_batches -= b.ingest_batches
    a.gauge_n -= b.gauge_n
    a.gauge_sum -= b.gauge_sum


# Histogram merges. The dicts are typed loosely here on purpose: compiled (setup.py), a
# ``dict[int, int]`` converts every key and count to a native int and back (a new int object
# for each bin under -5: the bins of calls under 0.9 s), where plain objects are moved as they are.
def _add_hist(hist: dict[Any, Any], other: dict[Any, Any]) -> None:
    for b, n in other.items():
        count: int = n  # counts as native ints: the additions are not generic calls
        have: int = hist.get(b, 0)
        hist[b] = have + count


def _subtract_hist(hist: dict[Any, Any], other: dict[Any, Any]) -> None:
    for b, n in other.items():
        count: int = n
        have: int = hist.get(b, 0)
        if have > count:
            hist[b] = have - count
        else:
            hist.pop(b, None)


def _slide(spec: tuple[int, int], s: Bucket, plain: bool) -> tuple[int, int, Bucket, bool]:
    length, offset = spec
    return offset, offset + length, s, plain


_WINDOW_SLOTS = ("buckets", "sums", "closed", "first_minute", "horizon", "plain")


class SeriesWindow:
    """The minute buckets of one series and the sliding sums the rules read.

    ``specs`` are ``(length, offset)`` pairs in minutes: the sum over minutes
    ``(closed - offset - length, closed - offset]``. Sums are kept up to date
    incrementally as minutes close (add the minute entering, subtract the one
    leaving), so a one-hour baseline costs two merges a minute, not sixty.

    ``plain`` names the specs nobody reads a quantile from (an error rate over the last
    2 minutes, the cost of the last hour): their sums skip the latency and lag histograms,
    which are most of the cost of a merge. Their ``latency`` and ``lag`` stay empty.
    """

    __slots__ = _WINDOW_SLOTS + ("_slides",)

    def __init__(self, specs: tuple[tuple[int, int], ...] = (), plain: frozenset[tuple[int, int]] = frozenset()) -> None:
        # (``specs`` has a default for unpickling: compiled, the class is created by calling it)
        self.buckets: dict[int, Bucket] = {}
        self.sums: dict[tuple[int, int], Bucket] = {spec: Bucket() for spec in specs}
        self.closed: int | None = None  # last minute folded into the sums
        self.first_minute: int | None = None  # first minute with data: the series' age
        self.horizon = max((length + offset for length, offset in specs), default=1)
        self.plain = frozenset(plain) & frozenset(specs)
        # (offset, offset + length, sum, merge, subtract) per spec: close() runs once a minute per series.
        self._slides = tuple(_slide(spec, s, spec in self.plain) for spec, s in self.sums.items())

    def __getstate__(self) -> dict:  # snapshots: the slide plan is rebuilt, not pickled
        return {k: getattr(self, k) for k in _WINDOW_SLOTS}  # not self.__slots__: compiled, there is none

    def __setstate__(self, state: dict) -> None:
        for k, v in state.items():
            setattr(self, k, v)
        self.plain = state.get("plain", frozenset())  # snapshots from before ``plain``
        self._slides = tuple(_slide(spec, s, spec in self.plain) for spec, s in self.sums.items())

    def bucket_for(self, minute: int) -> tuple[Bucket, bool]:
        """The bucket of ``minute``, and whether that minute is already closed (late data)."""
        b = self.buckets.get(minute)
        if b is None:
            b = self.buckets[minute] = Bucket()
            if self.first_minute is None or minute < self.first_minute:
                self.first_minute = minute
        return b, self.closed is not None and minute <= self.closed

    def add_late(self, minute: int, delta: Bucket) -> None:
        """Fold a late event's contribution into every sum whose range holds ``minute``."""
        closed = self.closed
        assert closed is not None  # a late minute is one at or before the last closed one
        for offset, end, s, plain in self._slides:
            if closed - end < minute <= closed - offset:
                if plain:
                    s.merge_counters(delta)
                else:
                    s.merge(delta)

    def close(self, minute: int) -> None:
        """Close ``minute``: slide every sum forward by one minute."""
        buckets = self.buckets
        for offset, end, s, plain in self._slides:
            # Direct calls, not merge/subtract functions kept per sum: compiled, a direct call is
            # native, a call through a stored function object goes through Python's call protocol.
            entering = buckets.get(minute - offset)
            if entering is not None:
                if plain:
                    s.merge_counters(entering)
                else:
                    s.merge(entering)
            leaving = buckets.get(minute - end)
            if leaving is not None:
                if plain:
                    _subtract_counters(s, leaving)
                else:
                    s.subtract(leaving)
        self.closed = minute
        old = minute - self.horizon
        if old in self.buckets:
            del self.buckets[old]

    def idle(self) -> bool:
        return not self.buckets

    def age_minutes(self, now_minute: int) -> int:
        return 0 if self.first_minute is None else now_minute - self.first_minute + 1
