"""Requests as columns: one numpy array per attribute, one row per LiteLLM call.

Incidents edit these columns over a time window; the renderers turn rows into lines.
Times are integer microseconds since the epoch.
"""

from __future__ import annotations

import numpy as np

from gatewatch.sim.world import World

US = 1_000_000

# Error kinds: index -> (HTTP status, exception class, message template). 0 = success.
ERRORS: list[tuple[int, str, str]] = [
    (200, "", ""),
    (500, "InternalServerError", "{exc} - Internal server error"),
    (502, "APIError", "{exc} - Bad gateway"),
    (503, "ServiceUnavailableError", "{exc} - Service Unavailable. The server is overloaded"),
    (429, "RateLimitError", "{exc} - Rate limit reached for requests"),
    (429, "RateLimitError", "Rate limit exceeded for team. Crossed TPM / RPM / max parallel request limit"),
    (400, "BadRequestError", "{exc} - Invalid request: maximum context length exceeded"),
]
E_500, E_502, E_503, E_429, E_429_TEAM, E_400 = 1, 2, 3, 4, 5, 6
STATUS = np.array([e[0] for e in ERRORS], dtype=np.int16)

_COLUMNS = {
    "t0": np.int64, "dur": np.int64, "ttft": np.int64, "team": np.int16, "key": np.int16, "model": np.int16,
    "stream": np.bool_, "cache": np.int8, "ptok": np.int32, "ctok": np.int32, "err": np.int8,
    "client": np.int16, "mach": np.int8, "dropped": np.bool_, "trace": np.int64, "uid": np.uint64,
    "ip": np.uint32, "lf_delay": np.int64, "cost": np.float64, "saved": np.float64, "spend": np.float64,
}


class Rows:
    """A struct of arrays. ``rows.t0`` is the start-time column, and so on."""

    def __init__(self, cols: dict[str, np.ndarray]):
        self.cols = cols

    def __getattr__(self, name: str) -> np.ndarray:
        try:
            return self.__dict__["cols"][name]
        except KeyError:
            raise AttributeError(name) from None

    def __len__(self) -> int:
        return len(self.cols["t0"])

    @classmethod
    def empty(cls, n: int) -> Rows:
        return cls({name: np.zeros(n, dtype=dt) for name, dt in _COLUMNS.items()})

    def append(self, other: Rows) -> np.ndarray:
        """Adds ``other`` at the end (trace ids re-based); returns the new rows' indices."""
        base = len(self)
        other.cols["trace"] = other.cols["trace"] + base
        self.cols = {k: np.concatenate([v, other.cols[k]]) for k, v in self.cols.items()}
        return np.arange(base, len(self))

    def window(self, start_us: int, end_us: int) -> np.ndarray:
        """Boolean mask of the rows that start inside [start, end)."""
        return (self.t0 >= start_us) & (self.t0 < end_us)


def _lognormal(rng: np.random.Generator, median: np.ndarray, sigma: np.ndarray | float, n: int) -> np.ndarray:
    return median * np.exp(rng.normal(0.0, 1.0, n) * sigma)


def _pick(rng: np.random.Generator, groups: np.ndarray, choices: list[np.ndarray], probs: list[np.ndarray]):
    """For each row, picks one of ``choices[group]`` with ``probs[group]``."""
    out = np.zeros(len(groups), dtype=np.int16)
    u = rng.random(len(groups))
    for g, (values, p) in enumerate(zip(choices, probs)):
        mask = groups == g
        out[mask] = values[np.searchsorted(np.cumsum(p) / np.sum(p), u[mask], side="right").clip(0, len(p) - 1)]
    return out


def sample(world: World, rng: np.random.Generator, t0: np.ndarray, team: np.ndarray,
           model: np.ndarray | None = None, cache_rate: float = 0.4) -> Rows:
    """Fresh successful requests that start at ``t0`` for ``team`` (model drawn from the team's mix)."""
    n = len(t0)
    rows = Rows.empty(n)
    c = rows.cols
    c["t0"][:], c["team"][:] = t0, team
    c["key"][:] = _pick(rng, team, [np.arange(len(t.keys)) for t in world.teams],
                        [np.ones(len(t.keys)) for t in world.teams])
    if model is None:
        model = _pick(rng, team, [np.array([world.model_index[m] for m in t.mix]) for t in world.teams],
                      [np.array(list(t.mix.values())) for t in world.teams])
    c["model"][:] = model
    _sample_usage(world, rng, rows, cache_rate)
    c["client"][:] = 200
    c["mach"][:] = rng.integers(0, len(world.gateway), n)
    c["trace"][:] = np.arange(n)
    c["uid"][:] = rng.integers(0, 2**63, n, dtype=np.int64).astype(np.uint64) * 2 + 1
    c["ip"][:] = rng.integers(0, 2**32, n, dtype=np.uint64).astype(np.uint32)
    return rows


def _model_params(world: World, model: np.ndarray) -> dict[str, np.ndarray]:
    table = {name: np.array([getattr(m, name) for m in world.models], dtype=float)
             for name in ("ttft_s", "sigma", "tokens_per_s", "prompt_median", "completion_median", "stream_share")}
    table["embedding"] = np.array([m.call_type == "aembedding" for m in world.models])
    return {k: v[model] for k, v in table.items()}


def _sample_usage(world: World, rng: np.random.Generator, rows: Rows, cache_rate: float) -> None:
    n, c = len(rows), rows.cols
    p = _model_params(world, c["model"])
    c["ptok"][:] = np.maximum(5, _lognormal(rng, p["prompt_median"], 0.8, n)).astype(np.int32)
    ctok = np.maximum(1, _lognormal(rng, p["completion_median"], 0.5, n))
    c["ctok"][:] = np.where(p["embedding"], 0, ctok).astype(np.int32)
    ttft = _lognormal(rng, p["ttft_s"], p["sigma"], n)
    gen = c["ctok"] / p["tokens_per_s"] * np.exp(rng.normal(0, 0.25, n))
    c["ttft"][:] = (ttft * US).astype(np.int64)
    c["dur"][:] = ((ttft + np.where(p["embedding"], 0.0, gen)) * US).astype(np.int64)
    c["stream"][:] = rng.random(n) < p["stream_share"]
    hit = rng.random(n) < cache_rate
    c["cache"][:] = np.where(p["embedding"], -1, hit.astype(np.int8))


def background_errors(rng: np.random.Generator, rows: Rows, rate_5xx: float = 0.002,
                      rate_429: float = 0.0006, rate_400: float = 0.0004) -> None:
    """The errors of a healthy day: rare 5xx, occasional 429 and 400."""
    u = rng.random(len(rows))
    miss = rows.cache != 1
    kinds = np.select([u < rate_5xx, u < rate_5xx + rate_429, u < rate_5xx + rate_429 + rate_400],
                      [rng.choice([E_500, E_502, E_503], len(rows)), E_429, E_400], 0)
    set_errors(rows, miss & (kinds > 0), kinds)


def set_errors(rows: Rows, mask: np.ndarray, kinds: np.ndarray | int) -> None:
    """Turns the rows in ``mask`` into failures of the given kinds (cache misses, no tokens)."""
    c = rows.cols
    kinds = np.broadcast_to(kinds, mask.shape)
    c["err"][mask] = kinds[mask]
    c["client"][mask] = STATUS[kinds[mask]]
    c["cache"][mask] = np.minimum(c["cache"][mask], 0)
    c["stream"][mask] = False
    fast = mask & np.isin(c["err"], [E_429, E_429_TEAM, E_400])
    c["dur"][fast] = np.minimum(c["dur"][fast], 150_000 + c["uid"][fast].astype(np.int64) % 250_000)
    c["ttft"][mask] = c["dur"][mask]


def cost_of(world: World, rows: Rows, idx: np.ndarray | slice = slice(None)) -> np.ndarray:
    """What each row's tokens cost at its model's prices (before cache and failures)."""
    pin = np.array([m.price_in for m in world.models])
    pout = np.array([m.price_out for m in world.models])
    model = rows.model[idx]
    return rows.ptok[idx] * pin[model] + rows.ctok[idx] * pout[model]
