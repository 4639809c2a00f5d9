"""Pre-aggregation: events folded into per-minute partial buckets, before any window.

The per-event work of detection is only this fold, and it is kept as small as it can
be: a request updates one *leaf* bucket, keyed by ``(provider, model, team, key)`` and
minute; the leaf is rolled up into the gateway, provider, model, team and key series
once per minute, when the minute closes. Log lines update their app's bucket, Langfuse
observations the tracing bucket.

The same object serves replay (the ``Engine`` owns one) and the Kafka service (the
ingest agent folds each raw batch into one and ships ``drain()``'s messages, a few per
series and minute instead of one per log line, to the detection agent, which applies
them with ``Engine.apply_partials``). Side facts ride along: which provider serves a
model, which team owns a key, spend per team and day, the budgets the gateway reports.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Final

from models.cardinality import OVERFLOW, Cardinality
from models.events import (
    LOG,
    METRIC,
    REQUEST,
    SIG_ACCESS,
    SIG_APP_ERROR,
    SIG_CLEAN_EXIT,
    SIG_CLICKHOUSE_ERROR,
    SIG_CRASH,
    SIG_INGEST_BATCH,
    SIG_OOM,
    SIG_PROXY_ERROR,
    SIG_START,
    TRACE,
    Event,
)
from models.state import attributes
from models.windows import STEP, Bucket, count_bin, floor_div, latency_bin

LEAF: Final = "leaf"
APP: Final = "app"
TRACING: Final = "tracing"
GAUGE: Final = "gauge"

_LOG_COUNTERS: Final = {
    SIG_OOM: "oom", SIG_CRASH: "crash", SIG_CLEAN_EXIT: "clean_exit", SIG_START: "start",
    SIG_PROXY_ERROR: "proxy_error", SIG_APP_ERROR: "app_error",
    SIG_CLICKHOUSE_ERROR: "clickhouse_errors", SIG_INGEST_BATCH: "ingest_batches",
}


# Costs are counted on a binary grid of 2**-36 USD (1.5e-11): sums of such numbers are exact in a
# float up to 2**17 USD (131,072), so a minute's cost adds up to the same bits in whatever order
# its parts come (replay adds call by call, the worker adds per-message partial sums, Kafka
# delivering them in any order), and so do sliding windows that add and subtract it. The grid
# moves a call's cost by at most 7.3e-12 USD: 6,000 calls of $0.01 still sum to $60.000000.
COST_GRID: Final = float(2**36)
# x + 1.5 * 2**52 - 1.5 * 2**52 is x rounded to an integer, half to even, as round(x) does, for
# |x| < 2**51 (a call under $32,768): float arithmetic only, where round() makes an int object.
_ROUNDER: Final = 6755399441055744.0
_ROUNDS: Final = 2251799813685248.0  # 2**51


def grid_cost(usd: float) -> float:
    """``usd`` on the cost grid (``COST_GRID``): ``round(usd * COST_GRID) / COST_GRID``."""
    x = usd * COST_GRID
    if -_ROUNDS < x < _ROUNDS:
        return (x + _ROUNDER - _ROUNDER) / COST_GRID
    return round(x) / COST_GRID


def fold_request(b: Bucket, ev: Event, cost: float) -> None:
    """Count a call in ``b``; ``cost`` is its cost on the grid (``grid_cost(ev.cost)``)."""
    b.requests += 1
    if not ev.ok:
        if ev.status == 429:
            b.e429 += 1
        else:
            b.errors += 1
            if ev.status >= 500:
                b.e5xx += 1
    hit = ev.cache_hit
    if hit is not None:
        b.cacheable += 1
        if hit:
            b.cache_hits += 1
    b.cost += cost
    b.tokens += ev.tokens
    if ev.latency is not None and not hit:
        count_bin(b.latency, latency_bin(ev.latency))
        b.latency_n += 1


def fold_log(b: Bucket, ev: Event) -> None:
    if ev.signal == SIG_ACCESS:
        b.access += 1
        if ev.status >= 500:
            b.access_5xx += 1
        return
    counter = _LOG_COUNTERS[ev.signal]
    setattr(b, counter, getattr(b, counter) + 1)


def fold_trace(b: Bucket, ev: Event) -> None:
    b.traces += 1
    if ev.lag is not None:
        count_bin(b.lag, latency_bin(max(ev.lag, 0.001)))
        if ev.lag > b.lag_max:
            b.lag_max = ev.lag


class Partials:
    """Partial buckets by ``(kind, key, minute)`` plus side facts, until drained.

    ``minutes`` lists each minute's bucket keys, so that closing a minute (``pop_through``) finds
    its buckets without going through every minute's: a worker catching up on a backlog holds
    hours of minutes here before the first one closes. A request's spend and the spend its gateway
    reports are summed per team for the day of the last request (``day``) and moved into
    ``spend`` and ``reported_spend``, keyed by day and team, when the day changes or the side facts
    are read (``drain_meta``); ``noted`` holds the leaves whose implied labels were looked at
    since then. Costs are on the grid, so the sums are the same bits either way.
    """

    __slots__ = ("buckets", "implied", "spend", "reported_spend", "budgets", "max_ts", "events", "cardinality",
                 "known_leaves", "minutes", "noted", "day", "day_spend", "day_reported")

    def __init__(self, cardinality: Cardinality | None = None) -> None:
        self.buckets: dict[tuple[str, tuple, int], Bucket] = {}
        self.minutes: dict[int, list[tuple[str, tuple, int]]] = {}
        self.implied: dict[tuple[str, str], dict[str, str]] = {}
        self.spend: defaultdict[tuple[int, str], float] = defaultdict(float)
        self.reported_spend: dict[tuple[int, str], float] = {}
        self.budgets: dict[str, float] = {}
        self.noted: set[tuple] = set()
        self.day = 0
        self.day_spend: dict[str, float] = {}
        self.day_reported: dict[str, float] = {}
        self.max_ts: float | None = None
        self.events = 0
        self.cardinality = cardinality or Cardinality()  # caps distinct values per leaf dimension
        self.known_leaves = self.cardinality.leaves

    def __getstate__(self) -> dict:
        return attributes(self)  # compiled, a Partials has no __dict__

    def __setstate__(self, state: dict) -> None:
        """Snapshots from before ``minutes`` and the per-day sums load with them rebuilt (empty)."""
        for name, value in state.items():
            setattr(self, name, value)
        if "minutes" not in state:
            self.minutes = {}
            for k in self.buckets:
                self.minutes.setdefault(k[2], []).append(k)
        if "noted" not in state:
            self.noted, self.day, self.day_spend, self.day_reported = set(), 0, {}, {}

    def _new(self, k: tuple[str, tuple, int], b: Bucket) -> Bucket:
        """``b`` as the bucket of ``k``, which has none yet."""
        self.buckets[k] = b
        keys = self.minutes.get(k[2])
        if keys is None:
            self.minutes[k[2]] = [k]
        else:
            keys.append(k)
        return b

    def _bucket(self, kind: str, key: tuple, minute: int) -> Bucket:
        k = (kind, key, minute)
        b = self.buckets.get(k)
        if b is None:
            b = self._new(k, Bucket())
        return b

    def merge_part(self, kind: str, key: tuple, minute: int, part: Bucket) -> None:
        """Fold a partial bucket of another process in (``Engine.apply_partials``)."""
        k = (kind, key, minute)
        have = self.buckets.get(k)
        if have is None:
            self._new(k, part)
        else:
            have.merge(part)

    def add(self, ev: Event, meta: Partials | None = None) -> int | None:
        """Fold one event; returns its minute, or None when the event carries nothing to count.

        A request's side facts (spend, reported spend, budget, implied labels) go to ``meta``
        when given (``ByCloseMinute`` keeps them apart by close key), else here."""
        ts = ev.ts
        minute = floor_div(ts, STEP)
        kind = ev.kind
        # The bucket lookups of the three frequent kinds are inlined (this runs once per event).
        if kind == REQUEST:
            leaf = (ev.provider, ev.model, ev.team, ev.key)
            leaf = self.known_leaves.get(leaf) or self.cardinality.leaf(leaf, minute)
            k: tuple[str, tuple, int] = (LEAF, leaf, minute)
            b = self.buckets.get(k)
            if b is None:
                b = self._new(k, Bucket())
            cost = grid_cost(ev.cost)  # once: the bucket's cost and the team's spend today
            fold_request(b, ev, cost)
            (self if meta is None else meta)._note_request(ev, leaf, cost)
        elif kind == LOG:
            if ev.signal != SIG_ACCESS and ev.signal not in _LOG_COUNTERS:
                return None
            k = (APP, (ev.app or "unknown",), minute)
            b = self.buckets.get(k)
            if b is None:
                b = self._new(k, Bucket())
            fold_log(b, ev)
        elif kind == TRACE:
            k = (TRACING, (), minute)
            b = self.buckets.get(k)
            if b is None:
                b = self._new(k, Bucket())
            fold_trace(b, ev)
        elif kind == METRIC and ev.value is not None and ev.message:
            if ev.source == "probe":  # one probe, two gauges: did it answer, was it healthy
                self._gauge("probe_reachable", minute, 1.0 if ev.status else 0.0)
                self._gauge("probe_healthy", minute, ev.value)
            else:
                self._gauge(ev.message, minute, ev.value)
        else:
            return None
        self.events += 1
        if self.max_ts is None or ts > self.max_ts:
            self.max_ts = ts
        return minute

    def _gauge(self, name: str, minute: int, value: float) -> None:
        b = self._bucket(GAUGE, (name,), minute)
        b.gauge_n += 1
        b.gauge_sum += value

    def _note_request(self, ev: Event, leaf: tuple[str, str, str, str], cost: float) -> None:
        provider, model, team, key = leaf  # capped: a flood of names must not grow these either
        if leaf not in self.noted:  # implied labels are only ever added: once per leaf and drain
            self.noted.add(leaf)
            if model and provider and ("model", model) not in self.implied and model != OVERFLOW:
                self.implied[("model", model)] = {"provider": provider}
            if key and team and ("key", key) not in self.implied and key != OVERFLOW:
                self.implied[("key", key)] = {"team": team}
        day = floor_div(ev.ts, 86400)
        if day != self.day:
            self._close_day()
            self.day = day
        if cost:
            spend = self.day_spend
            spend[team] = spend.get(team, 0.0) + cost
        if team and team != OVERFLOW:
            reported = ev.team_spend
            if reported is not None and reported > self.day_reported.get(team, 0.0):
                self.day_reported[team] = reported
            if ev.budget:
                self.budgets[team] = ev.budget

    def _close_day(self) -> None:
        """Move the day's sums per team into ``spend`` and ``reported_spend``."""
        day = self.day
        for team, usd in self.day_spend.items():
            self.spend[(day, team)] += usd
        for team, usd in self.day_reported.items():
            if usd > self.reported_spend.get((day, team), 0.0):
                self.reported_spend[(day, team)] = usd
        self.day_spend, self.day_reported = {}, {}

    def has_meta(self) -> bool:
        """Whether there are side facts to drain (``drain_meta``)."""
        return bool(self.implied or self.spend or self.reported_spend or self.budgets or self.day_spend
                    or self.day_reported)

    def pop_through(self, minute: int) -> list[tuple[str, tuple, int, Bucket]]:
        """Remove and return the buckets of every minute up to and including ``minute``."""
        due = [m for m in self.minutes if m <= minute]
        if not due:
            return []
        keys: list[tuple[str, tuple, int]] = []
        for m in due:
            keys.extend(self.minutes.pop(m))
        keys.sort()
        return [(k[0], k[1], k[2], self.buckets.pop(k)) for k in keys]

    # --- shipping between processes (the Kafka service) --------------------------
    def drain(self) -> list:
        """Everything accumulated, as JSON-able messages; the accumulator is left empty: a bucket
        as ``[kind, key, minute, Bucket.to_row()]`` (``key`` a tuple, a JSON array once encoded),
        the side facts as a ``{"t": "meta", ...}`` dict.

        The buckets come in the order they were made (the order of their first events), not
        sorted as a minute's close takes them: whoever applies them merges each into its own
        bucket, and a cardinality cap then admits new leaves in the order replay meets them."""
        out: list = [[k[0], k[1], k[2], b.to_row()] for k, b in self.buckets.items()]
        self.buckets, self.minutes = {}, {}
        meta = self.meta_message()
        if meta is not None:
            out.append(meta)
        return out

    def meta_message(self) -> dict | None:
        """The side facts drained (``drain_meta``) as a ``{"t": "meta", ...}`` message, or None
        when there are none."""
        meta = self.drain_meta()
        return {"t": "meta", **meta} if any(meta.values()) else None

    def drain_meta(self) -> dict:
        self._close_day()
        meta = {
            "implied": [[d, v, labels] for (d, v), labels in sorted(self.implied.items())],
            "spend": [[day, team, usd] for (day, team), usd in sorted(self.spend.items())],
            "reported": [[day, team, usd] for (day, team), usd in sorted(self.reported_spend.items())],
            "budgets": sorted(self.budgets.items()),
        }
        self.implied, self.spend, self.reported_spend, self.budgets = {}, defaultdict(float), {}, {}
        self.noted = set()
        return meta


class ByCloseMinute:
    """Events folded into partial buckets, and their side facts per *close key*, shipped as
    partials messages.

    The close key of an event is the minute at whose close replay's engine first counts it:
    replay closes minute m at the first event with ts >= (m + 1) * 60 + lateness, after taking
    in every event before it (``Engine.process``). Buckets can be applied at any time before
    their minute closes, so they are folded together whatever their close key (a minute's
    events fall under two: before and after its 30th second with the default lateness). The
    side facts (spend per team and day, reported spend, budgets, implied labels) enter the
    engine at a minute close in replay; kept apart by close key, an engine fed ``drain()``'s
    messages (``Engine.apply_partials`` and ``Engine.advance_with_meta``) takes them in at the
    same point of event time.

    The Kafka worker's ingest stage folds each raw batch with one; ``replay --jobs`` folds
    each reader process's events with one.
    """

    __slots__ = ("lateness", "parts", "groups", "last_key", "last", "min_ts", "max_ts")

    def __init__(self, lateness: float) -> None:
        self.lateness = lateness
        self.parts = Partials()  # the buckets
        self.groups: dict[int, Partials] = {}  # close key -> its side facts
        self.last_key: int | None = None  # the close key of the previous event (events come mostly in time order)
        self.last: Partials | None = None
        self.min_ts: float | None = None  # the oldest and newest time of the events added
        self.max_ts: float | None = None

    def add(self, ev: Event) -> None:
        ts = ev.ts
        key = floor_div(ts - self.lateness, STEP)
        if key != self.last_key:
            group = self.groups.get(key)
            if group is None:
                group = self.groups[key] = Partials()
            self.last_key, self.last = key, group
        self.parts.add(ev, self.last)
        # Every event moves event time, also one that counts for no series (a plain log line), as
        # in ``Engine.process``.
        if self.min_ts is None or ts < self.min_ts:
            self.min_ts = ts
        if self.max_ts is None or ts > self.max_ts:
            self.max_ts = ts

    def drain(self) -> dict:
        """``{"min_ts", "max_ts", "events", "partials", "meta"}``: the buckets as ``Partials.drain``
        messages, the side facts as ``[close_key, meta message]`` pairs; the folder is left empty."""
        parts = self.parts
        events = parts.events
        buckets = parts.drain()  # its side facts are in ``groups``: no meta message
        meta: list[list] = []
        for key, group in sorted(self.groups.items()):
            facts = group.meta_message()
            if facts is not None:
                meta.append([key, facts])
        out = {"min_ts": self.min_ts, "max_ts": self.max_ts, "events": events, "partials": buckets, "meta": meta}
        self.parts, self.groups, self.last_key, self.last = Partials(), {}, None, None
        self.min_ts = self.max_ts = None
        return out
