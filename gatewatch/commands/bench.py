"""``gatewatch bench``: measure throughput, scaling, memory and detection latency; print a table.

``gatewatch bench worker`` runs ``benchmarks/bench_worker.py`` (one and two ``gatewatch worker``
processes through Tansu against raw aiokafka consume + orjson in the same run; see its docstring).

``gatewatch bench replay`` runs ``benchmarks/bench_replay.py`` (see its docstring for how each
figure is measured): replay throughput as a ratio to gunzip + orjson parsing of the same lines in
the same run, time and memory from 1x to 16x the input, memory per active series, and detection
latency per category.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path

HELP = "measure throughput, latency and memory; print a table"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("what", choices=["replay", "worker"],
                   help="replay: the replay path (issues 3 and 7); worker: the Kafka worker (issue 7)")
    p.add_argument("--scenario-dir", metavar="DIR",
                   help="a scenario directory, or a directory of them (e.g. /work/shared/scenarios)")
    p.add_argument("--stream-dir", metavar="DIR", help="an already simulated stream (gatewatch simulate OUT)")
    p.add_argument("--generate", metavar="SCENARIO", choices=["bench", "demo", "default", "quiet"],
                   help="simulate this scenario first (bench: 48 h, ~2.5M lines) and measure it")
    p.add_argument("--rounds", type=int, default=None,
                   help="interleaved rounds: parse-only/replay per input (default 3); worker: raw/1/2 workers (default 2)")
    p.add_argument("--hours", type=float, default=6.0, help="worker: hours of simulated traffic (default 6)")
    p.add_argument("--rps", type=float, default=4.0, help="worker: simulated requests per second (default 4)")
    p.add_argument("--jobs", type=int, default=1, metavar="N",
                   help="replay: also measure `replay --jobs N` (wall clock; N reader processes)")
    p.add_argument("--with-models", action="store_true", help="replay with the anomaly models (default: rules only)")
    p.add_argument("--no-scaling", action="store_true", help="skip the 1x/4x/16x scaling runs")
    p.add_argument("--no-series", action="store_true", help="skip the 1k/10k/100k series memory runs")
    p.add_argument("--work-dir", metavar="DIR", help="keep generated streams and notifications here")
    p.add_argument("--json", action="store_true", help="print machine-readable results")
    p.add_argument("--markdown-out", metavar="FILE", help="also write the markdown table to FILE")


def _library(name: str = "bench_replay"):
    root = Path(__file__).resolve().parents[2] / "benchmarks"
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    return importlib.import_module(name)


def run(args: argparse.Namespace) -> int:
    if args.what == "worker":
        import asyncio

        lib = _library("bench_worker")
        asyncio.run(lib.main(argparse.Namespace(hours=args.hours, rps=args.rps, rounds=args.rounds or 2,
                                                incidents=lib.INCIDENTS)))
        return 0
    if not (args.scenario_dir or args.stream_dir or args.generate):
        print("gatewatch bench replay: give --scenario-dir, --stream-dir or --generate", file=sys.stderr)
        return 2
    for d in (args.scenario_dir, args.stream_dir):
        if d and not Path(d).is_dir():
            print(f"gatewatch bench replay: {d}: no such directory", file=sys.stderr)
            return 2
    lib = _library()
    res = lib.run_all(args.scenario_dir, args.stream_dir, args.generate, rounds=max(1, args.rounds or 3),
                      with_models=args.with_models, scale=not args.no_scaling, series=not args.no_series,
                      work_dir=args.work_dir, jobs=max(1, args.jobs))
    table = lib.markdown(res)
    if args.markdown_out:
        Path(args.markdown_out).write_text(table + "\n")
    print(json.dumps(res, indent=1) if args.json else table)
    return 0
