"""``gatewatch simulate OUT_DIR``: write a labelled scenario in the real log formats."""

from __future__ import annotations

import argparse
import sys

HELP = "generate realistic gateway traffic with labelled incidents in the real formats"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from gatewatch.sim.incidents import INCIDENTS
    from gatewatch.sim.scenarios import SCENARIOS

    parser.add_argument("out_dir", metavar="OUT_DIR", help="directory for litellm/fly/langfuse .ndjson.gz + labels.json")
    parser.add_argument("--scenario", default="default", choices=list(SCENARIOS),
                        help="; ".join(f"{s.name}: {s.description}" for s in SCENARIOS.values()))
    parser.add_argument("--start", help="start of the run, ISO-8601 UTC (default: the scenario's)")
    parser.add_argument("--hours", type=float, help="length of the run in hours (default: the scenario's)")
    parser.add_argument("--seed", type=int, default=0, help="random seed; same seed, same bytes (default 0)")
    parser.add_argument("--rps", type=float, help="mean requests per second over a day (default: the scenario's)")
    parser.add_argument("--incidents", default="all",
                        help=f"all, none, or a comma-separated list of: {', '.join(INCIDENTS)}")
    parser.add_argument("--compresslevel", type=int, default=3, help="gzip level (default 3)")
    parser.add_argument("--workers", type=int, help="processes writing the files in parallel (default: CPUs, max 3)")


def run(args: argparse.Namespace) -> int:
    from gatewatch.simulate import simulate

    try:
        result = simulate(args.out_dir, scenario=args.scenario, start=args.start, hours=args.hours, seed=args.seed,
                          rps=args.rps, incidents=args.incidents, workers=args.workers,
                          compresslevel=args.compresslevel)
    except (ValueError, OSError) as e:
        print(f"gatewatch simulate: {e}", file=sys.stderr)
        return 2
    labels = result.labels
    print(f"wrote {args.out_dir}: {labels['start']} .. {labels['end']}, "
          + ", ".join(f"{k} {v}" for k, v in labels["records"].items())
          + f" records in {result.seconds:.1f} s ({result.lines / result.seconds:,.0f} records/s)")
    for inc in labels["incidents"]:
        print(f"  {inc['id']} {inc['category']:<12} {inc['start']} .. {inc['end']}  {inc['type']} {inc['labels']}")
    for event in labels["benign"]:
        print(f"  benign {event['type']} at {event['start']}")
    return 0
