"""How much faster a ``gatewatch tune`` sweep is than the single replays it contains.

    python benchmarks/bench_tune.py SCENARIO_DIR [--jobs 2] [--sweep NAME=LO:HI:STEP ...]

For every setting of the sweep (default: two rule parameters, 2 x 2 settings) one single
replay runs in this process exactly as ``gatewatch replay`` would (parse, merge, dedup,
detect, write), one after the other; then the sweep runs with ``--jobs`` worker processes.
Printed: the sum of the single replays' wall times, the sweep's wall time and

    ratio = sweep / (sum of single replays / jobs)

which the issue asks to stay under 2. Wall times on a shared machine vary from run to run;
both legs are measured in the same run, one after the other.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DEFAULT_SWEEPS = ("rules.RateLimitStorm.threshold=5:15:10", "rules.GatewayHigh5xxRate.for=3:5:2")


def measure(scenario_dir: str, sweeps=DEFAULT_SWEEPS, jobs: int = 2) -> dict:
    from models.pipeline import build_engine
    from gatewatch.commands.tune import load_labels
    from gatewatch.replay import replay
    from gatewatch.tune import apply_setting, parse_sweep, run_settings, settings
    from models.config import Config

    d = Path(scenario_dir)
    files = sorted(str(p) for p in d.glob("*.ndjson*"))
    labels = load_labels(str(d / "labels.json"))
    grid = settings([parse_sweep(s) for s in sweeps])
    singles = []
    for setting in grid:
        engine = build_engine(Config.from_dict(apply_setting({}, setting)))
        t0 = time.perf_counter()
        replay(files, io.BytesIO(), engine=engine)
        singles.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    results = run_settings(files, {}, grid, labels, jobs=jobs)
    sweep = time.perf_counter() - t0
    return {"input": d.name, "settings": len(grid), "jobs": jobs, "cpus": os.cpu_count(),
            "loadavg": os.getloadavg(), "single_replays_s": round(sum(singles), 2),
            "sweep_s": round(sweep, 2), "ratio": round(sweep / (sum(singles) / jobs), 3),
            "best_recall": max(r.score.recall for r in results)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("scenario_dir")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--sweep", action="append")
    args = p.parse_args()
    print(json.dumps(measure(args.scenario_dir, tuple(args.sweep or DEFAULT_SWEEPS), args.jobs)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
