"""The detection pipeline in one object: events in, notifications out.

``Engine.process(event)`` folds an event into the minute buckets of every series it
belongs to; whenever the watermark (newest event time minus the allowed lateness)
passes a minute boundary, that minute closes: every series slides its windows, every
rule judges every series of its scopes, firing and resolved alerts go to the
incident manager, and the notification log decides what to send.

Replay calls it directly; the Faust worker calls the same methods from its agents.
Nothing here reads the clock: time is the events' own.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from models import events as E
from models.cardinality import OVERFLOW, Cardinality, FloodWatch
from models.config import Config
from models.incidents import Alert, IncidentManager
from models.metrics import BASELINE, COUNT_FIELD, METRICS, RATE_RATIOS, VOLUME_FIELD, Reading
from models.notifications import fmt_value, where
from models.partials import APP, GAUGE, LEAF, TRACING, Partials
from models.rules import SPEND_METRICS, Rule, RuleState, Transition
from models.state import attributes
from models.windows import STEP, Bucket, SeriesWindow, floor_div

# A series present from the input's first minutes (give or take FROM_START) is judged by the
# rules that compare it with its own past once it has WARM_UP minutes of it (``_min_age``).
WARM_UP, FROM_START = 30, 5
DIMS = ("gateway", "provider", "model", "team", "key", "app", "tracing", "gauge", "team_model")
_LABELLED = {"provider", "model", "team", "key", "app"}

def series_labels(dim: str, value: str) -> dict[str, str]:
    return {dim: value} if dim in _LABELLED else {}


class Engine:
    # replay --report: an object with .on_minute(engine, minute). A class attribute, so that
    # snapshots pickled before it existed restore with it off.
    recorder: Any = None

    def __init__(self, config: Config | None = None) -> None:
        self.config = config or Config()
        self.rules_by_dim: dict[str, list[Rule]] = defaultdict(list)
        specs: dict[str, set[tuple[int, int]]] = defaultdict(set)
        quantiled: dict[str, set[tuple[int, int]]] = defaultdict(set)  # sums a quantile is read from
        for rule in self.config.rules:
            for dim in rule.scopes:
                self.rules_by_dim[dim].append(rule)
                mine = {(rule.window, 0), (rule.baseline, rule.window)} if rule.baseline else {(rule.window, 0)}
                specs[dim] |= mine
                if rule.reads_quantiles():
                    quantiled[dim] |= mine
                if getattr(rule, "outgrow_gateway", False):  # it reads the gateway's sums of the same spans
                    specs["gateway"] |= mine
        self.specs = {dim: tuple(sorted(s)) for dim, s in specs.items()}
        self.gates = {rule.name: _gates(rule) for rule in self.config.rules}
        self.stop_rules = _stop_rules(self.config.rules)
        self.dark: set[int] = set()  # minutes the gateway was down (``_mark_dark``)
        self.start_minute: int | None = None  # the first minute of the input (``_min_age``)
        # Sums without histograms (SeriesWindow ``plain``); whoever adds a spec that reads a
        # quantile (the anomaly models) removes it from here.
        self.plain_specs = {dim: frozenset(s - quantiled[dim]) for dim, s in specs.items()}
        self.retention = max((length + offset for s in self.specs.values() for length, offset in s), default=60)
        self.series: dict[tuple[str, str], SeriesWindow] = {}
        self.states: dict[tuple[str, tuple[str, str]], RuleState] = {}
        self.incidents = IncidentManager(self.config.timing)
        self.spend: defaultdict[tuple[int, str], float] = defaultdict(float)  # (day, team) -> USD from the records
        self.reported_spend: dict[tuple[int, str], float] = {}  # (day, team) -> the gateway's own figure
        self.reported_budget: dict[str, float] = {}
        cap, idle = self.config.cardinality
        self.acc = Partials(Cardinality(cap, idle))  # this minute's (and late) events, not yet in the series
        self.closed_minute: int | None = None
        self.max_ts: float | None = None
        self.events = 0
        self.late_dropped = 0
        # objects with .on_minute(engine, minute): the flood watch, anomaly models, budget forecast
        self.extra_detectors: list = [FloodWatch(cap, idle)]

    def __getstate__(self) -> dict:
        return attributes(self)  # compiled (setup.py), an engine has no __dict__

    def __setstate__(self, state: dict) -> None:
        """Snapshots of engines from before ``plain_specs`` load with it filled in (no plain
        sums: every new window keeps its histograms, as it did then). The rules' gates are
        derived from the rules, so they are rebuilt (older snapshots kept ``volume_gates``)."""
        for name, value in state.items():
            if name != "volume_gates":
                setattr(self, name, value)
        self.gates = {rule.name: _gates(rule) for rule in self.config.rules}
        self.stop_rules = _stop_rules(self.config.rules)
        if "plain_specs" not in state:
            self.plain_specs = {}
        if "dark" not in state:
            self.dark = set()
        if "start_minute" not in state:
            self.start_minute = None

    # --- input --------------------------------------------------------------------
    def process(self, ev: E.Event) -> list[dict]:
        ts = ev.ts
        out: list[dict] = []
        max_ts, closed = self.max_ts, self.closed_minute
        if max_ts is None or closed is None:
            out = self.advance(ts)
        elif ts > max_ts:
            # advance() only when the watermark minute moves; otherwise just move event time
            # (the same expression advance() computes, so minutes close at the same events).
            if floor_div(ts - self.config.lateness, STEP) - 1 > closed:
                out = self.advance(ts)
            else:
                self.max_ts = ts
        closed = self.closed_minute
        assert closed is not None  # set by the first advance()
        if ts < (closed - self.retention + 1) * STEP:
            self.late_dropped += 1
            return out
        minute = self.acc.add(ev)
        if minute is not None:
            self.events += 1
            if minute <= closed:  # late, within the bounded lateness: into its closed minute now
                self._absorb(self.acc.pop_through(closed))
        return out

    def apply_partials(self, messages: list) -> list[tuple[str, Any, int, int]]:
        """Fold pre-aggregated minute buckets (``Partials.drain()`` of another process) in.

        Returns the buckets of minutes older than the retention, as ``(kind, key, minute, events)``:
        those are counted in ``late_dropped`` and not folded in. A bucket is a
        ``[kind, key, minute, row]`` list (``Bucket.to_row``); a ``{"t", "k", "m", "b"}`` dict, as
        older workers shipped it, is read as well."""
        late = []
        closed = self.closed_minute
        for msg in messages:
            if type(msg) is dict:
                kind: str = msg["t"]
                if kind == "meta":
                    self._absorb_meta(msg)
                    continue
                names: Any = msg["k"]
                minute: int = msg["m"]
                b = Bucket.from_dict(msg["b"])
            else:
                kind = msg[0]
                names = msg[1]  # a tuple straight from ``Partials.drain``, a list once through JSON
                minute = msg[2]
                b = Bucket.from_row(msg[3])
            n = b.requests + b.traces + _log_count(b)
            self.events += n
            if closed is not None and minute <= closed - self.retention:
                self.late_dropped += n
                late.append((kind, names, minute, n))
                continue
            key = tuple(names)
            if kind == LEAF:  # each ingest batch capped on its own: cap across batches here
                key = self.acc.cardinality.leaf_for(key, minute)
            if closed is not None and minute <= closed:  # late: into its closed minute now, as in process()
                self._absorb([(kind, key, minute, b)])
                continue
            # Not closed yet: merged with the other parts of its minute, and rolled up into the
            # series once, when the minute closes (as replay's own events are), not once per part.
            self.acc.merge_part(kind, key, minute, b)
        return late

    def advance(self, ts: float) -> list[dict]:
        """Move event time to ``ts``; close every minute the watermark has passed."""
        closed = self.closed_minute
        if self.max_ts is None or closed is None:
            self.max_ts = ts
            self.closed_minute = floor_div(ts - self.config.lateness, STEP) - 1
            if self.start_minute is None:
                self.start_minute = self.closed_minute + 1
            return []
        self.max_ts = max_ts = max(self.max_ts, ts)
        last = floor_div(max_ts - self.config.lateness, STEP) - 1
        out: list[dict] = []
        while closed < last:
            if last - closed > 60 and closed % 15 == 0 and self._quiet():
                # A gap in event time (a quiet night, a clock jump): once every window is empty and
                # no rule is pending or firing, the minutes in between have nothing to judge.
                closed = self.closed_minute = last - 1
            closed += 1
            out.extend(self.close_minute(closed))  # which sets closed_minute to it
        return out

    def advance_with_meta(self, wm: float, meta: dict[int, list[dict]]) -> list[dict]:
        """``advance(wm)`` for an engine fed partials messages: each close key's meta messages
        (``models.partials.ByCloseMinute``; popped from ``meta``) are taken in just before that
        minute closes, where replay's own engine counts them."""
        out: list[dict] = []
        lateness = self.config.lateness
        for key in sorted(k for k in meta if k <= floor_div(wm - lateness, STEP) - 1):
            closed = self.closed_minute
            assert closed is not None  # partials come after the engine's first advance()
            if key - 1 > closed:  # close the minutes before it first
                out.extend(self.advance(key * STEP + lateness))
            self.apply_partials(meta.pop(key))
        out.extend(self.advance(wm))
        return out

    def _quiet(self) -> bool:
        return not self.states and not self.acc.buckets and all(w.idle() for w in self.series.values())

    def finish(self) -> list[dict]:
        """End of input: close the minutes the last events fell in."""
        if self.max_ts is None:
            return []
        return self.advance(self.max_ts + self.config.lateness + STEP)

    # --- rolling partial buckets up into the series ---------------------------------
    def _window(self, dim: str, value: str) -> SeriesWindow:
        key = (dim, value)
        w = self.series.get(key)
        if w is None:
            w = self.series[key] = self.new_window(dim)
        return w

    def new_window(self, dim: str) -> SeriesWindow:
        """An empty window for a series of ``dim``, with the sums its rules and models read."""
        return SeriesWindow(self.specs.get(dim, ((1, 0),)), self.plain_specs.get(dim, frozenset()))

    def _merge(self, dim: str, value: str, minute: int, part: Bucket) -> None:
        w = self._window(dim, value)
        b, late = w.bucket_for(minute)
        b.merge(part)
        if late:
            w.add_late(minute, part)

    def _absorb(self, parts: list[tuple[str, tuple, int, Bucket]]) -> None:
        for kind, key, minute, part in parts:
            if kind == LEAF:
                provider, model, team, key_alias = key
                self._merge("gateway", "", minute, part)
                for dim, value in (("provider", provider), ("model", model), ("team", team), ("key", key_alias)):
                    if value:
                        self._merge(dim, value, minute, part)
                if team and model:  # who drives a cost: "team analytics on claude-sonnet" (models/explain.py)
                    self._merge("team_model", f"{team}/{model}", minute, part)
                # Calls count for the tracing series too (trace coverage): only that counter.
                tracing = self._window("tracing", "")
                bucket, late = tracing.bucket_for(minute)
                bucket.requests += part.requests
                if late:
                    tracing.add_late(minute, Bucket(requests=part.requests))
            elif kind == APP:
                self._merge("app", key[0], minute, part)
            elif kind == TRACING:
                self._merge("tracing", "", minute, part)
            elif kind == GAUGE:
                self._merge("gauge", key[0], minute, part)
        if self.acc.has_meta():
            self._absorb_meta(self.acc.drain_meta())

    def _absorb_meta(self, meta: dict) -> None:
        # Side facts only for names under the cap: admitted now, or counted as themselves when
        # their buckets came in (they have a series). The worker applies buckets as they arrive
        # and side facts only at their minute's close, later: by then the cap's generations may
        # have moved on without them (tick() on closes, with every bucket already in), and their
        # spend went to ~other.
        for dim, value, labels in meta.get("implied", ()):
            if self._admitted(dim, value):
                self.incidents.imply(dim, value, labels)
        for day, team, usd in meta.get("spend", ()):
            self.spend[(day, team if self._admitted("team", team) else OVERFLOW)] += usd
        for day, team, usd in meta.get("reported", ()):
            self.reported_spend[(day, team)] = max(self.reported_spend.get((day, team), 0.0), usd)
        for team, usd in meta.get("budgets", ()):
            self.reported_budget[team] = usd

    def _admitted(self, dim: str, value: str) -> bool:
        return self.acc.cardinality.admitted(dim, value) or (dim, value) in self.series

    # --- closing a minute: judge every series -------------------------------------------
    def close_minute(self, minute: int) -> list[dict]:
        now = (minute + 1) * STEP
        self._absorb(self.acc.pop_through(minute))
        states, gates = self.states, self.gates
        for key, w in list(self.series.items()):
            rules = self.rules_by_dim.get(key[0], ())
            if w.idle():
                if not any(states.get((r.name, key)) for r in rules):
                    continue
            w.close(minute)
            sums = w.sums
            readings: dict[tuple[str, int, int], Reading | None] = {}  # this series' metrics, read once
            for rule in rules:
                if rule.series and rule.series != key[1]:
                    continue
                if (rule.name, key) not in states and not _open(gates.get(rule.name, ()), sums):
                    continue  # too thin to be judged, and nothing pending or firing: it cannot change
                self._judge(rule, key, w, minute, now, readings)
        self._mark_dark(minute)
        for det in self.extra_detectors:
            det.on_minute(self, minute)
        if self.recorder is not None:
            self.recorder.on_minute(self, minute)
        self.closed_minute = minute
        return self.incidents.flush(now)

    def _judge(self, rule: Rule, key: tuple[str, str], w: SeriesWindow, minute: int, now: float,
               readings: dict[tuple[str, int, int], Reading | None]) -> None:
        reading = self._read(rule, key, w, minute, now, readings)
        skey = (rule.name, key)
        state = self.states.get(skey)
        if state is None:
            if reading is None or not rule.guarded(reading) or not rule.breached(reading.value):
                return
            state = self.states[skey] = RuleState()
        transition = state.step(rule, reading, now)
        alert_id = f"{rule.name}|{key[0]}={key[1]}"
        if transition is Transition.FIRING:
            self.incidents.fire(self._alert(rule, key, state, alert_id), now)
        elif transition is Transition.RESOLVED:
            self.incidents.resolve(alert_id, now)
            del self.states[skey]
        elif state.firing and state.last is not None:
            self.incidents.update(self._alert(rule, key, state, alert_id))
        elif not state.firing and state.pending_since is None:
            del self.states[skey]

    def _read(self, rule: Rule, key, w: SeriesWindow, minute: int, now: float,
              readings: dict[tuple[str, int, int], Reading | None]) -> Reading | None:
        """The rule's reading of the series; ``readings`` holds the metrics already read from the
        same sums this minute (two latency rules read the same median: its quantiles once)."""
        if rule.min_age and w.age_minutes(minute) < self._min_age(rule, w) + rule.window:
            return None
        if rule.metric in SPEND_METRICS:
            return self._spend_reading(rule, key, now)
        base = w.sums.get((rule.baseline, rule.window)) if rule.baseline else None
        window = w.sums[(rule.window, 0)]
        base_minutes = self._base_minutes(rule, w, minute)
        if base_minutes == rule.baseline:
            reading = _metric(readings, rule.metric, rule, window, base)
        elif base_minutes * 4 < rule.baseline:
            return None  # too little baseline to compare with: the gateway was down for most of it
        else:
            reading = METRICS[rule.metric](window, base, rule.window, base_minutes)
        confirm = rule.confirm
        if reading is not None and ((confirm is not None and not rule.confirmed_by(
                _metric(readings, confirm[0], rule, window, base))) or (
                getattr(rule, "outgrow_gateway", False)  # a rule from a snapshot older than the field
                and not self._outgrows_gateway(rule, window, base, reading, base_minutes))):
            return Reading(0.0 if rule.op == ">" else float("inf"), reading.volume, reading.count,
                           reading.actual, reading.expected)
        return reading

    def _min_age(self, rule: Rule, w: SeriesWindow) -> int:
        """Minutes a series must have existed before the rule judges it. A new team or model
        has no normal yet, so it waits the rule's ``min_age``; a series that was there from the
        first minute of the input is not new, only its past is unknown: it is judged once it
        has ``WARM_UP`` minutes of baseline (an outage or a runaway 40 minutes into a replay, or
        after a worker's first start, pages instead of going unseen for an hour or two)."""
        start, first = self.start_minute, w.first_minute
        if start is not None and first is not None and first <= start + FROM_START:
            return min(rule.min_age, WARM_UP)
        return rule.min_age

    def _base_minutes(self, rule: Rule, w: SeriesWindow, minute: int) -> int:
        """The minutes of the rule's baseline to divide a rate by: those the series existed
        (a series judged before its baseline is full, ``_min_age``), less those the gateway was
        down (``_mark_dark``). An hour holding a 20-minute blackout carries two thirds of an
        hour's calls and cost; compared as a whole hour, the recovery after it reads as a surge
        or as cost per hour doubled."""
        if rule.metric not in RATE_RATIOS:
            return rule.baseline
        hi = minute - rule.window  # the baseline is minutes (lo, hi], as its sum is
        lo = hi - rule.baseline
        if w.first_minute is not None and w.first_minute - 1 > lo:
            lo = w.first_minute - 1
        if not self.dark or rule.op != ">":
            return hi - lo
        return hi - lo - sum(1 for m in self.dark if lo < m <= hi)

    def _mark_dark(self, minute: int) -> None:
        """Remember the minutes the gateway was down: minutes without one call while a rule on
        its falling request rate (``GatewayTrafficStopped``) was pending or firing. A quiet
        night's empty minutes are not dark: nobody called, the gateway was not down."""
        dark = self.dark
        if dark:
            horizon = minute - self.retention
            dark.difference_update([m for m in dark if m <= horizon])
        gateway = self.series.get(("gateway", ""))
        if gateway is None:
            return
        for rule in self.stop_rules:
            if (rule.name, ("gateway", "")) in self.states:
                for m in range(minute - rule.window + 1, minute + 1):
                    b = gateway.buckets.get(m)
                    if b is None or b.requests == 0:
                        dark.add(m)

    def _outgrows_gateway(self, rule: Rule, window: Bucket, base: Bucket | None, reading: Reading,
                          base_minutes: int) -> bool:
        """A series' request ratio beats ``threshold`` times that of the rest of the gateway
        (the gateway without it), when the rest rose: the surge is this series' own."""
        gateway = self.series.get(("gateway", ""))
        if gateway is None or base is None:
            return True
        rest_now = gateway.sums[(rule.window, 0)].requests - window.requests
        rest_before = gateway.sums[(rule.baseline, rule.window)].requests - base.requests
        if rest_before <= 0:
            return True
        rest_ratio = (rest_now / rule.window) / (rest_before / base_minutes)
        return reading.value > rule.threshold * max(rest_ratio, 1.0)

    def _spend_reading(self, rule: Rule, key, now: float) -> Reading | None:
        day = int((now - 1) // 86400)
        dim, team = key
        if rule.metric == "spend_today":
            total = sum(self.spend_today(day, t) for (d, t) in list(self.spend) if d == day)
            return Reading(total, 1, 1, total, None)
        budget = self.config.budgets.get(team) or self.reported_budget.get(team)
        if not budget:
            return None
        spent = self.spend_today(day, team)
        return Reading(spent / budget, 1, 1, spent / budget, budget)

    def spend_today(self, day: int, team: str) -> float:
        return max(self.spend.get((day, team), 0.0), self.reported_spend.get((day, team), 0.0))

    def _alert(self, rule: Rule, key, state: RuleState, alert_id: str) -> Alert:
        r = state.last
        assert r is not None and state.pending_since is not None  # a firing state has read a value
        labels = series_labels(*key)
        baseline = _baseline(state, r)
        title = rule.summary.format(where=where(labels), actual=r.actual) if rule.summary else rule.name
        title += _title_suffix(rule, r, baseline)
        return Alert(
            id=alert_id, name=rule.name, category=rule.category, severity=rule.severity,
            detector="rule", labels=labels, value=r.actual, threshold=_threshold(rule, r, baseline),
            started_at=state.pending_since, title=title, baseline=baseline,
        )


def _metric(readings: dict[tuple[str, int, int], Reading | None], name: str, rule: Rule, window: Bucket,
            base: Bucket | None) -> Reading | None:
    """Metric ``name`` over the rule's spans, from ``readings`` if it was read already."""
    key = (name, rule.window, rule.baseline)
    if key in readings:
        return readings[key]
    reading = readings[key] = METRICS[name](window, base, rule.window, rule.baseline)
    return reading


def _stop_rules(rules: tuple[Rule, ...]) -> list[Rule]:
    """The rules that page when the gateway's traffic stops: its request rate falling."""
    return [r for r in rules if r.metric == "request_ratio" and r.op == "<" and "gateway" in r.scopes]


Gate = tuple[tuple[int, int], str, float]  # (window spec, counter, minimum)


def _gates(rule: Rule) -> tuple[Gate, ...]:
    """The rule's volume and count guards that are one counter of a sum: a series whose sums
    fail one of them cannot start an alert, so the rule is not read there at all."""
    gates: list[Gate] = []
    field = VOLUME_FIELD.get(rule.metric)
    if field is not None and rule.min_volume > 0:
        gates.append(((rule.window, 0), field, rule.min_volume))
    counted = COUNT_FIELD.get(rule.metric)
    if counted is not None and rule.min_count > 0:
        which, field = counted
        if which != BASELINE:
            gates.append(((rule.window, 0), field, rule.min_count))
        elif rule.baseline:  # without a baseline the metric reads nothing anyway
            gates.append(((rule.baseline, rule.window), field, rule.min_count))
    return tuple(gates)


def _open(gates: tuple[Gate, ...], sums: dict[tuple[int, int], Bucket]) -> bool:
    for spec, field, minimum in gates:
        if getattr(sums[spec], field) < minimum:
            return False
    return True


def _log_count(b: Bucket) -> int:
    return (b.access + b.oom + b.crash + b.clean_exit + b.start + b.proxy_error + b.app_error
            + b.clickhouse_errors + b.ingest_batches + b.gauge_n)


def _baseline(state: RuleState, r: Reading) -> float | None:
    return state.frozen_baseline if state.frozen_baseline is not None else r.expected


def _threshold(rule: Rule, r: Reading, baseline: float | None) -> float:
    """The threshold in the unit of the value: relative rules multiply the baseline."""
    if rule.metric.endswith("_ratio") or rule.metric in ("cost_ratio", "trace_coverage"):
        if rule.metric == "spend_today_ratio":
            return rule.threshold
        return rule.threshold * baseline if baseline is not None else rule.threshold
    return rule.threshold


def _title_suffix(rule: Rule, r: Reading, baseline: float | None) -> str:
    name = rule.metric
    if name == "spend_today_ratio":
        return f" (${r.actual * (baseline or 0):,.2f} of ${baseline:,.2f})" if baseline else ""
    unit = "rate" if name.endswith("rate") or name in ("cache_hit_ratio", "trace_coverage") else ""
    thr = _threshold(rule, r, baseline)
    base = f", baseline {fmt_value(unit or name, baseline)}" if baseline is not None else ""
    return f" (threshold {fmt_value(unit or name, thr)}{base})"
