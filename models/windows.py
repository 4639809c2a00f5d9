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

    def to_row(self) -> list:
        """``[counters, latency, lag, lag_max]``: the bucket of a partials message (the worker's
        ingest ships hundreds per raw batch), positional rather than keyed, so that building,
        encoding, decoding and reading it again take few objects. ``counters`` are the fields of
        ``_COUNTERS`` in that order, up to the last that is not 0 (a request bucket stops after
        ``latency_n``); each histogram is a flat ``[bin, count, bin, count, ...]`` list.
        Written out: compiled, each field is a native read, not a ``getattr``."""
        counters: list[Any] = [
            self.requests, self.errors, self.e5xx, self.e429, self.cacheable, self.cache_hits, self.saved_cost,
            self.cost, self.tokens, self.latency_n,
        ]
        if (self.access or self.access_5xx or self.oom or self.crash or self.clean_exit or self.start
                or self.proxy_error or self.app_error or self.traces or self.clickhouse_errors
                or self.ingest_batches or self.gauge_n or self.gauge_sum):
            counters.extend((self.access, self.access_5xx, self.oom, self.crash, self.clean_exit, self.start,
                             self.proxy_error, self.app_error, self.traces, self.clickhouse_errors,
                             self.ingest_batches, self.gauge_n, self.gauge_sum))
        while counters and not counters[-1]:
            counters.pop()
        return [counters, _flat(self.latency), _flat(self.lag), self.lag_max]

    @classmethod
    def from_row(cls, row: list) -> Bucket:
        """``to_row``'s inverse (a ``counters`` list shorter than ``_COUNTERS`` leaves the rest 0)."""
        counters: list = row[0]
        latency: list = row[1]
        lag: list = row[2]
        c = counters + _ZERO_COUNTERS[len(counters):] if len(counters) < _N_COUNTERS else counters
        b = cls()
        b.requests = c[0]
        b.errors = c[1]
        b.e5xx = c[2]
        b.e429 = c[3]
        b.cacheable = c[4]
        b.cache_hits = c[5]
        b.saved_cost = c[6]
        b.cost = c[7]
        b.tokens = c[8]
        b.latency_n = c[9]
        b.access = c[10]
        b.access_5xx = c[11]
        b.oom = c[12]
        b.crash = c[13]
        b.clean_exit = c[14]
        b.start = c[15]
        b.proxy_error = c[16]
        b.app_error = c[17]
        b.traces = c[18]
        b.clickhouse_errors = c[19]
        b.ingest_batches = c[20]
        b.gauge_n = c[21]
        b.gauge_sum = c[22]
        if latency:
            b.latency = _unflat(latency)
        if lag:
            b.lag = _unflat(lag)
        b.lag_max = row[3]
        return b

    @classmethod
    def from_dict(cls, d: dict) -> Bucket:
        """A bucket as partials messages carried it before ``to_row`` (the counters that are not 0,
        the histograms with string keys, by name; keys it does not know are ignored): read so that
        what an older worker left in the partials topic is still applied after an upgrade."""
        b = cls()
        for name in _COUNTERS:
            if name in d:
                setattr(b, name, d[name])
        for name in ("latency", "lag"):
            if d.get(name):
                setattr(b, name, {bin_key(int(k)): v for k, v in d[name].items()})
        b.lag_max = d.get("lag_max", 0.0)
        return b


def _flat(hist: dict[int, int]) -> list[int]:
    out: list[int] = []
    if not hist:
        return out
    for k, v in hist.items():
        out.append(k)
        out.append(v)
    return out


def _unflat(flat: list) -> dict[Any, Any]:
    hist: dict[Any, Any] = {}
    for i in range(0, len(flat) - 1, 2):
        hist[bin_key(flat[i])] = flat[i + 1]
    return hist


_COUNTERS: Final = tuple(f.name for f in fields(Bucket) if f.name not in ("latency", "lag", "lag_max"))
_N_COUNTERS: Final = len(_COUNTERS)
# Each counter's default (0 or 0.0), in ``_COUNTERS`` order: what ``from_row`` pads a short row with.
_ZERO_COUNTERS: Final[list[Any]] = [f.default for f in fields(Bucket) if f.name in _COUNTERS]


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
