"""Fuzz run over every parser and over replay (issue 8): seeded, reproducible, a million lines.

    python benchmarks/fuzz_parsers.py [--lines 1000000] [--seed 8] [--files 10]

Two passes over the same generated lines (tests/fuzz_inputs.py: real records of every format,
mutated: wrong types, deep nesting, huge numbers, NaN/Infinity, invalid UTF-8, truncation, bit
flips, batches, pages):

1. **each line on its own** through ``iter_lines`` (the reader replay and ``tail file`` use):
   it must give events or a reject with a reason, never raise and never take more than
   ``--hang`` seconds (a line that jumps event time decades ahead makes the engine drain its
   windows first: tens of milliseconds, up to a second on a loaded machine); every event must be sane (real time, finite numbers, string labels), and
   is then folded into one ``Engine`` (which must not raise either).
2. **replay** (rules and anomaly models) over the lines written as ``--files`` files, a third of them gzip and one gzip
   cut short: ``records + rejected`` of the replay summary must equal what reading each file
   gives (replay's clock, merge, dedup and lateness lose nothing uncounted).

Prints the figures and exits 1 on any crash, hang or count that does not add up.
"""

from __future__ import annotations

import argparse
import gzip
import io
import random
import sys
import tempfile
import time
import traceback
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gatewatch.replay import replay
from models.config import Config
from models.engine import Engine
from models.events import Event
from models.pipeline import build_engine
from tests.fuzz_inputs import SEEDS, mutate, outcome
from tests.test_fuzz import assert_sane


def line_pass(lines: list[bytes], hang: float) -> dict:
    reasons: Counter = Counter()
    crashes: list[str] = []
    slowest, events, insane = 0.0, 0, 0
    engine = Engine()
    for n, line in enumerate(lines):
        t0 = time.perf_counter()
        try:
            evs, rejects = outcome(line)
            for ev in evs:
                insane += not _sane(ev)
                engine.process(ev)
        except Exception:  # noqa: BLE001 - a crash is what this run is looking for
            crashes.append(f"line {n}: {traceback.format_exc(limit=3)}\n{line[:300]!r}")
            continue
        slowest = max(slowest, time.perf_counter() - t0)
        events += len(evs)
        reasons.update(r.reason for r in rejects)
        if not evs and not rejects and line.strip():
            reasons["silently_dropped"] += 1
    engine.finish()
    return {"events": events, "rejects": reasons, "crashes": crashes, "slowest_s": slowest,
            "hangs": int(slowest > hang), "insane": insane, "silent": reasons.pop("silently_dropped", 0)}


def _sane(ev: Event) -> bool:
    try:
        assert_sane(ev)
    except AssertionError:
        return False
    return True


def write_files(lines: list[bytes], files: int, root: Path, rng: random.Random) -> list[Path]:
    paths = []
    per = max(1, len(lines) // files)
    for i in range(files):
        body = b"\n".join(lines[i * per:(i + 1) * per if i < files - 1 else len(lines)]) + b"\n"
        if i % 3 == 2:
            packed = gzip.compress(body, 1)
            if i == 2:
                packed = packed[: len(packed) * 9 // 10]  # one gzip cut short
            path = root / f"fuzz{i}.ndjson.gz"
            path.write_bytes(packed)
        else:
            path = root / f"fuzz{i}.ndjson"
            path.write_bytes(body)
        paths.append(path)
    return paths


def replay_pass(paths: list[Path]) -> dict:
    from connectors.files import iter_file

    units = 0
    for path in paths:
        for item in iter_file(path):
            units += len(item) if isinstance(item, list) else 1
    t0 = time.perf_counter()
    engine = build_engine(Config())  # rules, anomaly models and budget forecast, as `gatewatch replay` runs
    summary = replay([str(p) for p in paths], io.BytesIO(), rejects=io.BytesIO(), engine=engine)
    rejected = sum(summary.rejected.values())
    return {"units": units, "records": summary.records, "rejected": rejected, "reasons": summary.rejected,
            "adds_up": summary.records + rejected == units, "seconds": time.perf_counter() - t0}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=8)
    ap.add_argument("--files", type=int, default=10)
    ap.add_argument("--hang", type=float, default=10.0, help="seconds one line may take (default 10)")
    args = ap.parse_args(argv)
    rng = random.Random(args.seed)
    t0 = time.perf_counter()
    lines = [mutate(rng, rng.choice(SEEDS)) for _ in range(args.lines)]
    print(f"generated {len(lines):,} lines ({sum(map(len, lines)) / 1e6:,.0f} MB) in {time.perf_counter() - t0:.0f} s")
    t0 = time.perf_counter()
    single = line_pass(lines, args.hang)
    print(f"line pass: {len(lines):,} lines -> {single['events']:,} events, "
          f"{sum(single['rejects'].values()):,} rejects {dict(single['rejects'].most_common())}; "
          f"crashes {len(single['crashes'])}, hangs {single['hangs']} (slowest line {single['slowest_s'] * 1000:.1f} ms), "
          f"insane events {single['insane']}, silently dropped {single['silent']} ({time.perf_counter() - t0:.0f} s)")
    for crash in single["crashes"][:5]:
        print(crash)
    with tempfile.TemporaryDirectory() as tmp:
        many = replay_pass(write_files(lines, args.files, Path(tmp), rng))
    print(f"replay pass: {args.files} files, {many['units']:,} records read -> {many['records']:,} processed + "
          f"{many['rejected']:,} rejected {dict(many['reasons'].most_common())}; adds up: {many['adds_up']} "
          f"({many['seconds']:.0f} s)")
    bad = single["crashes"] or single["hangs"] or single["insane"] or single["silent"] or not many["adds_up"]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
