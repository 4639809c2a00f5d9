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

from models import events as E
from models.config import Config
from models.incidents import Alert, IncidentManager
from models.metrics import Reading
from models.notifications import fmt_value, where
from models.rules import SPEND_METRICS, Rule, RuleState, Transition
from models.windows import STEP, Bucket, SeriesWindow, latency_bin

DIMS = ("gateway", "provider", "model", "team", "key", "app", "tracing")
_LABELLED = {"provider", "model", "team", "key", "app"}

_LOG_COUNTERS = {
    E.SIG_OOM: "oom", E.SIG_CRASH: "crash", E.SIG_CLEAN_EXIT: "clean_exit", E.SIG_START: "start",
    E.SIG_PROXY_ERROR: "proxy_error", E.SIG_APP_ERROR: "app_error",
    E.SIG_CLICKHOUSE_ERROR: "clickhouse_errors", E.SIG_INGEST_BATCH: "ingest_batches",
}


def series_labels(dim: str, value: str) -> dict[str, str]:
    return {dim: value} if dim in _LABELLED else {}


class Engine:
    def __init__(self, config: Config | None = None) -> None:
        self.config = config or Config()
        self.rules_by_dim: dict[str, list[Rule]] = defaultdict(list)
        specs: dict[str, set[tuple[int, int]]] = defaultdict(set)
        for rule in self.config.rules:
            for dim in rule.scopes:
                self.rules_by_dim[dim].append(rule)
                specs[dim].add((rule.window, 0))
                if rule.baseline:
                    specs[dim].add((rule.baseline, rule.window))
        self.specs = {dim: tuple(sorted(s)) for dim, s in specs.items()}
        self.series: dict[tuple[str, str], SeriesWindow] = {}
        self.states: dict[tuple[str, tuple[str, str]], RuleState] = {}
        self.incidents = IncidentManager(self.config.timing)
        self.spend = defaultdict(float)  # (day, team) -> USD from the records
        self.reported_spend: dict[tuple[int, str], float] = {}  # (day, team) -> the gateway's own figure
        self.reported_budget: dict[str, float] = {}
        self.closed_minute: int | None = None
        self.max_ts: float | None = None
        self.events = 0
        self.late_dropped = 0
        self.extra_detectors: list = []  # anomaly detectors: objects with .on_minute(engine, minute)

    # --- input --------------------------------------------------------------------
    def process(self, ev: E.Event) -> list[dict]:
        out = self.advance(ev.ts) if self.max_ts is None or ev.ts > self.max_ts else []
        minute = int(ev.ts // STEP)
        if self.closed_minute is not None and minute <= self.closed_minute - self._retention():
            self.late_dropped += 1
            return out
        self.events += 1
        if ev.kind == E.REQUEST:
            self._add_request(ev, minute)
        elif ev.kind == E.LOG:
            self._add_log(ev, minute)
        elif ev.kind == E.TRACE:
            self._add_trace(ev, minute)
        return out

    def advance(self, ts: float) -> list[dict]:
        """Move event time to ``ts``; close every minute the watermark has passed."""
        if self.max_ts is None:
            self.max_ts = ts
            self.closed_minute = int((ts - self.config.lateness) // STEP) - 1
            return []
        self.max_ts = max(self.max_ts, ts)
        last = int((self.max_ts - self.config.lateness) // STEP) - 1
        out: list[dict] = []
        while self.closed_minute < last:
            out.extend(self.close_minute(self.closed_minute + 1))
        return out

    def finish(self) -> list[dict]:
        """End of input: close the minutes the last events fell in."""
        if self.max_ts is None:
            return []
        return self.advance(self.max_ts + self.config.lateness + STEP)

    # --- folding events into buckets ------------------------------------------------
    def _window(self, dim: str, value: str) -> SeriesWindow:
        key = (dim, value)
        w = self.series.get(key)
        if w is None:
            w = self.series[key] = SeriesWindow(self.specs.get(dim, ((1, 0),)))
        return w

    def _apply(self, dim: str, value: str, minute: int, fold) -> None:
        w = self._window(dim, value)
        b, late = w.bucket_for(minute)
        fold(b)
        if late:
            delta = Bucket()
            fold(delta)
            w.add_late(minute, delta)

    def _add_request(self, ev: E.Event, minute: int) -> None:
        def fold(b: Bucket) -> None:
            b.requests += 1
            if not ev.ok:
                if ev.status == 429:
                    b.e429 += 1
                else:
                    b.errors += 1
                    if ev.status >= 500:
                        b.e5xx += 1
            if ev.cache_hit is not None:
                b.cacheable += 1
                if ev.cache_hit:
                    b.cache_hits += 1
            b.cost += ev.cost
            b.tokens += ev.tokens
            if ev.latency is not None and not ev.cache_hit:
                k = latency_bin(ev.latency)
                b.latency[k] = b.latency.get(k, 0) + 1
                b.latency_n += 1

        for dim, value in (("gateway", ""), ("provider", ev.provider), ("model", ev.model),
                           ("team", ev.team), ("key", ev.key)):
            if value or dim == "gateway":
                self._apply(dim, value, minute, fold)
        self._apply("tracing", "", minute, _count_request)
        self._note_request(ev)

    def _note_request(self, ev: E.Event) -> None:
        if ev.model and ev.provider:
            self.incidents.imply("model", ev.model, {"provider": ev.provider})
        if ev.key and ev.team:
            self.incidents.imply("key", ev.key, {"team": ev.team})
        day = int(ev.ts // 86400)
        self.spend[(day, ev.team)] += ev.cost
        if ev.team_spend is not None and ev.team:
            prev = self.reported_spend.get((day, ev.team), 0.0)
            self.reported_spend[(day, ev.team)] = max(prev, ev.team_spend)
        if ev.budget and ev.team:
            self.reported_budget[ev.team] = ev.budget

    def _add_log(self, ev: E.Event, minute: int) -> None:
        counter = _LOG_COUNTERS.get(ev.signal)
        if ev.signal == E.SIG_ACCESS:
            def fold(b: Bucket) -> None:
                b.access += 1
                if ev.status >= 500:
                    b.access_5xx += 1
        elif counter is not None:
            def fold(b: Bucket) -> None:
                setattr(b, counter, getattr(b, counter) + 1)
        else:
            return
        self._apply("app", ev.app or "unknown", minute, fold)

    def _add_trace(self, ev: E.Event, minute: int) -> None:
        def fold(b: Bucket) -> None:
            b.traces += 1
            if ev.lag is not None:
                k = latency_bin(max(ev.lag, 0.001))
                b.lag[k] = b.lag.get(k, 0) + 1
                b.lag_max = max(b.lag_max, ev.lag)

        self._apply("tracing", "", minute, fold)

    def _retention(self) -> int:
        return max((length + offset for s in self.specs.values() for length, offset in s), default=60)

    # --- closing a minute: judge every series -------------------------------------------
    def close_minute(self, minute: int) -> list[dict]:
        now = (minute + 1) * STEP
        for key, w in list(self.series.items()):
            if w.idle():
                if not any(self.states.get((r.name, key)) for r in self.rules_by_dim.get(key[0], ())):
                    continue
            w.close(minute)
            for rule in self.rules_by_dim.get(key[0], ()):
                self._judge(rule, key, w, minute, now)
        for det in self.extra_detectors:
            det.on_minute(self, minute)
        self.closed_minute = minute
        return self.incidents.flush(now)

    def _judge(self, rule: Rule, key: tuple[str, str], w: SeriesWindow, minute: int, now: float) -> None:
        reading = self._read(rule, key, w, minute, now)
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

    def _read(self, rule: Rule, key, w: SeriesWindow, minute: int, now: float) -> Reading | None:
        if rule.min_age and w.age_minutes(minute) < rule.min_age + rule.window:
            return None
        if rule.metric in SPEND_METRICS:
            return self._spend_reading(rule, key, now)
        base = w.sums.get((rule.baseline, rule.window)) if rule.baseline else None
        window = w.sums[(rule.window, 0)]
        reading = rule.read(window, base)
        if reading is not None and rule.confirm and not rule.confirmed(window, base):
            return Reading(0.0 if rule.op == ">" else float("inf"), reading.volume, reading.count,
                           reading.actual, reading.expected)
        return reading

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
        labels = series_labels(*key)
        baseline = _baseline(state, r)
        title = rule.summary.format(where=where(labels), actual=r.actual) if rule.summary else rule.name
        title += _title_suffix(rule, r, baseline)
        return Alert(
            id=alert_id, name=rule.name, category=rule.category, severity=rule.severity,
            detector="rule", labels=labels, value=r.actual, threshold=_threshold(rule, r, baseline),
            started_at=state.pending_since, title=title, baseline=baseline,
        )


def _count_request(b: Bucket) -> None:
    b.requests += 1


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
