"""A small synthetic gateway for the anomaly model tests: steady teams, planted incidents.

Deterministic (``random.Random(seed)``), minute by minute, so tests can plant a cost
spike, an error burst or a thin team and know exactly when it starts.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace

from models import events as E
from models.config import Config
from models.engine import Engine

START = 1789365600.0  # 2026-09-14T06:00:00Z


@dataclass(frozen=True)
class Team:
    name: str
    rpm: int
    provider: str
    model: str
    cost: float  # USD per call
    error: float = 0.01


TEAMS = (
    Team("prod_customer", 40, "openai", "gpt-4o-mini", 0.002),
    Team("analytics", 15, "anthropic", "claude-sonnet", 0.01),
    Team("support", 20, "groq", "llama-70b", 0.0005),
)


@dataclass(frozen=True)
class Plant:
    start: int  # minute
    end: int
    team: str = ""
    provider: str = ""
    cost_x: float = 1.0
    fail: bool = False
    latency_x: float = 1.0


def minute_events(m: int, rng: random.Random, teams=TEAMS, plants=()) -> list[E.Event]:
    out = []
    for t in teams:
        n = max(0, t.rpm + rng.randint(-2, 2))
        hit = [p for p in plants if p.start <= m < p.end and (p.team in ("", t.name)) and (p.provider in ("", t.provider))]
        for i in range(n):
            failed = any(p.fail for p in hit) or rng.random() < t.error
            cached = rng.random() < 0.3 and not failed
            cost = 0.0 if cached or failed else t.cost * rng.uniform(0.8, 1.2) * max([p.cost_x for p in hit] or [1.0])
            out.append(E.Event(
                ts=START + m * 60 + (i + rng.random()) * 60 / max(n, 1), kind=E.REQUEST, source="litellm",
                provider=t.provider, model=t.model, team=t.name, key=f"{t.name}-svc0", ok=not failed,
                status=503 if failed else 200, cost=cost,
                latency=rng.lognormvariate(0.0, 0.3) * max([p.latency_x for p in hit] or [1.0]),
                cache_hit=cached, tokens=500,
            ))
    out.sort(key=lambda e: e.ts)
    return out


def engine(rules: bool = False, models: bool = True, config: Config | None = None, **options) -> Engine:
    from models.anomaly import attach_models

    cfg = config or Config()
    eng = Engine(cfg if rules else replace(cfg, rules=()))
    if models:
        attach_models(eng, **options)
    return eng


def run(eng: Engine, minutes: range, seed: int = 0, teams=TEAMS, plants=()) -> list[dict]:
    rng = random.Random(seed * 100_003 + minutes.start)
    notes: list[dict] = []
    for m in minutes:
        for ev in minute_events(m, rng, teams, plants):
            notes.extend(eng.process(ev))
    return notes


def anomaly_alerts(notes: list[dict]) -> list[dict]:
    return [a for n in notes for a in n["alerts"] if a["detector"] == "anomaly"]
