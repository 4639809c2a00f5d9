"""One-sentence explanations: expected against actual, the dimensions that drive it, dollars.

"cost/h $58.20 vs $17.10 expected (+$41.10/h); of it: 83% team analytics on claude-sonnet".
Drivers come from the additive counters of the child series (the gateway's providers,
teams, models and team × model pairs; a provider's models and pairs; a team's keys and
pairs; a model's pairs): each child's excess over what its own last hour predicts, as a
share of the total excess.
Non-additive signals (latencies) name the child whose value moved most instead.

A cache collapse is also priced: lost hits per hour times the cost of a call that
missed (``Bucket.saved_cost`` per hit when the parser fills it, else the window's cost
per non-cached call).

Rule alerts get the same sentence (``refresh_rule_explanations``, called by the
anomaly models after the rules ran for the minute, or by ``RuleExplainer`` when the
models are off); a budget alert gets its forecast.
"""

from __future__ import annotations

import re
from typing import Callable

from models.signals import BASELINE, BY_NAME, FOR_CATEGORY, WINDOW, Signal
from models.windows import Bucket

_CHILDREN = {"gateway": ("provider", "team", "model", "team_model"), "provider": ("model", "team_model"),
             "team": ("key", "team_model"), "model": ("team_model",)}
_SCALE = BASELINE / WINDOW  # baseline counts per window


def _rate(num: float, den: float) -> float:
    return num / den if den > 0 else 0.0


# Excess of a window over its own baseline, in an additive unit (calls, hits, $/h, calls/min).
_EXCESS: dict[str, tuple[Callable[[Bucket, Bucket], float], str]] = {
    "error_rate": (lambda w, b: w.errors - _rate(b.errors, b.requests) * w.requests, "failed calls in 5 min"),
    "rate_limit_share": (lambda w, b: w.e429 - _rate(b.e429, b.requests) * w.requests,
                         "rate-limited calls in 5 min"),
    "cache_hit_rate": (lambda w, b: _rate(b.cache_hits, b.cacheable) * w.cacheable - w.cache_hits,
                       "lost cache hits in 5 min"),
    "cost_per_hour": (lambda w, b: w.cost * 60 / WINDOW - b.cost * 60 / BASELINE, "$/h"),
    "requests_per_minute": (lambda w, b: w.requests / WINDOW - b.requests / BASELINE, "calls/min"),
}


# rule metrics whose reading (``Alert.value``) is in the unit of the signal that explains them
_RULE_METRICS = {
    "error_rate": ("error_rate", "5xx_rate"), "cache_hit_rate": ("cache_hit_rate", "cache_hit_ratio"),
    "cost_per_hour": ("cost_ratio",), "latency_p95": ("latency_p95", "latency_p95_ratio"),
    "latency_p50": ("latency_p50_ratio",),
}


def _sums(engine, key) -> tuple[Bucket, Bucket] | None:
    w = engine.series.get(key)
    if w is None:
        return None
    win, base = w.sums.get((WINDOW, 0)), w.sums.get((BASELINE, WINDOW))
    return None if win is None or base is None else (win, base)


def _children(engine, key) -> dict[str, list[tuple[str, str]]]:
    out: dict[str, list[tuple[str, str]]] = {}
    for dim in _CHILDREN.get(key[0], ()):
        # sorted: a tie between two children is broken the same way whatever order the series
        # arrived in (replay: by event time; the worker: by raw batch)
        out[dim] = sorted(k for k in engine.series if k[0] == dim and _within(engine, k, key))
    return out


def _within(engine, child: tuple[str, str], parent: tuple[str, str]) -> bool:
    """Is ``child`` part of ``parent`` (a team × model pair of its team, its model, its provider)?"""
    if parent[0] == "gateway":
        return True
    if child[0] != "team_model":
        return engine.incidents.implied.get(child, {}).get(parent[0]) == parent[1]
    team, model = team_model(child[1])
    if parent[0] == "provider":
        return engine.incidents.implied.get(("model", model), {}).get("provider") == parent[1]
    return {"team": team, "model": model}.get(parent[0]) == parent[1]


def team_model(value: str) -> tuple[str, str]:
    """The team and model of a ``team_model`` series (``team/model``; a model name may hold a /)."""
    team, _, model = value.partition("/")
    return team, model


def drivers(engine, key, sig: Signal) -> list[str]:
    """"83% of it team analytics on claude-sonnet": per child dimension, the child with most
    of the excess; a team × model pair with most of it replaces its own team and model."""
    found: dict[str, tuple[str, str]] = {}  # dim -> (child value, text)
    for dim, kids in _children(engine, key).items():
        if sig.name in _EXCESS:
            part = _top_share(engine, kids, _EXCESS[sig.name][0])
            if part is not None and part[1] >= 0.5:
                found[dim] = (part[0][1], f"{part[1]:.0%} {_name(*part[0])}")
        elif sig.name.startswith("latency"):
            moved = _top_mover(engine, kids, sig)
            if moved:
                found[dim] = moved
    pair = found.get("team_model")
    if pair is not None:
        team, model = team_model(pair[0])
        found = {d: v for d, v in found.items() if (d, v[0]) not in (("team", team), ("model", model))}
    return [text for _, text in found.values()]


def _name(dim: str, value: str) -> str:
    if dim == "team_model":
        return "team {} on {}".format(*team_model(value))
    return f"{dim} {value}"


def _top_share(engine, kids, excess) -> tuple[tuple[str, str], float] | None:
    parts = {}
    for k in kids:
        s = _sums(engine, k)
        if s is not None:
            parts[k] = excess(*s)
    total = sum(v for v in parts.values() if v > 0)
    if total <= 0:
        return None
    top = max(parts, key=parts.__getitem__)
    return top, parts[top] / total


def _top_mover(engine, kids, sig: Signal) -> tuple[str, str] | None:
    best, found = 1.0, None
    for k in kids:
        s = _sums(engine, k)
        if s is None:
            continue
        now, before = sig.read(s[0], WINDOW), sig.read(s[1], BASELINE)
        if now is not None and before and now / before > best:
            best, found = now / before, (k[1], f"{_name(*k)} {sig.fmt(now)} ({now / before:.1f}x)")
    return found


def cache_dollars(win: Bucket, base: Bucket) -> float:
    """Extra $/h of the hits lost against the baseline hit rate."""
    lost_per_hour = max(0.0, _EXCESS["cache_hit_rate"][0](win, base)) * 60 / WINDOW
    if base.saved_cost > 0 and base.cache_hits:
        per_hit = base.saved_cost / base.cache_hits
    else:
        per_hit = _rate(win.cost, win.requests - win.cache_hits)
    return lost_per_hour * per_hit


def explain_anomaly(engine, key, sig: Signal, value: float | None, base: float | None) -> str:
    parts = [f"{sig.label} {sig.fmt(value)} vs {sig.fmt(base)} expected"]
    s = _sums(engine, key)
    excess = _EXCESS[sig.name][0](s[0], s[1]) if s is not None and sig.name in _EXCESS else 0.0
    if excess > 0:
        unit = _EXCESS[sig.name][1]
        parts[0] += f" (+${excess:,.2f}/h)" if unit == "$/h" else f" (+{excess:,.0f} {unit})"
        if sig.name == "cache_hit_rate" and s is not None:  # (it is: excess > 0)
            parts[0] += f", about +${cache_dollars(s[0], s[1]):,.2f}/h in calls the cache would have served"
    who = drivers(engine, key, sig) if excess > 0 or sig.name not in _EXCESS else []
    if who:
        parts.append(("of it: " if sig.name in _EXCESS else "most moved: ") + ", ".join(who))
    return "; ".join(parts)


def explain_rule(engine, alert, now: float) -> str:
    dim, _, value = alert.id.partition("|")[2].partition("=")
    if alert.name == "TeamBudgetBurn":
        from models.budget import forecast_text

        return forecast_text(engine, value, now)
    rule = next((r for r in engine.config.rules if r.name == alert.name), None)
    name = FOR_CATEGORY.get(alert.category, "")
    if rule is not None and "p50" in rule.metric:
        name = "latency_p50"
    sig = BY_NAME.get(name)
    s = _sums(engine, (dim, value))
    if sig is None or s is None or dim not in sig.dims:
        return ""
    # the rule's own reading where it is in the signal's unit (a 429 rule counts calls, a
    # traffic rule counts req/s or tokens: those read the signal from the sums instead)
    same_unit = rule is not None and rule.metric in _RULE_METRICS.get(sig.name, ())
    actual = alert.value if same_unit else sig.value(s[0], WINDOW)
    expected = alert.baseline if same_unit and alert.baseline is not None else sig.value(s[1], BASELINE)
    return explain_anomaly(engine, (dim, value), sig, actual, expected)


def refresh_rule_explanations(engine, minute: int) -> None:
    """Explain every firing rule alert (the engine's ``update`` keeps a non-empty explanation)."""
    now = (minute + 1) * 60
    for inc in engine.incidents.open:
        for a in inc.firing():
            if a.detector == "rule":
                a.explanation = explain_rule(engine, a, now) or a.explanation


_NAMED = re.compile(r"(?:of it|most moved): (.*)$")


def contributors(alerts: list[dict]) -> list[tuple[str, list[str]]]:
    """The dimensions the alerts' explanations name ("98% team analytics"), each with the
    alerts (notification dicts) that name it; strongest share first."""
    named: dict[str, list[str]] = {}
    for a in alerts:
        for part in (a.get("explanation") or "").split("; "):
            found = _NAMED.search(part)
            for who in found.group(1).split(", ") if found else ():
                who = who.strip()
                if who and a["name"] not in named.setdefault(who, []):
                    named[who].append(a["name"])
    return sorted(named.items(), key=lambda kv: (-_share(kv[0]), -len(kv[1]), kv[0]))


def _share(text: str) -> float:
    found = re.match(r"(\d+)%", text)
    return float(found.group(1)) if found else 0.0


def alert_evidence(notifications: list[dict]) -> list[dict]:
    """Each alert of an incident's notifications at its last *firing* reading (a resolved
    message carries the calm values), with when it ended if it did."""
    best: dict[tuple, dict] = {}
    for n in notifications:
        for a in n.get("alerts") or ():
            k = (a.get("name"), tuple(sorted((a.get("labels") or {}).items())))
            if a.get("status", "firing") == "firing" or k not in best:
                best[k] = dict(a)
            else:
                best[k].update(status=a["status"], ended_at=a.get("ended_at"))
    return list(best.values())


class RuleExplainer:
    """The engine's extra detector that explains rule alerts when the anomaly models are off."""

    def on_minute(self, engine, minute: int) -> None:
        refresh_rule_explanations(engine, minute)


def attach_rule_explanations(engine) -> RuleExplainer:
    """Keep the window and baseline sums explanations read, and explain rule alerts each minute."""
    from models.anomaly import register_windows  # anomaly imports this module

    register_windows(engine)
    explainer = RuleExplainer()
    engine.extra_detectors.append(explainer)
    return explainer
