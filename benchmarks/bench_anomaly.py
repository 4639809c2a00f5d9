"""Cost of the anomaly models: µs per window scored, and memory per series.

A synthetic fleet of N series (the gateway, a few providers, models, teams and keys in
the proportions of a busy LiteLLM deployment) gets one minute bucket per series per
minute; the engine's windows slide as in ``Engine.close_minute`` and
``AnomalyModels.on_minute`` judges every series. We report:

* µs per window scored: the time of ``on_minute`` over the number of (series, signal)
  points that passed their volume gate and went through a detector;
* µs per series per minute: the same time over the series count;
* bytes per series: traced memory of the models' state (detectors and alert state)
  over the series count, after every track exists.

Usage: ``python benchmarks/bench_anomaly.py [--sizes 1000,10000,100000] [--minutes 3]``.
Figures, not pass/fail: they depend on the machine.
"""

from __future__ import annotations

import argparse
import gc
import random
import time
import tracemalloc

from models.anomaly import AnomalyModels, register_windows
from models.config import Config
from models.engine import Engine
from models.windows import latency_bin

START_MINUTE = 29822760  # 2026-09-14T06:00Z


def fleet(n: int) -> list[tuple[str, str]]:
    keys = [("gateway", "")] + [("provider", f"p{i}") for i in range(5)]
    rest = n - len(keys)
    keys += [("model", f"m{i}") for i in range(rest // 10)]
    keys += [("team", f"t{i}") for i in range(rest // 5)]
    keys += [("key", f"k{i}") for i in range(n - len(keys))]
    return keys


def fill(engine: Engine, keys, minute: int, rng: random.Random) -> None:
    for key in keys:
        b, _ = engine._window(*key).bucket_for(minute)
        b.requests = 20 + rng.randint(0, 10)
        b.errors = rng.randint(0, 1)
        b.e429 = rng.randint(0, 1)
        b.cacheable, b.cache_hits = b.requests, b.requests // 3
        b.cost = b.requests * 0.002 * rng.uniform(0.8, 1.2)
        k = latency_bin(rng.lognormvariate(0.0, 0.3))
        b.latency = {k: b.requests}
        b.latency_n = b.requests


def run(n: int, minutes: int) -> dict:
    engine = Engine(Config())
    register_windows(engine)
    models = AnomalyModels(warmup=1)
    keys = fleet(n)
    rng = random.Random(1)
    spent, points, held = 0.0, 0, 0
    for i, m in enumerate(range(START_MINUTE, START_MINUTE + minutes)):
        fill(engine, keys, m, rng)
        for w in engine.series.values():
            w.close(m)
        if i == 0:  # the first minute creates every track: trace what it keeps
            gc.collect()
            tracemalloc.start()
            before = tracemalloc.get_traced_memory()[0]
            models.on_minute(engine, m)
            gc.collect()
            held = tracemalloc.get_traced_memory()[0] - before
            tracemalloc.stop()
            continue
        t0 = time.perf_counter()
        models.on_minute(engine, m)
        spent += time.perf_counter() - t0
        points += sum(1 for t in models.tracks.values() if t.last_seen == m)
    return {"series": n, "tracks": len(models.tracks), "us_per_window": 1e6 * spent / max(1, points),
            "us_per_series_minute": 1e6 * spent / max(1, n * (minutes - 1)),
            "bytes_per_series": held / n, "bytes_per_track": held / max(1, len(models.tracks))}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="1000,10000,100000")
    p.add_argument("--minutes", type=int, default=3)
    args = p.parse_args()
    print(f"{'series':>8} {'tracks':>8} {'us/window':>10} {'us/series/min':>14} {'bytes/series':>13} {'bytes/track':>12}")
    for n in (int(s) for s in args.sizes.split(",")):
        r = run(n, args.minutes)
        print(f"{r['series']:>8,} {r['tracks']:>8,} {r['us_per_window']:>10.1f} "
              f"{r['us_per_series_minute']:>14.1f} {r['bytes_per_series']:>13,.0f} {r['bytes_per_track']:>12,.0f}")


if __name__ == "__main__":
    main()
