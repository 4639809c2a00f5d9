#!/usr/bin/env python3
"""Replay scenario directories in the three detection modes and tabulate the shared scorer's figures.

usage: score_variants.py OUT_DIR SCENARIO_DIR... [--modes default,no-models,no-rules] [--jobs 2]
       [--scorer ../shared/tools/score_scenarios.py] [--by-variant] [--reuse]

Each directory (a shared scenario or a variant written by ``perturb_scenarios.py``) is replayed
with ``gatewatch replay`` once per mode; the notifications go to ``OUT_DIR/<dir>.<mode>.ndjson``
and the scorer's JSON beside them. Prints one Markdown row per (directory, mode): detected /
labelled, false incidents, most pages for one incident, median and max delay, and the missed ids.
``--by-variant`` adds one row per variant (the part of the name after the first ``-``, e.g.
``x0.3`` for ``p2-x0.3``) summed over the scenarios, one column per mode.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

MODES = {"default": [], "no-models": ["--no-models"], "no-rules": ["--no-rules"]}


def run(out: Path, scenario: Path, mode: str, scorer: Path, reuse: bool = False) -> dict:
    notifs = out / f"{scenario.name}.{mode}.ndjson"
    kept = out / f"{scenario.name}.{mode}.score.json"
    if reuse and kept.exists():
        return json.loads(kept.read_text())
    files = sorted(str(p) for p in scenario.glob("*.ndjson.gz"))
    subprocess.run([sys.executable, "-m", "gatewatch", "replay", *files, "--out", str(notifs), *MODES[mode]],
                   check=True, capture_output=True)
    res = subprocess.run([sys.executable, str(scorer), str(scenario / "labels.json"), str(notifs), "--json"],
                         check=True, capture_output=True, text=True)
    score = json.loads(res.stdout)
    kept.write_text(json.dumps(score))
    return score


def row(name: str, mode: str, s: dict) -> str:
    missed = ", ".join(f"{r['id']} {r['category']}" for r in s["rows"] if not r["detected"]) or ""
    delays = sorted(r["delay_s"] / 60 for r in s["rows"] if r["detected"])
    delay = f"{delays[len(delays) // 2]:.0f} / {delays[-1]:.0f}" if delays else "-"
    return (f"| {name} | {mode} | {s['detected']}/{s['incidents']} | {s['false_positives']} | "
            f"{s['max_pages_per_incident']} | {delay} | {missed} |")


def by_variant(tasks: list, scores: list[dict], modes: list[str]) -> list[str]:
    """Per variant and mode: detected/labelled, false incidents, max pages, median/max delay."""
    sums: dict[str, dict[str, list[dict]]] = {}
    for (s, m), score in zip(tasks, scores):
        variant = s.name.split("-", 1)[1] if "-" in s.name else s.name
        sums.setdefault(variant, {}).setdefault(m, []).append(score)
    out = ["| variant | " + " | ".join(modes) + " |", "| --- |" + " --- |" * len(modes)]
    for variant, per_mode in sums.items():
        cells = []
        for m in modes:
            rows = [r for sc in per_mode.get(m, []) for r in sc["rows"]]
            found = sorted(r["delay_s"] / 60 for r in rows if r["detected"])
            fps = sum(sc["false_positives"] for sc in per_mode.get(m, []))
            pages = max((sc["max_pages_per_incident"] for sc in per_mode.get(m, [])), default=0)
            delay = f"{found[len(found) // 2]:.0f}/{found[-1]:.0f} min" if found else "-"
            cells.append(f"{len(found)}/{len(rows)}, {fps} FP, {pages} pg, {delay}")
        out.append(f"| {variant} | " + " | ".join(cells) + " |")
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out", type=Path)
    ap.add_argument("scenarios", type=Path, nargs="+")
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--by-variant", action="store_true")
    ap.add_argument("--reuse", action="store_true", help="keep the scores already in OUT_DIR")
    ap.add_argument("--scorer", type=Path, default=Path(__file__).resolve().parents[2] / "shared/tools/score_scenarios.py")
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    tasks = [(s, m) for s in a.scenarios for m in a.modes.split(",")]
    with ThreadPoolExecutor(a.jobs) as pool:
        scores = list(pool.map(lambda t: run(a.out, t[0], t[1], a.scorer, a.reuse), tasks))
    print("| scenario | mode | detected | false incidents | max pages | delay median / max (min) | missed |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for (s, m), score in zip(tasks, scores):
        print(row(s.name, m, score))
    if a.by_variant:
        print()
        print("\n".join(by_variant(tasks, scores, a.modes.split(","))))


if __name__ == "__main__":
    main()
