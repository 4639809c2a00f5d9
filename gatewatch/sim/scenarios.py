"""Named scenarios and the placement of incidents over a run."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from gatewatch.sim.incidents import INCIDENTS


@dataclass(frozen=True, slots=True)
class Planned:
    name: str  # a key of INCIDENTS
    at_min: float  # minutes after the start of the run
    minutes: float
    params: dict = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    description: str
    start: str = "2026-09-14T06:00:00Z"
    hours: float = 8.0
    rps: float = 2.0
    schedule: tuple[Planned, ...] | None = None  # None: spread the selected incidents evenly
    deploys_min: tuple[float, ...] | None = None  # None: one deploy during the warm-up
    new_team_at: float | None = 0.45  # fraction of the run when the "growth" team starts


_DEMO = (
    Planned("provider_outage", 9 * 60, 14, {"provider": "openai"}),
    Planned("rate_limit_storm", 11 * 60, 12, {"team": "support"}),
    Planned("cache_collapse", 13 * 60, 45),
    Planned("runaway_agent", 15 * 60, 60, {"team": "analytics"}),
    Planned("latency_degradation", 17 * 60 + 30, 25, {"model": "claude-sonnet"}),
    Planned("crash_loop", 19 * 60 + 30, 9),
    Planned("tracing_stall", 21 * 60 + 30, 30),
)

SCENARIOS = {
    "default": Scenario("default", "8 h (or --hours) with the selected incidents spread evenly, one deploy"),
    "demo": Scenario("demo", "one day: outage, 429 storm, cache collapse, runaway agent, slow model, crash "
                     "loop, tracing stall; a rolling deploy and a new team (benign)",
                     start="2026-09-14T00:00:00Z", hours=24, rps=2.0, schedule=_DEMO, deploys_min=(7 * 60 + 20,),
                     new_team_at=0.5),
    "quiet": Scenario("quiet", "no incidents; a rolling deploy and a new team only", schedule=()),
    "bench": Scenario("bench", "two days at ~4.5 req/s with every incident, for benchmarks",
                      start="2026-09-14T00:00:00Z", hours=48, rps=4.5),
}


def select(names: str | list[str] | None) -> list[str]:
    """``all``, ``none`` or a comma-separated list of incident names, validated."""
    if names is None or names == "all":
        return list(INCIDENTS)
    if names == "none":
        return []
    chosen = names.split(",") if isinstance(names, str) else list(names)
    unknown = [n for n in chosen if n.strip() not in INCIDENTS]
    if unknown:
        raise ValueError(f"unknown incident(s) {', '.join(unknown)}; known: {', '.join(INCIDENTS)}")
    return [n.strip() for n in chosen]


def plan(scenario: Scenario, hours: float, names: list[str], rng: np.random.Generator) -> list[Planned]:
    """The incidents of a run: the scenario's schedule (filtered), or the names spread over the run."""
    if scenario.schedule is not None:
        return [p for p in scenario.schedule if p.name in names and p.at_min < hours * 60]
    span = hours * 60
    warmup = min(120.0, span * 0.25)
    slot = (span - warmup - 10) / max(len(names), 1)
    out = []
    for i, name in enumerate(names):
        minutes = min(INCIDENTS[name][2], max(3.0, slot * 0.45))
        slack = max(slot - minutes - min(12.0, slot * 0.3), 0.0)
        out.append(Planned(name, round(warmup + i * slot + rng.uniform(0, slack), 2), minutes))
    return out


def deploys(scenario: Scenario, hours: float) -> list[float]:
    if scenario.deploys_min is not None:
        return [m for m in scenario.deploys_min if m < hours * 60]
    return [round(min(120.0, hours * 15) * 0.6, 1)]
