"""Derived columns, computed once every incident has edited the rows.

Order matters: downtimes drop or move requests, then cache hits get their latency,
then costs, the Langfuse arrival delays, the running team spend and the budgets.
"""

from __future__ import annotations

import numpy as np

from gatewatch.sim.rows import US, cost_of
from gatewatch.sim.state import Sim, down_at

DAY_US = 86400 * US


def finalize(sim: Sim) -> None:
    apply_downtimes(sim)
    cache_latency(sim)
    costs(sim)
    langfuse_delays(sim)
    team_spend(sim)
    budgets(sim)


def apply_downtimes(sim: Sim) -> None:
    c, rng, n = sim.rows.cols, sim.rng, len(sim.rows)
    for d in sim.downtimes:
        on = (c["mach"] == d.machine) & ~c["dropped"]
        arriving = on & (c["t0"] >= d.start_us) & (c["t0"] < d.end_us)
        other = (d.machine + 1) % len(sim.world.gateway)
        movable = arriving & (rng.random(n) < d.reroute)
        movable[movable] &= ~down_at(sim, other, c["t0"][movable])
        c["mach"][movable] = other
        lost = arriving & ~movable
        if d.killed:
            lost |= on & (c["t0"] < d.start_us) & (c["t0"] + c["dur"] > d.start_us)
        c["dropped"][lost] = True
        c["client"][lost] = 502


def cache_latency(sim: Sim) -> None:
    c = sim.rows.cols
    hit = c["cache"] == 1
    dur = (0.018 * np.exp(sim.rng.normal(0, 0.4, int(hit.sum()))) * US).astype(np.int64)
    c["dur"][hit] = dur
    c["ttft"][hit] = dur // 2
    c["stream"][hit] = False


def costs(sim: Sim) -> None:
    c = sim.rows.cols
    full = np.round(cost_of(sim.world, sim.rows), 8)
    paid = (c["err"] == 0) & (c["cache"] != 1)
    c["cost"][:] = np.where(paid, full, 0.0)
    c["saved"][:] = np.where(c["cache"] == 1, full, 0.0)
    c["ptok"][c["err"] > 0] = 0
    c["ctok"][c["err"] > 0] = 0


def langfuse_delays(sim: Sim) -> None:
    """Langfuse stores a trace 1.5–6 s after the call ends; a stall holds everything back."""
    c, rng, n = sim.rows.cols, sim.rng, len(sim.rows)
    end = c["t0"] + c["dur"]
    delay = rng.uniform(1.5, 6.0, n) * US
    for start, stop in sim.stalls:
        held = (end + delay >= start) & (end < stop)
        drain = rng.uniform(5, 300, int(held.sum())) * US
        delay[held] = stop - end[held] + drain
    c["lf_delay"][:] = delay.astype(np.int64)


def team_spend(sim: Sim) -> None:
    """``user_api_key_team_spend``: the team's spend so far today (UTC), in callback order."""
    c = sim.rows.cols
    end = c["t0"] + c["dur"]
    order = np.argsort(end, kind="stable")
    for team in range(len(sim.world.teams)):
        idx = order[(c["team"][order] == team) & ~c["dropped"][order]]
        if len(idx) == 0:
            continue
        cost, day = c["cost"][idx], end[idx] // DAY_US
        total = np.cumsum(cost)
        first = np.r_[True, day[1:] != day[:-1]]
        before = (total - cost)[first]
        c["spend"][idx] = np.round(total - before[np.cumsum(first) - 1], 6)


def budgets(sim: Sim) -> None:
    """Daily budgets: generous for every team, except one set to be crossed when an incident says."""
    c = sim.rows.cols
    crossings = dict(sim.budget_crossings)
    for i, team in enumerate(sim.world.teams):
        mine = (c["team"] == i) & ~c["dropped"]
        if i in crossings:
            end, day_start = c["t0"] + c["dur"], crossings[i] // DAY_US * DAY_US
            at = mine & (end <= crossings[i]) & (end >= day_start)
            spent = c["spend"][at].max(initial=0.0)
            team.budget = round(float(max(spent / 0.8, 1.0)), 2)
        else:
            hours = (sim.end_us - sim.start_us) / (3600 * US)
            daily = max(c["spend"][mine].max(initial=0.0), c["cost"][mine].sum() * 24 / max(hours, 1.0))
            team.budget = round(float(max(daily * sim.rng.uniform(1.5, 2.3), 5.0)), 2)
