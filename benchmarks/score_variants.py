#!/usr/bin/env python3
"""Replay scenario directories in the three detection modes and tabulate the shared scorer's figures.

usage: score_variants.py OUT_DIR SCENARIO_DIR... [--modes default,no-models,no-rules] [--jobs 2]
       [--scorer ../shared/tools/score_scenarios.py]

Each directory (a shared scenario or a variant written by ``perturb_scenarios.py``) is replayed
with ``gatewatch replay`` once per mode; the notifications go to ``OUT_DIR/<dir>.<mode>.ndjson``
and the scorer's JSON beside them. Prints one Markdown row per (directory, mode): detected /
labelled, false incidents, most pages for one incident, median and max delay, and the missed ids.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

MODES = {"default": [], "no-models": ["--no-models"], "no-rules": ["--no-rules"]}


def run(out: Path, scenario: Path, mode: str, scorer: Path) -> dict:
    notifs = out / f"{scenario.name}.{mode}.ndjson"
    files = sorted(str(p) for p in scenario.glob("*.ndjson.gz"))
    subprocess.run([sys.executable, "-m", "gatewatch", "replay", *files, "--out", str(notifs), *MODES[mode]],
                   check=True, capture_output=True)
    res = subprocess.run([sys.executable, str(scorer), str(scenario / "labels.json"), str(notifs), "--json"],
                         check=True, capture_output=True, text=True)
    score = json.loads(res.stdout)
    (out / f"{scenario.name}.{mode}.score.json").write_text(json.dumps(score))
    return score


def row(name: str, mode: str, s: dict) -> str:
    missed = ", ".join(f"{r['id']} {r['category']}" for r in s["rows"] if not r["detected"]) or ""
    delays = sorted(r["delay_s"] / 60 for r in s["rows"] if r["detected"])
    delay = f"{delays[len(delays) // 2]:.0f} / {delays[-1]:.0f}" if delays else "-"
    return (f"| {name} | {mode} | {s['detected']}/{s['incidents']} | {s['false_positives']} | "
            f"{s['max_pages_per_incident']} | {delay} | {missed} |")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out", type=Path)
    ap.add_argument("scenarios", type=Path, nargs="+")
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--scorer", type=Path, default=Path(__file__).resolve().parents[2] / "shared/tools/score_scenarios.py")
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    tasks = [(s, m) for s in a.scenarios for m in a.modes.split(",")]
    with ThreadPoolExecutor(a.jobs) as pool:
        scores = list(pool.map(lambda t: run(a.out, t[0], t[1], a.scorer), tasks))
    print("| scenario | mode | detected | false incidents | max pages | delay median / max (min) | missed |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for (s, m), score in zip(tasks, scores):
        print(row(s.name, m, score))


if __name__ == "__main__":
    main()
