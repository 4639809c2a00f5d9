"""Replay benchmarks (issues 3 and 7): throughput against parse-only, scaling, memory per series,
detection latency. ``gatewatch bench replay`` drives it; it can also run on its own:

    python benchmarks/bench_replay.py --scenario-dir /work/shared/scenarios --generate bench

How each figure is measured (the machine is shared, so everything is a ratio within one run):

* **throughput**: in one fresh subprocess per input, ``rounds`` times, interleaved: (1) parse-only,
  gunzip + ``orjson.loads`` of every line of the same files; (2) the full replay
  (``gatewatch.replay.replay``: parse, merge by event time, dedup, ``Engine.process``; rules
  only unless ``--with-models``). Both timed with CPU time (``time.process_time``, robust to
  other processes on the machine) and wall time. ratio = parse-only time / replay time on the
  same lines, per round; the median round is reported.
* **peak memory**: ``ru_maxrss`` of that subprocess after the replays minus ``ru_maxrss`` after
  imports (the parse-only loop holds nothing). Same method for scaling and series.
* **scaling**: the simulator's ``bench`` scenario without incidents for 0.5 h, 2 h and 8 h
  (1x, 4x, 16x), one replay each in a fresh subprocess.
* **series**: synthetic requests through ``Engine.process``, N distinct (team, key, model)
  combinations (N keys, N/10 teams, 20 models, 5 providers), each with one request a minute for
  ``SERIES_MINUTES`` minutes; bytes per active series = tracemalloc peak of the engine / N
  (exact Python-heap figure; the RSS delta is shown too, it rounds small runs to 0).
* **detection latency**: ``models.scoring.score(labels, notifications)`` on the notifications
  of the throughput replays: log time from each labelled incident's start to its first page.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SERIES_MINUTES = 3
SCALE_HOURS = (0.5, 2.0, 8.0)
SERIES_COUNTS = (1_000, 10_000, 100_000)


# --- measurements run inside a child process ----------------------------------------------
def _rss_kb() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux


def parse_only(paths: list[str]) -> int:
    """Gunzip and orjson-parse every line: the physical floor replay is compared with."""
    import orjson

    loads, n = orjson.loads, 0
    for path in paths:
        raw = open(path, "rb")
        stream = io.BufferedReader(gzip.GzipFile(fileobj=raw), 1 << 16) if raw.read(2) == b"\x1f\x8b" else raw
        raw.seek(0)
        with stream:
            for line in stream:
                if line.strip():
                    loads(line)
                    n += 1
    return n


def parse_only_blocks(paths: list[str]) -> int:
    """``parse_only`` reading the files as replay reads them (``connectors.files.read_blocks``: zlib
    in blocks, lines cut by ``BytesIO``): the same gunzip and orjson work, less Python around it."""
    import orjson

    from connectors.files import read_blocks

    loads, n = orjson.loads, 0
    for path in paths:
        tail = b""
        for block in read_blocks(path):
            for line in io.BytesIO(tail + block if tail else block):
                if line[-1] != 10:
                    tail = line
                    break
                if line.strip():
                    loads(line)
                    n += 1
            else:
                tail = b""
        if tail.strip():
            loads(tail)
            n += 1
    return n


def parse_only_parallel(paths: list[str], jobs: int) -> int:
    """``parse_only`` in one process per group of ``replay --jobs`` (the same split of the files)."""
    from concurrent.futures import ProcessPoolExecutor

    from gatewatch.parallel import groups_of

    groups = groups_of(paths, jobs)
    with ProcessPoolExecutor(len(groups)) as pool:
        return sum(pool.map(parse_only, groups))


def _replay(paths: list[str], with_models: bool, out_path: str | None, jobs: int = 1) -> tuple[int, int]:
    from models.pipeline import build_engine
    from gatewatch.config import load_config
    from gatewatch.replay import replay

    engine = build_engine(load_config(None), no_models=not with_models)
    out = open(out_path, "wb") if out_path else io.BytesIO()
    with out:
        summary = replay(paths, out, engine=engine, jobs=jobs)
    return summary.records, summary.notifications


def _cpu() -> float:
    """CPU seconds of this process and of its children that have ended (the reader processes)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def child_throughput(paths: list[str], rounds: int, with_models: bool, notes_path: str | None,
                     jobs: int = 1) -> dict:
    import gatewatch.commands.replay  # noqa: F401 - imports before the baseline
    import models.engine  # noqa: F401

    base = _rss_kb()
    runs = []
    lines = events = notes = 0
    for i in range(rounds):
        c0, w0 = time.process_time(), time.perf_counter()
        lines = parse_only(paths)
        c1, w1 = time.process_time(), time.perf_counter()
        events, notes = _replay(paths, with_models, notes_path if i == 0 else None)
        c2, w2 = time.process_time(), time.perf_counter()
        blocks_lines = parse_only_blocks(paths)
        c3 = time.process_time()
        assert blocks_lines == lines, (blocks_lines, lines)
        run = {"parse_cpu": c1 - c0, "parse_wall": w1 - w0, "replay_cpu": c2 - c1, "replay_wall": w2 - w1,
               "blocks_cpu": c3 - c2}
        if jobs > 1:  # replay --jobs, and parse-only split the same way, both in wall and total CPU time
            c0, w0 = _cpu(), time.perf_counter()
            parse_only_parallel(paths, jobs)
            c1, w1 = _cpu(), time.perf_counter()
            jobs_events, _ = _replay(paths, with_models, None, jobs)
            c2, w2 = _cpu(), time.perf_counter()
            assert jobs_events == events, (jobs_events, events)
            run.update(pparse_cpu=c1 - c0, pparse_wall=w1 - w0, jobs_cpu=c2 - c1, jobs_wall=w2 - w1)
        runs.append(run)
    return {"lines": lines, "events": events, "notifications": notes, "runs": runs,
            "rss_delta_bytes": (_rss_kb() - base) * 1024}


def child_series(n: int, minutes: int = SERIES_MINUTES) -> dict:
    from models.engine import Engine
    from models.events import REQUEST, Event

    import tracemalloc

    base = _rss_kb()
    tracemalloc.start()
    engine = Engine()
    t0 = time.process_time()
    start = 1_789_000_000.0 - 1_789_000_000.0 % 60
    teams, models_ = max(1, n // 10), 20
    for m in range(minutes):
        for i in range(n):
            ev = Event(start + m * 60 + 59.0 * i / n, REQUEST, "bench", f"prov{i % 5}", f"model{i % models_}",
                       f"team{i % teams}", f"key{i}", latency=0.2 + (i % 50) / 10, tokens=100, cost=0.001)
            engine.process(ev)
    engine.finish()
    cpu = time.process_time() - t0
    retained, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {"series": n, "engine_series": len(engine.series), "events": n * minutes, "cpu_traced": cpu,
            "traced_peak_bytes": peak, "traced_retained_bytes": retained,
            "rss_delta_bytes": (_rss_kb() - base) * 1024}


def _child(task: str, *args) -> dict:
    """Run one measurement in a fresh interpreter (clean heap, clean ru_maxrss)."""
    code = (f"import sys, json; sys.path.insert(0, {str(Path(__file__).parent)!r}); import bench_replay as b; "
            f"print(json.dumps(b.{task}(*json.loads(sys.argv[1]))))")
    proc = subprocess.run([sys.executable, "-c", code, json.dumps(args)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{task} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --- the benchmark ----------------------------------------------------------------------------
def _summarise(name: str, r: dict) -> dict:
    ratios = [x["parse_cpu"] / x["replay_cpu"] for x in r["runs"]]
    mid = sorted(range(len(ratios)), key=ratios.__getitem__)[(len(ratios) - 1) // 2]  # lower median round
    run = r["runs"][mid]
    return {
        "input": name, "lines": r["lines"], "events": r["events"], "notifications": r["notifications"],
        "parse_lines_per_s": r["lines"] / run["parse_cpu"], "replay_lines_per_s": r["lines"] / run["replay_cpu"],
        "replay_events_per_s": r["events"] / run["replay_cpu"], "ratio": statistics.median(ratios), "ratios": ratios,
        "ratio_wall": run["parse_wall"] / run["replay_wall"], "replay_cpu_s": run["replay_cpu"],
        "ratio_blocks": statistics.median(x["blocks_cpu"] / x["replay_cpu"] for x in r["runs"]),
        "blocks_lines_per_s": r["lines"] / run["blocks_cpu"],
        "replay_wall_s": run["replay_wall"], "peak_rss_delta_mb": r["rss_delta_bytes"] / 2**20,
        **(_summarise_jobs(r["runs"]) if "jobs_wall" in r["runs"][0] else {}),
    }


def _summarise_jobs(runs: list[dict]) -> dict:
    """``replay --jobs``: medians over rounds of wall-clock ratios to parse-only in one process and
    to parse-only split as the readers are, and of the CPU-time ratio (all processes)."""
    med = lambda f: statistics.median(f(x) for x in runs)  # noqa: E731
    return {"jobs_wall_ratio": med(lambda x: x["parse_wall"] / x["jobs_wall"]),
            "jobs_wall_ratio_split": med(lambda x: x["pparse_wall"] / x["jobs_wall"]),
            "jobs_cpu_ratio": med(lambda x: x["parse_cpu"] / x["jobs_cpu"]),
            "jobs_speedup": med(lambda x: x["replay_wall"] / x["jobs_wall"]),
            "jobs_wall_s": med(lambda x: x["jobs_wall"])}


def _inputs(scenario_dir: str | None, stream_dir: str | None) -> list[tuple[str, list[str], Path]]:
    found = []
    if scenario_dir:
        root = Path(scenario_dir)
        dirs = [root] if list(root.glob("*.ndjson.gz")) else sorted(p for p in root.iterdir() if p.is_dir())
        for d in dirs:
            files = sorted(str(p) for p in d.glob("*.ndjson.gz"))
            if files:
                found.append((d.name, files, d))
    if stream_dir:
        d = Path(stream_dir)
        found.append((f"simulator {d.name} stream", sorted(str(p) for p in d.glob("*.ndjson.gz")), d))
    return found


def _generate(out: Path, scenario: str, hours: float | None = None, incidents: str = "all") -> Path:
    from gatewatch.simulate import simulate

    if not (out / "labels.json").exists():
        simulate(out, scenario=scenario, hours=hours, incidents=incidents)
    return out


def run_all(scenario_dir: str | None = None, stream_dir: str | None = None, generate: str | None = None,
            rounds: int = 3, with_models: bool = False, scale: bool = True, series: bool = True,
            work_dir: str | None = None, jobs: int = 1, log=lambda msg: print(msg, file=sys.stderr, flush=True)) -> dict:
    from models.scoring import score

    work = Path(work_dir or tempfile.mkdtemp(prefix="gatewatch-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    if generate and not stream_dir:
        log(f"generating the simulator's {generate!r} stream into {work / generate} ...")
        stream_dir = str(_generate(work / generate, generate))
    from gatewatch.compiled import describe

    results: dict = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "cpus": os.cpu_count(),
                     "loadavg_start": os.getloadavg(), "python": sys.version.split()[0], "hot_path": describe(),
                     "with_models": with_models, "jobs": jobs, "throughput": [], "scaling": [], "series": [], "latency": []}
    for name, files, d in _inputs(scenario_dir, stream_dir):
        log(f"throughput: {name} ({len(files)} files, {rounds} interleaved rounds) ...")
        notes_path = str(work / f"{name.replace(' ', '_')}.notifications.ndjson")
        r = _summarise(name, _child("child_throughput", files, rounds, with_models, notes_path, jobs))
        results["throughput"].append(r)
        labels_file = d / "labels.json"
        if labels_file.exists():
            labels = json.loads(labels_file.read_text())
            notes = [json.loads(x) for x in Path(notes_path).read_bytes().splitlines() if x.strip()]
            for row in score(labels, notes).rows:
                results["latency"].append({"input": name, "category": row["category"], "id": row.get("id"),
                                           "detected": row["detected"], "delay_s": row["delay_s"]})
    if scale:
        for hours in SCALE_HOURS:
            d = work / f"scale-{hours:g}h"
            log(f"scaling: simulating {hours:g} h of the bench scenario (no incidents) ...")
            _generate(d, "bench", hours=hours, incidents="none")
            files = sorted(str(p) for p in d.glob("*.ndjson.gz"))
            r = _child("child_throughput", files, 1, with_models, None)
            results["scaling"].append({"hours": hours, "lines": r["lines"], "events": r["events"],
                                       "replay_cpu_s": r["runs"][0]["replay_cpu"],
                                       "parse_cpu_s": r["runs"][0]["parse_cpu"],
                                       "peak_rss_delta_mb": r["rss_delta_bytes"] / 2**20})
    if series:
        for n in SERIES_COUNTS:
            log(f"series: {n:,} active series ...")
            r = _child("child_series", n)
            r["bytes_per_series"] = r["traced_peak_bytes"] / n
            results["series"].append(r)
    results["loadavg_end"] = os.getloadavg()
    return results


def latency_by_category(rows: list[dict]) -> list[dict]:
    out = {}
    for r in rows:
        c = out.setdefault(r["category"], {"category": r["category"], "labelled": 0, "detected": 0, "delays": []})
        c["labelled"] += 1
        if r["detected"]:
            c["detected"] += 1
            c["delays"].append(r["delay_s"])
    for c in out.values():
        d = c.pop("delays")
        c["median_delay_min"] = statistics.median(d) / 60 if d else None
        c["max_delay_min"] = max(d) / 60 if d else None
    return sorted(out.values(), key=lambda c: c["category"])


def markdown(res: dict) -> str:
    la0, la1 = res["loadavg_start"], res["loadavg_end"]
    lines = [f"Measured {res['date']} on {res['cpus']} CPUs, Python {res['python']}; load average "
             f"{la0[0]:.2f}/{la0[1]:.2f}/{la0[2]:.2f} at start, {la1[0]:.2f}/{la1[1]:.2f}/{la1[2]:.2f} at end "
             f"(shared machine). Replay {'with' if res['with_models'] else 'without'} the anomaly models; "
             f"{res.get('hot_path', 'hot path: not recorded')}.", ""]
    if res["throughput"]:
        lines += ["### Replay throughput vs. gunzip + orjson parse (CPU time, same run, interleaved)", "",
                  "| input | lines | events | parse-only lines/s | replay lines/s | replay events/s "
                  "| ratio (CPU) | ratio per round | ratio (wall) | parse-only read as replay reads, lines/s "
                  "| ratio to it (CPU) | peak RSS Δ |",
                  "|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|"]
        for r in res["throughput"]:
            lines.append(f"| {r['input']} | {r['lines']:,} | {r['events']:,} | {r['parse_lines_per_s']:,.0f} | "
                         f"{r['replay_lines_per_s']:,.0f} | {r['replay_events_per_s']:,.0f} | {r['ratio']:.2f} | "
                         f"{' '.join(f'{x:.2f}' for x in r['ratios'])} | "
                         f"{r['ratio_wall']:.2f} | {r['blocks_lines_per_s']:,.0f} | {r['ratio_blocks']:.2f} | "
                         f"{r['peak_rss_delta_mb']:.0f} MB |")
        lines.append("")
    if res.get("jobs", 1) > 1 and res["throughput"]:
        lines += [f"### `replay --jobs {res['jobs']}`: {res['jobs']} reader processes, detection in the main one "
                  "(wall clock, and CPU of all processes; median of rounds)", "",
                  "| input | replay --jobs wall s | speed-up vs 1 process (wall) | vs parse-only in 1 process (wall) "
                  f"| vs parse-only split as the readers (wall) | vs parse-only (CPU, all processes) |",
                  "|---|---:|---:|---:|---:|---:|"]
        for r in res["throughput"]:
            lines.append(f"| {r['input']} | {r['jobs_wall_s']:.2f} | {r['jobs_speedup']:.2f}× | "
                         f"{r['jobs_wall_ratio']:.2f} | {r['jobs_wall_ratio_split']:.2f} | {r['jobs_cpu_ratio']:.2f} |")
        lines.append("")
    if res["scaling"]:
        base = res["scaling"][0]
        lines += ["### Scaling with input (simulator `bench`, no incidents)", "",
                  "| hours | lines | replay CPU s | µs/line | time vs 1× | lines vs 1× | peak RSS Δ |",
                  "|---:|---:|---:|---:|---:|---:|---:|"]
        for r in res["scaling"]:
            lines.append(f"| {r['hours']:g} | {r['lines']:,} | {r['replay_cpu_s']:.2f} | "
                         f"{1e6 * r['replay_cpu_s'] / r['lines']:.1f} | {r['replay_cpu_s'] / base['replay_cpu_s']:.1f}× | "
                         f"{r['lines'] / base['lines']:.1f}× | {r['peak_rss_delta_mb']:.0f} MB |")
        lines.append("")
    if res["series"]:
        lines += [f"### Memory per active series (synthetic requests through `Engine.process`, "
                  f"{SERIES_MINUTES} min each)", "",
                  "| active series | engine series | events | tracemalloc peak | retained | peak RSS Δ "
                  "| bytes / active series (peak) |",
                  "|---:|---:|---:|---:|---:|---:|---:|"]
        for r in res["series"]:
            lines.append(f"| {r['series']:,} | {r['engine_series']:,} | {r['events']:,} | "
                         f"{r['traced_peak_bytes'] / 2**20:.1f} MB | {r['traced_retained_bytes'] / 2**20:.1f} MB | "
                         f"{r['rss_delta_bytes'] / 2**20:.0f} MB | {r['bytes_per_series']:,.0f} |")
        lines.append("")
    if res["latency"]:
        lines += ["### Detection latency (log time, labelled incident start → first page)", ""]
        for source in dict.fromkeys(r["input"] for r in res["latency"]):
            rows = latency_by_category([r for r in res["latency"] if r["input"] == source])
            lines += [f"{source}:", "", "| category | labelled | detected | median delay | max delay |",
                      "|---|---:|---:|---:|---:|"]
            for c in rows:
                med = f"{c['median_delay_min']:.1f} min" if c["median_delay_min"] is not None else "—"
                mx = f"{c['max_delay_min']:.1f} min" if c["max_delay_min"] is not None else "—"
                lines.append(f"| {c['category']} | {c['labelled']} | {c['detected']} | {med} | {mx} |")
            lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenario-dir")
    ap.add_argument("--stream-dir")
    ap.add_argument("--generate")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    res = run_all(a.scenario_dir, a.stream_dir, a.generate, a.rounds, jobs=a.jobs)
    print(json.dumps(res, indent=1) if a.json else markdown(res))
