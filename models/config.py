"""The YAML configuration of CONTRACT §4, as plain data.

Every key is optional; the defaults reproduce the runbook thresholds::

    budgets:
      teams: {prod_customer: 97.29, support: 35.33}
    rules:
      GatewayHigh5xxRate: {threshold: 0.02, for: 10}
      CacheHitRateLow: {enabled: false}
    lateness_seconds: 30
    incidents: {group_interval: 300, repeat_interval: 14400, resolve_wait: 300, reopen_grace: 1200, join_window: 3600}
    anomaly: {enabled: true}

Loading YAML text is the caller's business (``gatewatch.config``); this module takes a dict.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, field

from models.cardinality import DEFAULT_CAP, DEFAULT_IDLE_MINUTES
from models.incidents import Timing
from models.rules import DEFAULT_RULES, Rule, check_rule, rules_from_config

_KNOWN = {"budgets", "rules", "lateness_seconds", "incidents", "anomaly", "silences", "routes",
          "inhibit", "slack", "webhooks", "retry", "cardinality"}


@dataclass(frozen=True)
class Config:
    rules: tuple[Rule, ...] = DEFAULT_RULES
    budgets: dict[str, float] = field(default_factory=dict)  # team -> USD per day
    lateness: float = 30.0  # seconds an event may arrive after the newest one and still count
    timing: Timing = field(default_factory=Timing)
    anomaly: dict = field(default_factory=dict)
    cardinality: tuple[int, int] = (DEFAULT_CAP, DEFAULT_IDLE_MINUTES)  # series per dimension, idle minutes
    raw: dict = field(default_factory=dict)  # the whole document, for sinks and silences

    @classmethod
    def from_dict(cls, doc: dict | None) -> Config:
        doc = doc or {}
        check(doc)
        teams = (doc.get("budgets") or {}).get("teams") or {}
        budgets = {str(k): float(v) for k, v in teams.items()}
        timing = Timing(**{k: float(v) for k, v in (doc.get("incidents") or {}).items()})
        return cls(
            rules=rules_from_config(doc.get("rules")),
            budgets=budgets,
            lateness=float(doc.get("lateness_seconds", 30.0)),
            timing=timing,
            anomaly=dict(doc.get("anomaly") or {}),
            cardinality=_cardinality(doc.get("cardinality") or {}),
            raw=doc,
        )


def _cardinality(section: dict) -> tuple[int, int]:
    cap = int(section.get("max_series_per_dimension", DEFAULT_CAP))
    idle = int(float(section.get("idle_hours", DEFAULT_IDLE_MINUTES / 60)) * 60)
    return cap, idle


class ConfigIssue(ValueError):
    """One thing wrong in the configuration, and where: ``path`` is the keys down to it."""

    def __init__(self, path: tuple, message: str) -> None:
        super().__init__(f"{'.'.join(map(str, path)) or '(document)'}: {message}")
        self.path, self.message = path, message


_RULE_FIELDS = {f for f in Rule.__dataclass_fields__ if f != "name"} | {"for"}
_RULE_COUNTS = ("window", "for", "for_", "min_volume", "min_count", "baseline", "min_baseline", "min_age",
                "clear_for", "no_data_for")  # non-negative numbers of minutes or events
_RULE_REQUIRED = ("category", "severity", "scopes", "metric", "op", "threshold")  # for a rule of one's own
_TIMING = set(Timing.__dataclass_fields__)
_ANOMALY = {"enabled", "budget_forecast", "explain_rules", "fire_score", "warmup", "min_step", "hot", "confirm",
            "clear", "clear_for", "no_data_for", "expire_hours", "seed"}  # AnomalyModels' arguments
_CARDINALITY = {"max_series_per_dimension", "idle_hours"}


def check(doc: object) -> None:
    """Validate the whole document before anything starts; raises ``ConfigIssue`` at the first problem."""
    if not isinstance(doc, dict):
        raise ConfigIssue((), f"the configuration must be a mapping, not a {type(doc).__name__}")
    _known((), doc, _KNOWN)
    teams = _section(("budgets",), doc.get("budgets"))
    _known(("budgets",), teams, {"teams"})
    for team, usd in _section(("budgets", "teams"), teams.get("teams")).items():
        _number(("budgets", "teams", team), usd, low=0)
    if "lateness_seconds" in doc:
        _number(("lateness_seconds",), doc["lateness_seconds"], low=0)
    for key, value in _known(("incidents",), _section(("incidents",), doc.get("incidents")), _TIMING).items():
        _number(("incidents", key), value, low=0)
    anomaly = _known(("anomaly",), _section(("anomaly",), doc.get("anomaly")), _ANOMALY)
    for key, value in anomaly.items():
        if key in ("enabled", "budget_forecast", "explain_rules"):
            _boolean(("anomaly", key), value)
        else:
            _number(("anomaly", key), value, low=0)
    for key, value in _known(("cardinality",), _section(("cardinality",), doc.get("cardinality")), _CARDINALITY).items():
        _number(("cardinality", key), value, low=1)
    for name, spec in _section(("rules",), doc.get("rules")).items():
        _rule(("rules", name), name, spec)


def _rule(path: tuple, name: str, spec: object) -> None:
    spec = _section(path, spec)
    _known(path, spec, _RULE_FIELDS)
    if name not in {r.name for r in DEFAULT_RULES}:
        missing = [k for k in _RULE_REQUIRED if k not in spec]
        if missing:
            raise ConfigIssue(path, f"unknown rule; a new rule needs {', '.join(missing)} (known rules: see README)")
    if "threshold" in spec:
        _number(path + ("threshold",), spec["threshold"], low=0)
    for key in _RULE_COUNTS:
        if key in spec:
            _number(path + (key,), spec[key], low=0)
    if "clear" in spec:
        _number(path + ("clear",), spec["clear"], low=0)
    if "enabled" in spec:
        _boolean(path + ("enabled",), spec["enabled"])
    if "op" in spec and spec["op"] not in (">", "<"):
        raise ConfigIssue(path + ("op",), f"must be '>' or '<', not {spec['op']!r}")
    try:
        check_rule(name, {("for_" if k == "for" else k): v for k, v in spec.items()})
    except ValueError as e:
        field = next((k for k in ("category", "severity", "metric") if k in str(e)), None)
        raise ConfigIssue(path + ((field,) if field else ()), str(e).split(": ", 1)[-1]) from None


def _section(path: tuple, value: object) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigIssue(path, f"must be a mapping, not a {_kind(value)}")
    return value


def _known(path: tuple, section: dict, known: set[str]) -> dict:
    for key in section:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, 1)
            hint = f"did you mean {close[0]!r}?" if close else f"known: {', '.join(sorted(known))}"
            raise ConfigIssue(path + (key,), f"unknown field ({hint})")
    return section


def _number(path: tuple, value: object, low: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise ConfigIssue(path, f"must be a number, not {value!r}")
    if value < low:
        raise ConfigIssue(path, f"must be at least {low:g}, not {value!r}")


def _boolean(path: tuple, value: object) -> None:
    if not isinstance(value, bool):
        raise ConfigIssue(path, f"must be true or false, not {value!r}")


def _kind(value: object) -> str:
    return {str: "string", int: "number", float: "number", bool: "boolean", list: "list"}.get(type(value), "value")
