"""Request arrivals: a diurnal curve, slow growth and noise, split across teams."""

from __future__ import annotations

import numpy as np

from gatewatch.sim.rows import US, Rows, background_errors, sample
from gatewatch.sim.world import World

_HOURS = np.arange(0, 24, 1 / 60)


def diurnal(hour_of_day: np.ndarray) -> np.ndarray:
    """Relative load by UTC hour: a night trough (~0.3) and a busy afternoon, mean 1 over a day."""
    def raw(h):
        return 0.3 + 0.9 * np.exp(-(((h - 15.0 + 12) % 24 - 12) / 4.5) ** 2) \
            + 0.25 * np.exp(-(((h - 9.0 + 12) % 24 - 12) / 2.0) ** 2)
    return raw(hour_of_day) / raw(_HOURS).mean()


def rate_per_second(rng: np.random.Generator, start_s: int, seconds: int, rps: float,
                    growth_per_day: float = 0.03) -> np.ndarray:
    """Expected requests in each second of the run."""
    t = start_s + np.arange(seconds)
    hours = (t % 86400) / 3600.0
    growth = 1.0 + growth_per_day * (t - start_s) / 86400.0
    n_slots = seconds // 300 + 2  # noise: a random walk in 5-minute steps, smoothed
    walk = np.exp(np.convolve(rng.normal(0, 0.06, n_slots), np.ones(3) / 3, mode="same"))
    noise = np.interp(np.arange(seconds) / 300.0, np.arange(n_slots), walk)
    return rps * diurnal(hours) * growth * noise


def arrivals(rng: np.random.Generator, rate: np.ndarray, start_s: int) -> np.ndarray:
    """Poisson arrivals per second, uniform inside the second, sorted (µs)."""
    counts = rng.poisson(rate)
    secs = np.repeat(np.arange(len(rate), dtype=np.int64), counts)
    offsets = rng.integers(0, US, len(secs))
    return np.sort((start_s + secs) * US + offsets)


def teams_for(world: World, rng: np.random.Generator, t0: np.ndarray, start_us: int, end_us: int) -> np.ndarray:
    """Draws a team for each arrival; a team that appears later ramps in over an hour."""
    shares = np.array([t.share for t in world.teams])
    team = np.searchsorted(np.cumsum(shares) / shares.sum(), rng.random(len(t0)), side="right").astype(np.int16)
    for i, t in enumerate(world.teams):
        if t.appears_at <= 0:
            continue
        first = start_us + t.appears_at * (end_us - start_us)
        keep = np.clip((t0 - first) / (3600 * US), 0, 1) >= rng.random(len(t0))
        gone = (team == i) & ~keep
        team[gone] = rng.choice([j for j, o in enumerate(world.teams) if o.appears_at <= 0], int(gone.sum()))
    return team


def baseline(world: World, rng: np.random.Generator, start_s: int, seconds: int, rps: float) -> Rows:
    """A healthy run: every request, with its background errors."""
    t0 = arrivals(rng, rate_per_second(rng, start_s, seconds, rps), start_s)
    rows = sample(world, rng, t0, teams_for(world, rng, t0, start_s * US, (start_s + seconds) * US))
    background_errors(rng, rows)
    return rows


def extra_requests(world: World, rng: np.random.Generator, start_us: int, end_us: int, rps: float,
                   team: int | np.ndarray | None = None, model: int | None = None, cache_rate: float = 0.4) -> Rows:
    """Additional requests at a flat ``rps`` over [start, end) (for surges and agents)."""
    seconds = max(1, (end_us - start_us) // US)
    t0 = arrivals(rng, np.full(seconds, rps), start_us // US)
    t0 = t0[t0 < end_us]
    if team is None:
        shares = np.array([t.share if t.appears_at <= 0 else 0.0 for t in world.teams])
        teams = rng.choice(len(shares), len(t0), p=shares / shares.sum()).astype(np.int16)
    else:
        teams = np.broadcast_to(np.asarray(team, dtype=np.int16), t0.shape).copy()
    models = None if model is None else np.full(len(t0), model, dtype=np.int16)
    return sample(world, rng, t0, teams, models, cache_rate)
