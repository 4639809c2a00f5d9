"""The YAML configuration of CONTRACT §4, as plain data.

Every key is optional; the defaults reproduce the runbook thresholds::

    budgets:
      teams: {prod_customer: 97.29, support: 35.33}
    rules:
      GatewayHigh5xxRate: {threshold: 0.02, for: 10}
      CacheHitRateLow: {enabled: false}
    lateness_seconds: 30
    incidents: {group_interval: 300, repeat_interval: 14400, resolve_wait: 300, reopen_grace: 1200}
    anomaly: {enabled: true}

Loading YAML text is the caller's business (``gatewatch.config``); this module takes a dict.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from models.cardinality import DEFAULT_CAP, DEFAULT_IDLE_MINUTES
from models.incidents import Timing
from models.rules import DEFAULT_RULES, Rule, rules_from_config

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
        if not isinstance(doc, dict):
            raise ValueError("the configuration must be a mapping")
        unknown = set(doc) - _KNOWN
        if unknown:
            raise ValueError(f"unknown configuration keys: {sorted(unknown)}")
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
