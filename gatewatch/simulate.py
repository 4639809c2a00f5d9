"""``gatewatch simulate``: realistic gateway traffic with labelled incidents, in the real formats.

Writes ``litellm.ndjson.gz`` (StandardLoggingPayload by endTime), ``fly.ndjson.gz`` (Fly NATS
envelopes by timestamp), ``langfuse.ndjson.gz`` (observations by createdAt) and ``labels.json``.
The same arguments and seed give byte-identical files.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from gatewatch.sim.benign import rolling_deploy
from gatewatch.sim.finalize import finalize
from gatewatch.sim.incidents import INCIDENTS
from gatewatch.sim.output import write_all
from gatewatch.sim.render_fly import fly_events, render_fly
from gatewatch.sim.render_langfuse import render_langfuse
from gatewatch.sim.render_litellm import render_litellm
from gatewatch.sim.rows import US
from gatewatch.sim.scenarios import SCENARIOS, deploys, plan, select
from gatewatch.sim.state import Sim
from gatewatch.sim.traffic import baseline
from gatewatch.sim.world import build_world

__all__ = ["SCENARIOS", "INCIDENTS", "Result", "simulate"]


@dataclass(frozen=True, slots=True)
class Result:
    labels: dict
    seconds: float

    @property
    def lines(self) -> int:
        return sum(self.labels["records"].values())


def _iso(us: int) -> str:
    return datetime.fromtimestamp(us // 1000 / 1000, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _epoch_s(text: str) -> int:
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(timezone.utc).timestamp())


def build(scenario: str = "default", start: str | None = None, hours: float | None = None, seed: int = 0,
          rps: float | None = None, incidents: str | list[str] | None = "all") -> tuple[Sim, list[dict]]:
    """Generates the run in memory: the finalised simulation and its incident labels."""
    sc = SCENARIOS[scenario]
    hours, rps = hours or sc.hours, rps or sc.rps
    start_s = _epoch_s(start or sc.start)
    rng = np.random.default_rng(seed)
    world = build_world(rng, sc.new_team_at)
    seconds = int(hours * 3600)
    sim = Sim(world, rng, start_s * US, (start_s + seconds) * US, baseline(world, rng, start_s, seconds, rps))
    labels = []
    for i, p in enumerate(sorted(plan(sc, hours, select(incidents), rng), key=lambda p: p.at_min), 1):
        fn, category, _ = INCIDENTS[p.name]
        s = sim.start_us + int(p.at_min * 60 * US)
        e = min(s + int(p.minutes * 60 * US), sim.end_us)
        labels.append({"id": f"inc{i}", "category": category, "start": _iso(s), "end": _iso(e),
                       "labels": fn(sim, s, e, **p.params), "type": p.name})
    for minute in deploys(sc, hours):
        rolling_deploy(sim, sim.start_us + int(minute * 60 * US))
    finalize(sim)
    return sim, labels


def _benign(sim: Sim, scenario: str, hours: float | None) -> list[dict]:
    sc = SCENARIOS[scenario]
    out = [{"type": "rolling_deploy", "start": _iso(sim.start_us + int(m * 60 * US))}
           for m in deploys(sc, hours or sc.hours)]
    for t in sim.world.teams:
        if t.appears_at > 0:
            out.append({"type": "new_team", "team": t.alias,
                        "start": _iso(sim.start_us + int(t.appears_at * (sim.end_us - sim.start_us)))})
    return out


def simulate(out_dir: str | Path, scenario: str = "default", start: str | None = None, hours: float | None = None,
             seed: int = 0, rps: float | None = None, incidents: str | list[str] | None = "all",
             workers: int | None = None, compresslevel: int = 3) -> Result:
    """Generates a run and writes its four files into ``out_dir``."""
    began = time.perf_counter()
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}; known: {', '.join(SCENARIOS)}")
    select(incidents)  # fail before writing anything
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sim, incident_labels = build(scenario, start, hours, seed, rps, incidents)
    events = fly_events(sim)
    world, rows = sim.world, sim.rows
    counts = write_all({
        "litellm": (out / "litellm.ndjson.gz", lambda: render_litellm(world, rows)),
        "fly": (out / "fly.ndjson.gz", lambda: render_fly(sim, events)),
        "langfuse": (out / "langfuse.ndjson.gz", lambda: render_langfuse(world, rows)),
    }, compresslevel, workers)
    labels = {"start": _iso(sim.start_us), "end": _iso(sim.end_us),
              "budgets_usd_per_day": {t.alias: t.budget for t in world.teams},
              "incidents": incident_labels, "benign": _benign(sim, scenario, hours), "scenario": scenario,
              "seed": seed, "records": counts}
    (out / "labels.json").write_text(json.dumps(labels, indent=1) + "\n")
    return Result(labels, time.perf_counter() - began)
