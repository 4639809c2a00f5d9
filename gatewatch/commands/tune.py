"""``gatewatch tune``: replay historic logs under each setting, score against labels, rank."""

from __future__ import annotations

import argparse
import json
import sys
import time

import yaml

from gatewatch.commands.replay import check_inputs
from gatewatch.config import ConfigError, load_config

HELP = "replay historic logs under each setting of a sweep, score each against labelled incidents, rank"

EPILOG = """\
sweep names are dotted paths into the YAML configuration:
  rules.<RuleName>.<param>   threshold, for (minutes), window, min_volume, min_count, clear, ...
  anomaly.<option>           fire_score, warmup, confirm, hot, ...
  incidents.<timing>         group_interval, repeat_interval, resolve_wait, reopen_grace (seconds)
  lateness_seconds
values: LO:HI:STEP (inclusive) or a,b,c. Several --sweep options: every combination.

examples:
  gatewatch tune logs/*.ndjson.gz --labels labels.json
  gatewatch tune logs/*.ndjson.gz --labels incidents.yaml \\
      --sweep rules.RateLimitStorm.threshold=5:20:5 --sweep rules.GatewayHigh5xxRate.for=2:6:2

labels: the scenarios' labels.json, or YAML written by hand:
  - {start: 2026-09-14T09:00Z, end: 2026-09-14T09:14Z, category: error_rate, labels: {provider: openai}}
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = EPILOG
    p.add_argument("files", nargs="+", metavar="FILE", help=".ndjson or .ndjson.gz files, any source, any mix")
    p.add_argument("--labels", required=True, metavar="LABELS",
                   help="labelled incidents: labels.json or a YAML list (start, end, category, labels)")
    p.add_argument("--sweep", action="append", default=[], metavar="NAME=LO:HI:STEP",
                   help="a parameter and its values (repeatable); without it the current config is scored")
    p.add_argument("--config", metavar="FILE", help="base YAML configuration (default: $GATEWATCH_CONFIG or built-in)")
    p.add_argument("--out", default="tuned.yaml", metavar="FILE",
                   help="where the best configuration goes (default tuned.yaml; '-' = do not write)")
    p.add_argument("--jobs", type=int, default=2, metavar="N", help="worker processes (default 2)")
    p.add_argument("--cache-events", type=int, default=None, metavar="N",
                   help="parsed events each worker keeps in memory (default 500000, ~0.9 KB each); "
                        "a larger input is re-read for each setting")
    p.add_argument("--no-models", action="store_true", help="rules only: switch the online anomaly models off")
    p.add_argument("--top", type=int, default=20, metavar="N", help="rows of the ranked table (default 20)")
    p.add_argument("--json", action="store_true", help="print the ranked results as JSON lines instead")


def load_labels(path: str) -> list[dict]:
    from models.scoring import parse_labels

    with open(path, encoding="utf-8") as f:
        doc = json.load(f) if path.endswith(".json") else yaml.safe_load(f)
    return parse_labels(doc)


def _fmt_delay(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds / 60:.1f}m"


def table(results, top: int) -> list[str]:
    names = list(results[0].setting) if results else []
    head = "  ".join(f"{n.split('.', 1)[-1]:>14}" for n in names)
    lines = [f"rank  {head}  recall  detected  false  pages(max/mean)  delay(median/max)  notifs"]
    for rank, r in enumerate(results[:top], 1):
        s = r.score
        cells = "  ".join(f"{r.setting[n]!s:>14}" for n in names)
        mean = "-" if s.mean_pages_per_incident is None else f"{s.mean_pages_per_incident:.1f}"
        lines.append(f"{rank:>4}  {cells}  {s.recall:6.0%}  {s.detected:>4}/{s.incidents:<4} {s.false_positives:>5}  "
                     f"{s.max_pages_per_incident:>8}/{mean:<6}  {_fmt_delay(s.median_delay_s):>9}/"
                     f"{_fmt_delay(s.max_delay_s):<7}  {r.notifications:>6}")
    return lines


def run(args: argparse.Namespace) -> int:
    from gatewatch.tune import (CACHE_EVENTS, MAX_SETTINGS, best_yaml, parse_sweep, ranked, run_settings,
                                settings)

    problem = check_inputs([*args.files, args.labels])
    if problem:
        print(problem.replace("gatewatch replay", "gatewatch tune"), file=sys.stderr)
        return 2
    try:
        config = load_config(args.config)
        labels = load_labels(args.labels)
        grid = settings([parse_sweep(s) for s in args.sweep])
    except (ConfigError, ValueError, yaml.YAMLError) as e:
        print(f"gatewatch tune: {e}", file=sys.stderr)
        return 2
    if len(grid) > MAX_SETTINGS:
        print(f"gatewatch tune: {len(grid)} settings; at most {MAX_SETTINGS} (use coarser steps)", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    try:
        results = run_settings(args.files, config.raw, grid, labels, jobs=args.jobs, no_models=args.no_models,
                               cache_events=args.cache_events or CACHE_EVENTS)
    except (TypeError, ValueError) as e:
        print(f"gatewatch tune: bad setting: {e}", file=sys.stderr)
        return 2
    elapsed = time.perf_counter() - t0
    best = ranked(results)
    if args.json:
        for r in best:
            print(json.dumps({"setting": r.setting, **r.score.as_dict(), "notifications": r.notifications}))
    else:
        print("\n".join(table(best, args.top)))
        rejected = sum(best[0].rejected.values())
        print(f"\n{len(results)} settings, {len(labels)} labelled incidents, {rejected} rejected lines, "
              f"{elapsed:.1f} s with {max(1, min(args.jobs, len(grid)))} worker(s)")
    if args.out != "-":
        with open(args.out, "w", encoding="utf-8") as f:
            f.write(best_yaml(config.raw, best[0]))
        if not args.json:
            print(f"best configuration written to {args.out}")
    return 0
