"""``gatewatch demo``: simulate a day with incidents, replay it, print the incidents."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

HELP = "simulate a day of gateway traffic with incidents, replay it, print the incidents"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dir", metavar="DIR", help="keep the simulated logs and notifications here (default: a temp dir)")
    p.add_argument("--seed", type=int, default=7, help="simulator seed (default 7)")
    p.add_argument("--hours", type=float, default=None, help="simulate fewer hours than the default day")
    p.add_argument("--no-models", action="store_true", help="rules only")


def run(args: argparse.Namespace) -> int:
    from models.pipeline import build_engine
    from gatewatch.config import load_config
    from gatewatch.demo import render
    from gatewatch.replay import replay
    from gatewatch.simulate import simulate
    from models.scoring import score

    base = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="gatewatch-demo-"))
    logs = base / "logs"
    print(f"Simulating a day of LiteLLM, Fly.io and Langfuse logs into {logs} ...", flush=True)
    result = simulate(logs, scenario="demo", seed=args.seed, hours=args.hours)
    files = sorted(str(p) for p in logs.glob("*.ndjson.gz"))
    notifs_path = base / "notifications.ndjson"
    print(f"Replaying {sum(result.labels['records'].values()):,} records through the detection pipeline ...",
          flush=True)
    engine = build_engine(load_config(None), no_models=args.no_models)
    with open(notifs_path, "wb") as out:
        summary = replay(files, out, engine=engine, progress=sys.stderr.isatty())
    notifications = [json.loads(line) for line in notifs_path.read_bytes().splitlines() if line.strip()]
    print()
    print(render(notifications))
    rows = score(result.labels, notifications).rows
    print("Labelled incidents in the simulated day:")
    for r in rows:
        status = f"caught after {r['delay_s'] / 60:.0f} min" if r["detected"] else "MISSED"
        print(f"  {r['start']:%H:%M}  {r['category']:13} {json.dumps(r['labels'])[:40]:42} {status}")
    print()
    for line in summary.lines():
        print(line)
    print(f"notifications written to {notifs_path}")
    caught = sum(r["detected"] for r in rows)
    print(f"{caught}/{len(rows)} labelled incidents caught")
    return 0
