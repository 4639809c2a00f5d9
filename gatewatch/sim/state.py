"""The mutable state of one simulation: rows, extra Fly lines, downtimes, stalls."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone

import numpy as np

from gatewatch.sim.rows import US, Rows
from gatewatch.sim.world import Machine, World


@dataclass(frozen=True, slots=True)
class FlyLine:
    """A Fly log line that is not about one request (runner, proxy, health, worker)."""

    ts_ns: int
    machine: Machine
    provider: str  # "app", "runner" or "proxy"
    level: str  # the envelope's log.level
    message: str


@dataclass(frozen=True, slots=True)
class Downtime:
    machine: int
    start_us: int
    end_us: int
    reroute: float  # share of the requests the Fly proxy sends to another machine
    killed: bool  # in-flight requests die (OOM) rather than drain (SIGINT)


@dataclass(slots=True)
class Sim:
    world: World
    rng: np.random.Generator
    start_us: int
    end_us: int
    rows: Rows
    fly: list[FlyLine] = field(default_factory=list)
    downtimes: list[Downtime] = field(default_factory=list)
    stalls: list[tuple[int, int]] = field(default_factory=list)
    budget_crossings: list[tuple[int, int]] = field(default_factory=list)  # (team, when 80% is crossed)

    def team_index(self, alias: str) -> int:
        return next(i for i, t in enumerate(self.world.teams) if t.alias == alias)

    def add_line(self, ts_us: float, machine: Machine, provider: str, message: str, level: str = "info") -> None:
        self.fly.append(FlyLine(int(ts_us) * 1000 + int(self.rng.integers(0, 1000)), machine, provider, level,
                                message))

    def add_app_log(self, ts_us: float, machine: Machine, message: str, level: str = "INFO",
                    component: str = "LiteLLM Proxy", logger: str = "proxy_server.py:412") -> None:
        """A LiteLLM JSON log line (``json_logs: true``) on the machine's stdout/stderr."""
        stamp = datetime.fromtimestamp(int(ts_us) / US, timezone.utc).replace(tzinfo=None).isoformat()
        body = {"message": message, "level": level, "timestamp": stamp, "component": component, "logger": logger}
        self.add_line(ts_us + 800, machine, "app", json.dumps(body))


def down_at(sim: Sim, machine: int, t_us: np.ndarray) -> np.ndarray:
    """Whether ``machine`` is down at each time."""
    out = np.zeros(len(t_us), dtype=bool)
    for d in sim.downtimes:
        if d.machine == machine:
            out |= (t_us >= d.start_us) & (t_us < d.end_us)
    return out
