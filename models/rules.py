"""Threshold rules with ``for`` durations, volume guards and hysteresis.

The defaults reproduce the alerts of the runbooks our users gave us (gateway 5xx,
error rate, cache hit rate, budget, cost, latency, traffic, 429s, crash loops, proxy
errors, Langfuse ingestion), plus a few *fast* rules that compare a series with its
own last hour, so that a collapse pages in minutes rather than after the runbook's
30-minute ``for``.

A rule is evaluated once per closed minute for every series of its scopes. Its
per-series state machine is ``inactive → pending → firing → inactive``:

* the condition must hold for ``for_`` minutes before the alert fires;
* a firing alert resolves only once the value is back past ``threshold × clear``
  (hysteresis) for ``clear_for`` minutes, so it does not flap on the boundary;
* without traffic (volume under the guard) a firing alert stays firing: silence
  during an outage is not recovery. It resolves after ``no_data_for`` minutes.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from enum import Enum
from typing import Final

from models.metrics import METRICS, QUANTILE_METRICS, Reading

CATEGORIES = (
    "error_rate", "rate_limit", "latency", "cache", "cost", "budget",
    "traffic", "availability", "tracing", "resource",
)
SEVERITIES = ("critical", "warning", "info")


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    category: str
    severity: str
    scopes: tuple[str, ...]  # series dimensions: gateway, provider, model, team, key, app, tracing
    metric: str  # a name in models.metrics.METRICS, or spend_today / spend_today_ratio
    op: str  # ">" or "<"
    threshold: float
    window: int = 5  # minutes the metric is computed over
    for_: int = 0  # minutes the condition must hold before firing
    min_volume: float = 0  # e.g. requests in the window
    min_count: float = 0  # e.g. errors in the window
    baseline: int = 0  # minutes of baseline before the window (relative rules)
    min_baseline: float = 0  # guard on the baseline reading's count (its sample size)
    min_age: int = 0  # minutes the series must have existed (new teams have no normal yet)
    clear: float = 0.8  # hysteresis factor on the threshold
    clear_for: int = 5
    no_data_for: int = 30
    series: str = ""  # only the series with this value (gauge rules name their metric here)
    confirm: tuple[str, float] | None = None  # a second metric that must breach too: (metric, threshold)
    summary: str = ""  # "{where} 5xx rate {actual:.1%}": how the title reads
    enabled: bool = True
    # request_ratio of a team or key: it must also beat ``threshold`` times the rest of the
    # gateway's own ratio (when that rose), so a surge is this series' own (``Engine._read``).
    # Last, so that rules pickled in older worker snapshots still load field by field.
    outgrow_gateway: bool = False

    def __reduce__(self) -> tuple:
        # Compiled (setup.py), a frozen class is not restored attribute by attribute: by its fields.
        return (Rule, tuple(getattr(self, name) for name in _RULE_FIELDS))

    def breached(self, value: float) -> bool:
        return value > self.threshold if self.op == ">" else value < self.threshold

    def cleared(self, value: float) -> bool:
        if self.op == ">":
            return value <= self.threshold * self.clear
        return value >= self.threshold / self.clear

    def confirmed_by(self, r: Reading | None) -> bool:
        """The ``confirm`` condition on the confirming metric's reading ``r``: e.g. the median
        moved too, not just one slow tail call (``Engine._read`` reads the metric)."""
        if self.confirm is None:
            return True
        threshold = self.confirm[1]
        return r is not None and (r.value > threshold if self.op == ">" else r.value < threshold)

    def reads_quantiles(self) -> bool:
        """Whether the rule reads a latency or lag histogram (its sums must keep them)."""
        return self.metric in QUANTILE_METRICS or (self.confirm is not None and self.confirm[0] in QUANTILE_METRICS)

    def guarded(self, r: Reading) -> bool:
        """True when the reading has enough volume to be judged."""
        if r.volume < self.min_volume or r.count < self.min_count:
            return False
        if self.baseline and self.min_baseline and (r.expected is None):
            return False
        return True


_RULE_FIELDS = tuple(f.name for f in fields(Rule))

G, P, M, T, K, A, TR, GA = "gateway", "provider", "model", "team", "key", "app", "tracing", "gauge"

DEFAULT_RULES: tuple[Rule, ...] = (
    # --- errors: runbook "5xx > 1% for 5 min", "error rate > 5% / 5 min, > 20% / 2 min",
    # "one model > 10% for 5 min", "one provider's failures > 90% for 5 min", and the
    # cutover rollback trigger "error rate > 2%" (here as a warning with a 3 min for).
    Rule("GatewayHigh5xxRate", "error_rate", "critical", (G,), "5xx_rate", ">", 0.01,
         window=5, for_=5, min_volume=100, min_count=8, summary="gateway 5xx rate {actual:.1%}"),
    Rule("GatewayErrorRateHigh", "error_rate", "warning", (G,), "error_rate", ">", 0.05,
         window=5, for_=5, min_volume=100, min_count=10, summary="gateway error rate {actual:.1%}"),
    Rule("GatewayErrorRateCritical", "error_rate", "critical", (G,), "error_rate", ">", 0.20,
         window=2, for_=2, min_volume=20, min_count=10, summary="gateway error rate {actual:.1%}"),
    Rule("ErrorRateRollbackTrigger", "error_rate", "warning", (G, P), "error_rate", ">", 0.02,
         window=5, for_=3, min_volume=100, min_count=12, summary="{where} error rate {actual:.1%}"),
    Rule("ProviderErrorRateCritical", "error_rate", "critical", (P,), "error_rate", ">", 0.20,
         window=2, for_=2, min_volume=20, min_count=10, summary="{where} error rate {actual:.1%}"),
    Rule("ProviderDown", "error_rate", "critical", (P,), "error_rate", ">", 0.90,
         window=5, for_=5, min_volume=10, min_count=10, summary="{where} failing {actual:.0%} of calls"),
    Rule("ModelErrorRateHigh", "error_rate", "warning", (M,), "error_rate", ">", 0.10,
         window=5, for_=5, min_volume=30, min_count=8, summary="{where} error rate {actual:.1%}"),
    # --- rate limits: "> 10 rate-limit errors in 5 min", and at least 1 call in 20 of the gateway,
    # team or key: a gateway four times the size of the runbook's sees ten stray 429s (under 3%
    # of a key's calls) every few hours; a storm rejects far more (25-65% of the team's calls).
    Rule("RateLimitStorm", "rate_limit", "warning", (G, T, K), "rate_limited", ">", 10,
         window=5, for_=0, clear=0.5, confirm=("rate_limited_share", 0.05),
         summary="{where} {actual:.0f} rate-limited (429) calls in 5 min"),
    # --- cache: "hit rate < 25% for 30 min", and a fast collapse against the last hour
    Rule("CacheHitRateLow", "cache", "warning", (G,), "cache_hit_rate", "<", 0.25,
         window=10, for_=30, min_volume=50, summary="cache hit rate {actual:.0%}"),
    Rule("CacheHitRateCollapsed", "cache", "warning", (G,), "cache_hit_ratio", "<", 0.5,
         window=3, for_=2, min_volume=50, baseline=60, min_baseline=200, min_age=60, clear=0.7,
         summary="{where} cache hit rate {actual:.0%}"),
    # --- cost and budget: "team spend today > 80% of budget", "daily cost > $100",
    # "cost/h > 2x the previous hour for 15 min", and a fast spike against the last hour.
    Rule("TeamBudgetBurn", "budget", "warning", (T,), "spend_today_ratio", ">", 0.8,
         window=1, for_=0, clear=0.99, clear_for=1, summary="{where} spent {actual:.0%} of today's budget"),
    Rule("DailyCostHigh", "cost", "info", (G,), "spend_today", ">", 100.0,
         window=1, for_=0, clear=0.99, clear_for=1, summary="gateway spend today ${actual:,.2f}"),
    Rule("CostPerHourDoubled", "cost", "warning", (G, T), "cost_ratio", ">", 2.0,
         window=60, for_=15, baseline=60, min_count=2.5, min_age=120, clear=0.75,
         summary="{where} cost ${actual:,.2f}/h"),
    Rule("CostSpike", "cost", "warning", (G, T, K), "cost_ratio", ">", 4.0,
         window=5, for_=2, baseline=60, min_count=3.0, min_volume=20, min_age=60, clear=0.5,
         summary="{where} cost ${actual:,.2f}/h"),
    # --- latency: "p95 > 10 s for 10 min" and the rollback trigger "p95 doubled"
    Rule("LatencyP95High", "latency", "warning", (G,), "latency_p95", ">", 10.0,
         window=5, for_=10, min_volume=50, summary="gateway p95 latency {actual:.1f} s"),
    Rule("LatencyP95Doubled", "latency", "warning", (M, P), "latency_p95_ratio", ">", 2.0,
         window=5, for_=2, min_volume=20, confirm=("latency_p50_ratio", 1.5), baseline=60, min_baseline=100, min_age=60, clear=0.75,
         summary="{where} p95 latency {actual:.1f} s"),
    Rule("LatencyMedianDoubled", "latency", "warning", (M, P), "latency_p50_ratio", ">", 2.0,
         window=5, for_=2, min_volume=8, baseline=60, min_baseline=60, min_age=60, clear=0.6,
         summary="{where} median latency {actual:.1f} s"),
    # The same over 15 minutes, for a model with about one uncached call a minute: its 5-minute
    # window never holds the 8 calls the rule above needs, nor its hour the 60 calls of a
    # baseline. Eight calls in 15 minutes against thirty in the hour before still tell a
    # doubled median from noise; the price is a later page (about 10 minutes in).
    Rule("LatencyMedianDoubledSlowModel", "latency", "warning", (M, P), "latency_p50_ratio", ">", 2.0,
         window=15, for_=2, min_volume=8, baseline=60, min_baseline=30, min_age=60, clear=0.6,
         summary="{where} median latency {actual:.1f} s over 15 min"),
    # --- traffic: "> 100 req/s for 10 min", "> 1M tokens in 1 h" (info: a busy gateway passes it)
    Rule("HighTraffic", "traffic", "warning", (G,), "requests_per_second", ">", 100.0,
         window=1, for_=10, summary="gateway {actual:.0f} req/s"),
    # A surge against the gateway's own last hour (a launch, a client retry loop): the absolute
    # runbook line above only fits gateways that already run near 100 req/s.
    Rule("TrafficSurge", "traffic", "warning", (G,), "request_ratio", ">", 2.0,
         window=5, for_=5, min_volume=150, min_count=600, baseline=60, min_baseline=600, min_age=120,
         clear=0.7, summary="gateway {actual:.1f} req/s"),
    # The same for one team or key against its own last hour (a team's launch, one client's retry
    # loop): a team under half of the gateway triples without the gateway doubling. Teams and keys
    # are burstier than the gateway, so only those with ≥ 300 calls in that hour (5 a minute) and
    # 2 h of history are judged; in the shared scenarios such a series holds at most ×1.6 of its
    # last hour for 6 minutes running (a small team's burst, the morning ramp).
    # It must also outgrow the rest of the gateway by as much: when every series reads high
    # at once (all teams' launch, the hour after a gateway outage, whose minutes at zero
    # deflate every hourly baseline) the gateway's own TrafficSurge speaks, or nothing does.
    Rule("TeamTrafficSurge", "traffic", "warning", (T, K), "request_ratio", ">", 2.0,
         window=5, for_=5, min_volume=50, min_count=300, baseline=60, min_baseline=300, min_age=120,
         clear=0.7, outgrow_gateway=True, summary="{where} {actual:.2f} req/s"),
    Rule("TokensPerHourHigh", "traffic", "info", (G,), "tokens", ">", 1_000_000,
         window=60, for_=0, clear=0.9, summary="gateway {actual:,.0f} tokens in the last hour"),
    # --- availability: the gateway stops answering altogether. Nothing it logs says so (no
    # record, no access line): its request rate falling to under a tenth of its last hour does.
    # Only for a gateway that had steady traffic (≥ 600 calls in that hour, ≥ 2 h of history).
    Rule("GatewayTrafficStopped", "availability", "critical", (G,), "request_ratio", "<", 0.1,
         window=3, for_=2, min_count=600, baseline=60, min_baseline=600, min_age=120, clear=0.2,
         summary="gateway traffic fell to {actual:.2f} req/s"),
    # --- availability: OOM kills, crash loops, Fly proxy errors
    Rule("GatewayOOMKilled", "availability", "warning", (A,), "oom", ">", 0,
         window=10, for_=0, clear_for=10, summary="{where} OOM-killed {actual:.0f}x in 10 min"),
    Rule("GatewayCrashLoop", "availability", "critical", (A,), "crashes", ">", 2,
         window=10, for_=0, clear=0.5, clear_for=10, summary="{where} crashed {actual:.0f}x in 10 min"),
    Rule("FlyProxyErrors", "availability", "warning", (A,), "proxy_errors", ">", 10,
         window=5, for_=0, clear=0.3, summary="{where} {actual:.0f} Fly proxy errors in 5 min"),
    # --- tracing: Langfuse ingestion lag, stall, ClickHouse INSERT errors
    Rule("LangfuseIngestionLag", "tracing", "warning", (TR,), "ingestion_lag_p95", ">", 120.0,
         window=5, for_=2, min_volume=5, clear=0.5, summary="Langfuse ingestion lag p95 {actual:.0f} s"),
    Rule("LangfuseIngestionStalled", "tracing", "warning", (TR,), "trace_coverage", "<", 0.2,
         window=5, for_=2, min_volume=30, baseline=60, min_baseline=100, min_age=30, clear=0.5,
         summary="Langfuse stored {actual:.0%} of gateway calls as traces"),
    # --- infrastructure and health probes (gatewatch tail redis|postgres|probe)
    Rule("RedisMemoryHigh", "resource", "warning", (GA,), "gauge_mean", ">", 220e6, series="redis_used_memory_bytes",
         window=2, for_=0, clear=0.95, summary="Redis cache using {actual:,.0f} bytes"),
    Rule("DatabasePoolExhausted", "resource", "critical", (GA,), "gauge_mean", ">", 0.95,
         series="postgres_connections_used_ratio", window=1, for_=5, clear=0.9,
         summary="PostgreSQL connections {actual:.0%} of max"),
    Rule("DatabaseSlowQueries", "resource", "warning", (GA,), "gauge_mean", ">", 1000.0,
         series="postgres_mean_exec_time_ms", window=5, for_=5,
         summary="PostgreSQL mean query time {actual:,.0f} ms"),
    Rule("GatewayUnreachable", "availability", "critical", (GA,), "gauge_mean", "<", 0.5, series="probe_reachable",
         window=1, for_=2, clear=0.6, summary="gateway health endpoint reachable {actual:.0%} of probes"),
    Rule("GatewayUnhealthy", "availability", "warning", (GA,), "gauge_mean", "<", 0.5, series="probe_healthy",
         window=1, for_=5, clear=0.6, summary="gateway health endpoint healthy {actual:.0%} of probes"),
    Rule("ClickHouseInsertErrors", "tracing", "warning", (A,), "clickhouse_errors", ">", 2,
         window=10, for_=0, clear=0.4, clear_for=10, summary="{where} {actual:.0f} ClickHouse INSERT errors in 10 min"),
)


class Transition(Enum):
    FIRING = "firing"
    RESOLVED = "resolved"


@dataclass(slots=True)
class RuleState:
    """The per-(rule, series) state machine."""

    pending_since: float | None = None  # event time the condition started holding
    firing: bool = False
    clear_since: float | None = None
    no_data_since: float | None = None
    last: Reading | None = None
    frozen_baseline: float | None = None  # the baseline as it was when the condition started

    def step(self, rule: Rule, reading: Reading | None, now: float) -> Transition | None:
        # Firing needs the full guards (volume and count); clearing needs only volume:
        # an error rate back to 0 has no errors to count, and that is the good news.
        if reading is not None and reading.volume >= rule.min_volume:
            self.no_data_since = None
            self.last = reading
        else:
            reading = None  # no volume: for clearing as for firing, as good as no reading
        if not self.firing:
            return self._step_idle(rule, reading if reading is not None and rule.guarded(reading) else None, now)
        return self._step_firing(rule, reading, now)

    def _step_idle(self, rule: Rule, r: Reading | None, now: float) -> Transition | None:
        if r is None or not rule.breached(r.value):
            self.pending_since = None
            return None
        if self.pending_since is None:
            self.pending_since = now - 60
            self.frozen_baseline = r.expected
        if now - 60 - self.pending_since >= rule.for_ * 60:
            self.firing, self.clear_since = True, None
            return Transition.FIRING
        return None

    def _step_firing(self, rule: Rule, r: Reading | None, now: float) -> Transition | None:
        if r is None:
            self.no_data_since = self.no_data_since or now
            if now - self.no_data_since >= rule.no_data_for * 60:
                return self._resolve()
            return None
        if not rule.cleared(r.value):
            self.clear_since = None
            return None
        self.clear_since = self.clear_since or now
        if now - self.clear_since >= (rule.clear_for - 1) * 60:
            return self._resolve()
        return None

    def _resolve(self) -> Transition:
        self.firing = False
        self.pending_since = self.clear_since = self.no_data_since = None
        return Transition.RESOLVED


def rules_from_config(overrides: dict | None) -> tuple[Rule, ...]:
    """Apply the YAML's ``rules:`` section: ``{RuleName: {threshold: .., for: .., enabled: ..}}``.

    Unknown rule names define new rules when they carry at least category, severity,
    scopes, metric, op and threshold.
    """
    rules = {r.name: r for r in DEFAULT_RULES}
    for name, spec in (overrides or {}).items():
        spec = {("for_" if k == "for" else k): v for k, v in (spec or {}).items()}
        if "scopes" in spec:
            spec["scopes"] = tuple(spec["scopes"])
        check_rule(name, spec)
        rules[name] = replace(rules[name], **spec) if name in rules else Rule(name=name, **spec)
    return tuple(r for r in rules.values() if r.enabled)


def check_rule(name: str, spec: dict) -> None:
    allowed = set(Rule.__dataclass_fields__) - {"name"}
    unknown = set(spec) - allowed
    if unknown:
        raise ValueError(f"rule {name}: unknown keys {sorted(unknown)}")
    if "category" in spec and spec["category"] not in CATEGORIES:
        raise ValueError(f"rule {name}: category must be one of {CATEGORIES}")
    if "severity" in spec and spec["severity"] not in SEVERITIES:
        raise ValueError(f"rule {name}: severity must be one of {SEVERITIES}")
    if "metric" in spec and spec["metric"] not in METRICS and spec["metric"] not in SPEND_METRICS:
        raise ValueError(f"rule {name}: unknown metric {spec['metric']!r}")


SPEND_METRICS: Final = ("spend_today", "spend_today_ratio")
