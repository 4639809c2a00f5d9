"""Cross-validated NAB scores of ``UnivariateDetector`` settings (a grid), not pass/fail.

Every setting of the grid is run over every NAB file once (in-process, as ``gatewatch nab``
does) and scored with the shared scorer's own functions (``nab_score.py``: one threshold
per profile for the files scored together). Reported:

* each setting's score on all files (standard / low FP / low FN);
* held-out folds: the setting with the best standard score on the *other* files is picked,
  then scored on the held-out files, with the threshold the scorer picks on them ("own
  thr") and with the threshold picked on the other files ("transfer": does the score
  mean the same across files? the hidden part of NAB is scored with one threshold too).
  Folds: files 0, 5, 10, ... by sorted name (5-fold), and each category with anomalies
  held out together with the no-anomaly files (leave one category out). Ties on the
  other files go to the first setting in grid order.

Usage::

    python benchmarks/nab_cv.py --nab ../shared/nab [--scorer PATH]
        [--grid refractory=0,50 --grid hold_halflife=30,60] [--per-file] [--jobs 2]

A grid value is a Python literal; ``--grid`` axes combine as a product. With no grid, the
defaults alone are scored (fold figures then show only how the threshold transfers).
"""

from __future__ import annotations

import argparse
import ast
import csv
import importlib.util
import itertools
import json
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime, timezone

import numpy as np

# this checkout's detector, not the one the environment has installed
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from models.univariate import UnivariateDetector  # noqa: E402

PROFILES = ("standard", "reward_low_FP_rate", "reward_low_FN_rate")


def load_scorer(path: str):
    spec = importlib.util.spec_from_file_location("nab_score", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def epoch(text: str) -> float | None:
    try:
        t = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    return (t if t.tzinfo else t.replace(tzinfo=timezone.utc)).timestamp()


def load_files(nab: str) -> list[dict]:
    """Every labelled file present under ``nab/data``: values, epoch times, windows."""
    windows = json.load(open(os.path.join(nab, "labels", "combined_windows.json")))
    files = []
    for rel in sorted(windows):
        path = os.path.join(nab, "data", rel)
        if not os.path.exists(path):
            continue
        with open(path, newline="") as f:
            rows = list(csv.reader(f))[1:]
        values = [float(r[1]) if len(r) > 1 and r[1] else None for r in rows if r]
        times = [epoch(r[0]) for r in rows if r]
        files.append({"rel": rel, "cat": rel.split("/")[0], "values": values, "times": times,
                      "windows": windows[rel]})
    return files


def run_setting(args: tuple[dict, list[dict]]) -> list[np.ndarray]:
    kwargs, files = args
    out = []
    for f in files:
        det = UnivariateDetector(**kwargs)
        out.append(np.array([det.update(x, t) for x, t in zip(f["values"], f["times"])]))
    return out


def profiles_of(nab: str, scorer) -> dict:
    path = os.path.join(nab, "config", "profiles.json")
    if os.path.exists(path):
        return {k: v["CostMatrix"] for k, v in json.load(open(path)).items()}
    return scorer.DEFAULT_PROFILES


def subset_score(parts: list[dict], cm: dict, threshold: float | None = None) -> tuple[float, float]:
    """(normalised score, threshold) of ``parts``: at ``threshold``, or the best one."""
    scorer = SCORER
    nwin = sum(len(set(p["wid"][p["kind"] == 1].tolist())) for p in parts)
    if threshold is None:
        live = np.concatenate([p["s"][p["kind"] != 0] for p in parts])
        cands = np.unique(np.append(live, 1.1))[::-1]
    else:
        cands = np.array([threshold])
    totals = scorer.curve(parts, cm, cands)
    i = int(np.argmax(totals))
    null, perfect = -cm["fnWeight"] * nwin, cm["tpWeight"] * nwin
    return 100 * (float(totals[i]) - null) / (perfect - null), float(cands[i])


SCORER = None


def folds_of(files: list[dict]) -> list[tuple[str, list[int]]]:
    n = len(files)
    folds = [(f"files {k}, {k + 5}, ...", [i for i in range(n) if i % 5 == k]) for k in range(5)]
    quiet = [i for i, f in enumerate(files) if not f["windows"]]
    for cat in sorted({f["cat"] for f in files if f["windows"]}):
        held = [i for i, f in enumerate(files) if f["cat"] == cat]
        if len(held) < n - len(quiet):
            folds.append((f"category {cat}", sorted(held + quiet)))
    return folds


def per_file(files, parts, cm, thr) -> None:
    for f, p in zip(files, parts):
        s, kind, wid, u = p["s"], p["kind"], p["wid"], p["u"]
        hits = []
        for w in sorted(set(wid[kind == 1].tolist())):
            m = (kind != 0) & (wid == w) & (s >= thr)
            hits.append(f"{u[m].max():.2f}" if m.any() else "MISS")
        fp = (kind == 2) & (s >= thr)
        cost = cm["fpWeight"] * u[fp].sum()
        best_out = s[kind == 2].max() if (kind == 2).any() else 0.0
        best_in = [s[(kind != 0) & (wid == w)].max() for w in sorted(set(wid[kind == 1].tolist()))]
        print(f"  {f['rel']:55s} windows {' '.join(hits) or '-':24s} fp {int(fp.sum()):3d} ({cost:+.2f})"
              f"  max out {best_out:.3f} in {' '.join(f'{b:.3f}' for b in best_in)}")


def main() -> int:
    global SCORER
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nab", required=True)
    ap.add_argument("--scorer", default=None, help="nab_score.py (default: NAB/../tools/nab_score.py)")
    ap.add_argument("--grid", action="append", default=[], metavar="NAME=V1,V2")
    ap.add_argument("--per-file", action="store_true")
    ap.add_argument("--jobs", type=int, default=2)
    a = ap.parse_args()
    SCORER = load_scorer(a.scorer or os.path.join(a.nab, "..", "tools", "nab_score.py"))
    profiles = profiles_of(a.nab, SCORER)
    files = load_files(a.nab)
    axes = []
    for g in a.grid:
        name, _, values = g.partition("=")
        axes.append([(name, float(v) if v in ("inf", "-inf") else ast.literal_eval(v)) for v in values.split(",")])
    settings = [dict(c) for c in itertools.product(*axes)] or [{}]
    with ProcessPoolExecutor(a.jobs) as pool:
        runs = list(pool.map(run_setting, [(s, files) for s in settings]))
    parts = [[SCORER.file_parts(a.nab, f["rel"], f["windows"], s) for f, s in zip(files, scores)]
             for scores in runs]
    std = profiles["standard"]
    print("all files:")
    for s, ps in zip(settings, parts):
        row = "  ".join(f"{subset_score(ps, profiles[k])[0]:6.2f}" for k in PROFILES)
        print(f"  {row}  {s}")
    print("held out (setting picked on the rest): own thr std / lowFP / lowFN | transfer std")
    mean_own, mean_tr = [], []
    for name, held in folds_of(files):
        rest = [i for i in range(len(files)) if i not in held]
        best = max(range(len(settings)),
                   key=lambda k: subset_score([parts[k][i] for i in rest], std)[0])
        _, thr = subset_score([parts[best][i] for i in rest], std)
        hp = [parts[best][i] for i in held]
        own = [subset_score(hp, profiles[k])[0] for k in PROFILES]
        transfer = subset_score(hp, std, thr)[0]
        mean_own.append(own[0])
        mean_tr.append(transfer)
        print(f"  {name:36s} {own[0]:6.2f} {own[1]:6.2f} {own[2]:6.2f} | {transfer:6.2f}  {settings[best]}")
    print(f"  mean 5-fold own {np.mean(mean_own[:5]):.2f} transfer {np.mean(mean_tr[:5]):.2f};"
          f" categories own {np.mean(mean_own[5:]):.2f} transfer {np.mean(mean_tr[5:]):.2f}")
    if a.per_file:
        for s, ps in zip(settings, parts):
            _, thr = subset_score(ps, std)
            print(f"per file at the standard threshold {thr:.4f}: {s}")
            per_file(files, ps, std, thr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
