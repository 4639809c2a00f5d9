"""Labelled incidents. Each perturbs the simulation over [start, end) and returns its labels.

``INCIDENTS`` maps a name to (function, CONTRACT §3 category, default minutes).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from gatewatch.sim.rows import E_429_TEAM, E_500, E_502, E_503, US, Rows, cost_of, sample, set_errors
from gatewatch.sim.state import Downtime, Sim
from gatewatch.sim.traffic import extra_requests


def _team_rps(sim: Sim, team: int, start: int, end: int) -> float:
    n = np.count_nonzero(sim.rows.window(start, end) & (sim.rows.team == team))
    return max(n / ((end - start) / US), 0.01)


def _add(sim: Sim, extra: Rows, key: int | None = None) -> np.ndarray:
    if key is not None:
        extra.cols["key"][:] = key
    return sim.rows.append(extra)


def _fallbacks(sim: Sim, failed: np.ndarray, share: float) -> None:
    """Router fallbacks: a failed call is retried on the group's fallback model, same trace."""
    world, c = sim.world, sim.rows.cols
    target = np.array([world.model_index.get(m.fallback, -1) if m.fallback else -1 for m in world.models])
    failed = failed[(target[c["model"][failed]] >= 0) & (sim.rng.random(len(failed)) < share)]
    t0 = c["t0"][failed] + c["dur"][failed] + 20_000
    extra = sample(world, sim.rng, t0, c["team"][failed].copy(), target[c["model"][failed]], cache_rate=0.0)
    extra.cols["key"][:], extra.cols["mach"][:] = c["key"][failed], c["mach"][failed]
    new = sim.rows.append(extra)
    c = sim.rows.cols
    c["trace"][new] = c["trace"][failed]
    c["client"][failed] = 0  # the client never saw this failure


def provider_outage(sim: Sim, start: int, end: int, provider: str = "openai") -> dict:
    """5xx storm on one provider's deployments; fallbacks move traffic (and cost) elsewhere."""
    rows = sim.rows
    on = rows.window(start, end) & np.isin(rows.model, sim.world.provider_models(provider))
    fail = on & (rows.cache != 1) & (rows.err == 0) & (sim.rng.random(len(rows)) < 0.65)
    set_errors(rows, fail, sim.rng.choice([E_500, E_502, E_503], len(rows), p=[0.3, 0.3, 0.4]))
    _fallbacks(sim, np.flatnonzero(fail), share=0.6)
    return {"provider": provider}


def rate_limit_storm(sim: Sim, start: int, end: int, team: str = "support") -> dict:
    """One key hits its team's RPM limit; clients retry, so the key's traffic doubles."""
    ti = sim.team_index(team)
    key = 0
    extra = extra_requests(sim.world, sim.rng, start, end, _team_rps(sim, ti, start, end), team=ti)
    _add(sim, extra, key)
    rows = sim.rows
    hit = rows.window(start, end) & (rows.team == ti) & (rows.key == key) & (rows.err == 0)
    hit &= sim.rng.random(len(rows)) < 0.7
    set_errors(rows, hit, E_429_TEAM)
    rows.cols["dur"][hit] = 3_000 + rows.uid[hit].astype(np.int64) % 15_000
    rows.cols["ttft"][hit] = rows.cols["dur"][hit]
    return {"team": team, "key_alias": sim.world.teams[ti].keys[key].alias}


def cache_collapse(sim: Sim, start: int, end: int) -> dict:
    """The Redis response cache stops answering: hit rate falls to ~0."""
    rows = sim.rows
    lost = rows.window(start, end) & (rows.cache == 1) & (sim.rng.random(len(rows)) < 0.97)
    rows.cols["cache"][lost] = 0
    return {}


def _expensive_job(sim: Sim, team: int, start: int, end: int, model: str, target: float, key: int) -> None:
    """Extra cache-missing calls on ``model`` with long prompts until they cost ``target`` USD."""
    world, rps = sim.world, 3.0
    for _ in range(3):
        pool = extra_requests(world, sim.rng, start, end, rps, team=team, model=world.model_index[model],
                              cache_rate=0.0)
        pool.cols["ptok"][:] *= 4
        total = cost_of(world, pool).sum()
        if total >= target:
            break
        rps *= 1.3 * target / max(total, 1e-9)
    keep = np.flatnonzero(sim.rng.random(len(pool)) < target / max(total, 1e-9))
    pool = Rows({k: v[keep] for k, v in pool.cols.items()})
    pool.cols["trace"][:] = (np.arange(len(pool)) // 25) * 25  # one trace per agent loop of 25 calls
    _add(sim, pool, key)


def runaway_agent(sim: Sim, start: int, end: int, team: str = "analytics") -> dict:
    """An agent loops on an expensive model with a growing context: team cost/h × 10–20."""
    ti = sim.team_index(team)
    mine = np.flatnonzero(sim.rows.window(start, end) & (sim.rows.team == ti) & (sim.rows.cache != 1))
    target = cost_of(sim.world, sim.rows, mine).sum() * sim.rng.uniform(10, 20)
    keys = sim.world.teams[ti].keys
    key = next((i for i, k in enumerate(keys) if k.alias.endswith("agent")), len(keys) - 1)
    _expensive_job(sim, ti, start, end, "claude-sonnet", target, key)
    return {"team": team}


def budget_breach(sim: Sim, start: int, end: int, team: str = "support") -> dict:
    """A batch job worth ~5 normal days of spend: the team crosses 80% of its daily budget mid-window.

    The job is big enough that the rest of the day stays under 100%, so only the 80% crossing pages.
    """
    ti = sim.team_index(team)
    mine = np.flatnonzero((sim.rows.team == ti) & (sim.rows.cache != 1))
    days = (sim.end_us - sim.start_us) / (86400 * US)
    per_day = cost_of(sim.world, sim.rows, mine).sum() / max(days, 1 / 24)
    job_end = start + (end - start) // 2
    _expensive_job(sim, ti, start, job_end, "gpt-4o", per_day * 5.0, 0)
    sim.budget_crossings.append((ti, job_end))
    return {"team": team}


def latency_degradation(sim: Sim, start: int, end: int, model: str = "claude-sonnet") -> dict:
    """One model group's latency × 3–5, ramping in over two minutes."""
    rows, mi = sim.rows, sim.world.model_index[model]
    on = rows.window(start, end) & (rows.model == mi) & (rows.cache != 1)
    ramp = np.clip((rows.t0[on] - start) / (120 * US), 0.2, 1.0)
    factor = 1 + (sim.rng.uniform(3, 5) - 1) * ramp
    rows.cols["dur"][on] = (rows.dur[on] * factor).astype(np.int64)
    rows.cols["ttft"][on] = (rows.ttft[on] * factor).astype(np.int64)
    return {"model": model}


def crash_loop(sim: Sim, start: int, end: int) -> dict:
    """Memory leak: both machines are OOM-killed again and again; requests get 502 from the Fly proxy."""
    for m, machine in enumerate(sim.world.gateway):
        t = start + m * 25 * US
        while t < end:
            down = int(sim.rng.uniform(25, 40) * US)
            sim.add_line(t - 300_000, machine, "runner", "Out of memory: Killed process 512 (litellm) "
                         f"total-vm:{int(sim.rng.integers(2_600_000, 3_100_000))}kB")
            sim.add_line(t, machine, "runner", "machine exited with exit code 137, restarting")
            sim.add_line(t + 2 * US, machine, "runner", "Starting machine")
            sim.add_app_log(t + down - 2 * US, machine, "Starting LiteLLM Proxy Server")
            sim.downtimes.append(Downtime(m, t, t + down, reroute=0.3, killed=True))
            t += down + int(sim.rng.uniform(30, 60) * US)
    return {"app": sim.world.gateway[0].app}


_CLICKHOUSE = ["Code: 241. DB::Exception: Memory limit (total) exceeded. (MEMORY_LIMIT_EXCEEDED)",
               "Code: 252. DB::Exception: Too many parts (3004). Merges are processing significantly slower "
               "than inserts. (TOO_MANY_PARTS)",
               "Timeout error: connect ETIMEDOUT 172.19.12.4:8123"]


def tracing_stall(sim: Sim, start: int, end: int) -> dict:
    """Langfuse ingestion stops (ClickHouse rejects inserts); the backlog lands after recovery."""
    sim.stalls.append((start, end))
    worker, t = sim.world.langfuse_worker, start + int(sim.rng.uniform(1, 10) * US)
    while t < end:
        msg = _CLICKHOUSE[int(sim.rng.integers(0, len(_CLICKHOUSE)))]
        sim.add_line(t, worker, "app", f"ClickHouse INSERT error: {msg}", "error")
        t += int(sim.rng.uniform(15, 45) * US)
    return {}


def traffic_surge(sim: Sim, start: int, end: int) -> dict:
    """A launch: every team's traffic × 3 for a while."""
    rps = np.count_nonzero(sim.rows.window(start, end)) / ((end - start) / US)
    _add(sim, extra_requests(sim.world, sim.rng, start, end, rps * 2.0))
    return {}


Incident = Callable[..., dict]
INCIDENTS: dict[str, tuple[Incident, str, int]] = {
    "provider_outage": (provider_outage, "error_rate", 14),
    "rate_limit_storm": (rate_limit_storm, "rate_limit", 12),
    "cache_collapse": (cache_collapse, "cache", 45),
    "runaway_agent": (runaway_agent, "cost", 60),
    "budget_breach": (budget_breach, "budget", 40),
    "latency_degradation": (latency_degradation, "latency", 25),
    "crash_loop": (crash_loop, "availability", 9),
    "tracing_stall": (tracing_stall, "tracing", 30),
    "traffic_surge": (traffic_surge, "traffic", 20),
}
