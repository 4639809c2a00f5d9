"""``gatewatch nab``: the univariate online detector over NAB-format CSVs (CONTRACT §1).

Writes ``OUT_DIR/<category>/<detector>_<file>.csv`` (``timestamp,value,anomaly_score``),
the layout the NAB scorer globs for (``<category>/*_<file>``). Strictly online: each row
is scored by ``update`` before it is learned, from the rows up to and including it.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone

from models.univariate import UnivariateDetector

HELP = "run the univariate online detector over NAB-format CSVs (timestamp,value)"

# name -> factory; the name prefixes every result file, as NAB's detectors do
DETECTORS: dict[str, Callable[[], UnivariateDetector]] = {"gatewatch": UnivariateDetector}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("data_dir", metavar="DATA_DIR", help="directory of <category>/<file>.csv files")
    p.add_argument("out_dir", metavar="OUT_DIR", help="where <category>/<detector>_<file>.csv go")
    p.add_argument("--detector", default="gatewatch", choices=sorted(DETECTORS),
                   help="detector name, also the result file prefix (default: gatewatch)")
    p.add_argument("--quiet", action="store_true", help="no summary")


def find_csvs(data_dir: str) -> Iterator[str]:
    """Every CSV under ``data_dir``, relative to it, in a stable order."""
    for root, dirs, files in os.walk(data_dir):
        dirs.sort()
        for name in sorted(files):
            if name.endswith(".csv"):
                yield os.path.relpath(os.path.join(root, name), data_dir)


def parse_time(text: str) -> datetime | None:
    """NAB timestamps are naive local-less times; read them as UTC. Bad ones become None."""
    try:
        t = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


def parse_value(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None  # the detector scores a missing value 0 and does not learn it


def score_file(src: str, dst: str, detector: UnivariateDetector) -> int:
    """Score one CSV row by row into ``dst``; returns the number of rows."""
    rows = 0
    with open(src, newline="") as fin, open(dst, "w", newline="") as fout:
        reader, writer = csv.reader(fin), csv.writer(fout)
        next(reader, None)  # header
        writer.writerow(["timestamp", "value", "anomaly_score"])
        for row in reader:
            if not row:
                continue
            stamp, value = row[0], row[1] if len(row) > 1 else ""
            score = detector.update(parse_value(value), parse_time(stamp))
            writer.writerow([stamp, value, f"{score:.9f}"])
            rows += 1
    return rows


def run(args: argparse.Namespace) -> int:
    if not os.path.isdir(args.data_dir):
        print(f"gatewatch nab: {args.data_dir}: not a directory", file=sys.stderr)
        return 2
    files = list(find_csvs(args.data_dir))
    if not files:
        print(f"gatewatch nab: no CSV files under {args.data_dir}", file=sys.stderr)
        return 2
    started, rows = time.perf_counter(), 0
    for rel in files:
        category, name = os.path.split(rel)
        os.makedirs(os.path.join(args.out_dir, category), exist_ok=True)
        dst = os.path.join(args.out_dir, category, f"{args.detector}_{name}")
        rows += score_file(os.path.join(args.data_dir, rel), dst, DETECTORS[args.detector]())
    elapsed = time.perf_counter() - started
    if not args.quiet:
        per_row = 1e6 * elapsed / max(rows, 1)
        print(f"gatewatch nab: {len(files)} files, {rows} rows, detector {args.detector}, "
              f"{elapsed:.1f} s ({per_row:.1f} µs/row) -> {args.out_dir}")
    return 0
