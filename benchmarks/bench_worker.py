"""Worker throughput, scale-out and latency through Kafka (Tansu), against raw aiokafka in the same run.

    python benchmarks/bench_worker.py [--hours 6] [--rps 4] [--rounds 2] [--incidents a,b,...]
    gatewatch bench worker [same options]

1. ``gatewatch simulate`` writes LiteLLM/Fly/Langfuse files with labelled incidents; their
   lines go to 4-partition raw topics as NDJSON batches of 500 (what ``gatewatch tail`` sends).
2. baseline: one aiokafka consumer reads every raw message and ``orjson.loads`` each line; then
   again, with the lines cut as the worker's ingest cuts them (see ``baseline``).
3. 1 worker, then 2 workers of one group (fresh topics each): the workers join first, then
   the batches are produced; lines/s from the first ingested batch until detection has
   applied every event ("applied"). CPU seconds of each worker and of the broker are read
   from /proc over the same interval, and the seconds the workers' threads waited for a
   core (/proc/PID/task/*/schedstat): on 2 shared cores the broker, the workers and other
   people's jobs compete, so wall figures say more about the machine's load than about the
   worker; the CPU figures are the ones to compare. The scale-out is also given as if each
   worker had its own core (1 worker's CPU seconds / the busiest of the 2 workers' CPU
   seconds). CPU is read again once every notification is out ("job"): that adds the
   minute closes (they start ``GATEWATCH_IDLE_SECONDS`` = 30 s after the first message, so
   a run longer than that has some of them in "applied" too: marked "closes began") and
   ~30 s of idle waiting for the last ones. The notifications topic of each run is compared
   with replay's output. Steps 2-3 are repeated ``--rounds`` times (fresh topics each) and
   the medians of the per-round ratios printed: a load change between two legs moves one
   round's ratio, not the median of several.
4. latency: LiteLLM only (one input, so its time alone is the watermark), everything up to
   the first minute that fires is sent and applied; then the one batch that closes that
   minute is sent, and the time until its notification is on the notifications topic is
   measured (record entering Kafka → notification out; Slack/webhook delivery comes on top).
5. detection latency per category: log time from each labelled incident's start to its
   first page (``gatewatch.demo.match``), on the notifications the workers sent.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from connectors.file_source import route  # noqa: E402
from connectors.files import open_input  # noqa: E402
from connectors.kafka import all_raw_topics, ensure_topics, raw_topic  # noqa: E402
from gatewatch.replay import replay  # noqa: E402
from tests.kafka_broker import TansuBroker, tansu_binary  # noqa: E402
from tests.worker_helpers import free_port, health, start_worker  # noqa: E402

BATCH = 500
LATENCY_IDLE = 5  # s: the latency worker's idle rule (and start-up wait)
# The service's own snapshot and tick intervals (the tests' are shorter); a short session
# timeout only so that the groups form in seconds, and idle inputs as in production.
INCIDENTS = ("provider_outage,rate_limit_storm,cache_collapse,runaway_agent,latency_degradation,"
             "crash_loop")
SERVICE = {"GATEWATCH_SNAPSHOT_SECONDS": "10", "GATEWATCH_TICK_SECONDS": "1", "GATEWATCH_IDLE_SECONDS": "30"}


def lines_of(path: str) -> list[bytes]:
    return [line.rstrip(b"\n") for line in open_input(path) if line.strip()]


async def produce(bootstrap: str, prefix: str, batches: list[tuple[str, bytes]], partitions: int = 4) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=False,
                                linger_ms=5, max_request_size=8 << 20)
    await producer.start()
    try:
        for i, (family, value) in enumerate(batches):
            await producer.send(raw_topic(family, prefix), value, partition=i % partitions)
        await producer.flush()
    finally:
        await producer.stop()


def batches_of(paths: list[str]) -> list[tuple[str, bytes]]:
    out = []
    for path in paths:
        lines = lines_of(path)
        family = route(lines[0])
        out += [(family, b"\n".join(lines[k:k + BATCH])) for k in range(0, len(lines), BATCH)]
    return out


async def baseline(bootstrap: str, prefix: str, messages: int, by_memchr: bool = False) -> tuple[int, float, float]:
    """One aiokafka consumer (no group) reads every raw message and ``orjson.loads`` each line.

    Lines are cut with ``bytes.split`` (the baseline of every earlier run), or, ``by_memchr``, by
    iterating a ``BytesIO`` as the worker's ingest cuts them (``connectors.formats.fold_batch``):
    ``bytes.split`` on a one-byte separator goes byte by byte, so the worker's own cutting is
    faster than the first baseline's, and the second baseline does not count that as the worker's
    gain."""
    consumer = AIOKafkaConsumer(*all_raw_topics(prefix), bootstrap_servers=bootstrap,
                                auto_offset_reset="earliest", group_id=None, max_partition_fetch_bytes=8 << 20)
    await consumer.start()
    seen = lines = 0
    t0 = cpu0 = None
    try:
        while seen < messages:
            for msgs in (await consumer.getmany(timeout_ms=500, max_records=1000)).values():
                t0 = t0 or time.perf_counter()
                cpu0 = cpu0 or time.process_time()
                for m in msgs:
                    seen += 1
                    for line in (io.BytesIO(m.value) if by_memchr else m.value.split(b"\n")):
                        orjson.loads(line)
                        lines += 1
    finally:
        await consumer.stop()
    return lines, time.perf_counter() - t0, time.process_time() - cpu0


def cpu_seconds(pid: int) -> float:
    """user + system CPU time of a process (Linux /proc), to account for who used the cores."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def runq_seconds(pid: int) -> float:
    """Seconds the process's threads were runnable but waited for a core (``/proc/.../schedstat``):
    how much of a run's wall time the other processes on the machine took from it."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[1])
        except (OSError, IndexError, ValueError):  # a thread that just ended
            continue
    return total / 1e9


class Usage:
    """CPU and run-queue seconds of some processes since ``start``."""

    def __init__(self, pids: list[int]) -> None:
        self.pids = pids
        self.cpu0 = [cpu_seconds(p) for p in pids]
        self.runq0 = [runq_seconds(p) for p in pids]

    def cpu(self) -> list[float]:
        return [cpu_seconds(p) - c for p, c in zip(self.pids, self.cpu0)]

    def runq(self) -> list[float]:
        return [runq_seconds(p) - c for p, c in zip(self.pids, self.runq0)]


async def run_workers(bootstrap: str, prefix: str, state: Path, batches: list, events: int, n: int,
                      broker_pid: int, notifications: int) -> dict:
    """``n`` workers of one group join first; then the raw batches are produced and timed
    from the first ingested batch to detection having applied every event ("applied").
    CPU is read again once every notification is out ("job": the minute closes, which start
    ``GATEWATCH_IDLE_SECONDS`` after the first message and end when every input is idle,
    and the idle wait itself)."""
    ports = [free_port() for _ in range(n)]
    state.mkdir(parents=True, exist_ok=True)
    procs = [start_worker(bootstrap, prefix, state / f"w{i}", ports[i], app_id=prefix, extra_env=SERVICE)
             for i in range(n)]
    try:
        while True:  # every raw partition and the partials partition owned, each once
            states = [await health(p) for p in ports]
            owned = [tp for s in states if s for tp in s["assigned"] if ".raw." in tp or tp.endswith(".partials/0")]
            if all(states) and all(s["assigned"] for s in states) and len(owned) == len(set(owned)) == 17:
                break
            await asyncio.sleep(0.2)
        usage = Usage([p.pid for p in procs] + [broker_pid])
        producing = asyncio.ensure_future(produce(bootstrap, prefix, batches))
        first = ingested = None
        while True:
            states = [await health(p) for p in ports]
            if first is None and any(s and s["batches"] for s in states):
                first = time.perf_counter()
            if first and ingested is None and sum(s["events_ingested"] for s in states if s) >= events:
                ingested = time.perf_counter()
            if ingested and any(s and s["detect"] and s["detect"]["events"] >= events for s in states):
                done = time.perf_counter()
                break
            await asyncio.sleep(0.02)
        await producing
        cpu, runq = usage.cpu(), usage.runq()
        # minute closes had begun before every event was applied (a run longer than the idle wait)
        closing = any(s["detect"]["closed_minute"] is not None for s in states if s and s["detect"])
        # the last minutes close once every input is idle (30 s): read while the workers run
        notes = await notifications_of(bootstrap, prefix, notifications)
        job = usage.cpu()
        detecting = [bool(s and s["detect"]) for s in states]
        return {"wall": done - first, "ingest_wall": ingested - first, "worker_cpu": cpu[:-1], "detecting": detecting,
                "broker_cpu": cpu[-1], "worker_runq": runq[:-1], "job_cpu": job[:-1], "job_broker_cpu": job[-1],
                "closing": closing, "notifications": notes}
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(30)


async def latency(bootstrap: str, tmp: Path, litellm: str) -> float:
    """Seconds from the closing batch entering Kafka to its notification on the topic."""
    out = io.BytesIO()
    replay([litellm], out)
    first = orjson.loads(out.getvalue().splitlines()[0])
    closes = _epoch(first["at"]) + 30.0  # the minute closes once events pass its end + lateness
    from connectors.formats import parse_bytes

    lines = lines_of(litellm)
    cut = next(i for i, line in enumerate(lines) if max(e.ts for e in parse_bytes(line)) >= closes)
    prefix = f"lat{uuid.uuid4().hex[:6]}"
    await ensure_topics(bootstrap, prefix, 4)
    before = [("litellm", b"\n".join(lines[k:min(k + BATCH, cut)])) for k in range(0, cut, BATCH)]
    await produce(bootstrap, prefix, before, partitions=1)  # one input: its time is the watermark
    port = free_port()
    proc = start_worker(bootstrap, prefix, tmp / prefix, port, app_id=prefix,
                        extra_env={"GATEWATCH_IDLE_SECONDS": str(LATENCY_IDLE)})
    # A line that is rejected keeps the input active (not idle: an all-idle input would be
    # taken for ended and every minute closed) without moving its event time.
    alive = asyncio.ensure_future(_keepalive(bootstrap, prefix))
    try:
        while True:  # caught up with everything before the closing record, start-up wait over
            h = await health(port)
            if (h and h["detect"] and h["detect"]["events"] >= h["events_ingested"] > 0
                    and h["batches"] >= len(before) and h["detect"]["watermark"] is not None):
                break
            await asyncio.sleep(0.1)
        assert not h["notifications"], "the minute closed before its closing record was sent"
        consumer = AIOKafkaConsumer(f"{prefix}.notifications", bootstrap_servers=bootstrap,
                                    auto_offset_reset="latest")
        await consumer.start()
        await consumer.seek_to_end()
        t0 = time.perf_counter()
        await produce(bootstrap, prefix, [("litellm", b"\n".join(lines[cut:cut + 1]))], partitions=1)
        while True:
            if any((await consumer.getmany(timeout_ms=20)).values()):
                elapsed = time.perf_counter() - t0
                break
        await consumer.stop()
        return elapsed
    finally:
        alive.cancel()
        proc.terminate()
        proc.wait(30)


async def _keepalive(bootstrap: str, prefix: str) -> None:
    while True:
        await produce(bootstrap, prefix, [("litellm", b'{"keepalive": true}')], partitions=1)
        await asyncio.sleep(1.0)


def _epoch(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


async def notifications_of(bootstrap: str, prefix: str, want: int) -> list[dict]:
    from tests.worker_helpers import read_topic

    return await read_topic(bootstrap, f"{prefix}.notifications", until=want, timeout=90, settle=2)


def latency_table(labels: dict, notes: list[dict]) -> list[str]:
    from collections import defaultdict

    from models.scoring import score

    delays = defaultdict(list)
    for row in score(labels, notes).rows:
        delays[row["category"]].append(row["delay_s"])
    out = ["| category | labelled | detected | max delay (log time) |", "|---|---:|---:|---:|"]
    for cat, ds in sorted(delays.items()):
        found = [d for d in ds if d is not None]
        worst = f"{max(found) / 60:.1f} min" if found else "-"
        out.append(f"| {cat} | {len(ds)} | {len(found)} | {worst} |")
    return out


async def main(args: argparse.Namespace) -> None:
    import json
    import statistics

    from gatewatch.simulate import simulate
    from models.pipeline import build_engine

    tmp = Path(tempfile.mkdtemp(prefix="bench-worker-"))
    simulate(tmp / "sim", hours=args.hours, rps=args.rps, incidents=args.incidents, workers=1, seed=1)
    labels = json.loads((tmp / "sim" / "labels.json").read_text())
    files = [str(tmp / "sim" / f"{n}.ndjson.gz") for n in ("litellm", "fly", "langfuse")]
    engine, out = build_engine(), io.BytesIO()  # rules and models, as the worker runs them
    replay(files, out, engine=engine)
    want = [orjson.loads(line) for line in out.getvalue().splitlines()]
    broker = TansuBroker(tansu_binary()).start()
    rounds, lines = [], 0
    try:
        batches = batches_of(files)
        for r in range(args.rounds):  # baseline, 1 worker, 2 workers; again: load changes show as spread
            prefixes = {n: f"bench{n}w{uuid.uuid4().hex[:6]}" for n in (0, 1, 2)}
            for prefix in prefixes.values():
                await ensure_topics(broker.bootstrap, prefix, 4)
            await produce(broker.bootstrap, prefixes[0], batches)
            load = os.getloadavg()[0]
            lines, base_s, base_cpu = await baseline(broker.bootstrap, prefixes[0], len(batches))
            _, memchr_s, memchr_cpu = await baseline(broker.bootstrap, prefixes[0], len(batches), by_memchr=True)
            runs = {0: {"wall": base_s, "worker_cpu": [base_cpu], "load": load, "memchr_cpu": memchr_cpu,
                        "memchr_wall": memchr_s}}
            for n in (1, 2):
                prefix = prefixes[n]
                load = os.getloadavg()[0]
                runs[n] = await run_workers(broker.bootstrap, prefix, tmp / prefix, batches, engine.events, n,
                                            broker.proc.pid, len(want))
                runs[n]["load"] = load
                runs[n]["same"] = same_notes(runs[n]["notifications"], want)
                if runs[n]["same"] != "yes":  # kept for a look
                    (tmp / f"notifications-{r}-{n}.json").write_bytes(
                        orjson.dumps({"got": runs[n]["notifications"], "want": want}))
                    print(f"notifications of {n} worker(s) differ from replay's: {tmp}/notifications-{r}-{n}.json")
            rounds.append(runs)
        try:
            lat = await asyncio.wait_for(latency(broker.bootstrap, tmp, files[0]), 90)
        except asyncio.TimeoutError:  # reported, not hidden
            lat = float("nan")
    finally:
        broker.stop()
    print(f"\n{len(batches)} raw messages of <= {BATCH} lines, {lines:,} lines, {engine.events:,} counted "
          f"events, {len(want)} notifications; Tansu on the same {os.cpu_count()} cores; {args.rounds} rounds\n")
    from gatewatch.compiled import describe

    print(describe() + " (the workers run the same install)")
    print(table(rounds, lines))
    med = statistics.median
    print(f"\nmedians over {len(rounds)} rounds: 1 worker / raw consume + parse = "
          f"{med(base_ratio(r, 1, 'worker_cpu') for r in rounds):.2f} in CPU time (applied), "
          f"{med(base_ratio(r, 1, 'job_cpu') for r in rounds):.2f} with the minute closes (job), "
          f"{med(r[0]['wall'] / r[1]['wall'] for r in rounds):.2f} wall; against the baseline that cuts lines as "
          f"the worker does: {med(memchr_ratio(r, 1, 'worker_cpu') for r in rounds):.2f} in CPU time (applied), "
          f"{med(memchr_ratio(r, 1, 'job_cpu') for r in rounds):.2f} (job)")
    print(f"scale-out, 2 workers / 1: CPU-bound (1 worker's CPU s / the busiest of 2 workers' CPU s) "
          f"{med(scale(r, 'worker_cpu') for r in rounds):.2f}x applied, {med(scale(r, 'job_cpu') for r in rounds):.2f}x "
          f"job; wall {med(r[1]['wall'] / r[2]['wall'] for r in rounds):.2f}x "
          f"(ingest only {med(r[1]['ingest_wall'] / r[2]['ingest_wall'] for r in rounds):.2f}x)")
    print(f"\nend-to-end latency, closing record into Kafka -> notification on the topic: {lat * 1000:,.0f} ms\n")
    print("\n".join(latency_table(labels, rounds[0][1]["notifications"])))


def same_notes(got: list[dict], want: list[dict]) -> str:
    """"yes": equal; "pages": the same notifications (incident, seq, status, time, title) with
    other fields (explanations, scores) different; "no"."""
    if got == want:
        return "yes"
    fields = ("incident", "seq", "status", "at", "title", "severity")
    if [[n.get(f) for f in fields] for n in got] == [[n.get(f) for f in fields] for n in want]:
        return f"pages ({sum(g != w for g, w in zip(got, want))} of {len(want)} differ in other fields)"
    return "no"


def base_ratio(runs: dict, n: int, key: str) -> float:
    """Lines per CPU s of ``n`` workers over lines per CPU s of the raw consumer (same round)."""
    return runs[0]["worker_cpu"][0] / sum(runs[n][key])


def memchr_ratio(runs: dict, n: int, key: str) -> float:
    """``base_ratio`` against the baseline that cuts lines as the worker does."""
    return runs[0]["memchr_cpu"] / sum(runs[n][key])


def scale(runs: dict, key: str) -> float:
    return sum(runs[1][key]) / max(runs[2][key])


def table(rounds: list[dict], lines: int) -> str:
    out = ["| round | path | load avg | lines/s (wall) | ratio (wall) | worker CPU s (applied) | lines per CPU s "
           "| ratio (CPU) | waited for a core s | worker CPU s (job) | ratio (CPU, job) | broker CPU s "
           "| notifications = replay |",
           "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for i, runs in enumerate(rounds, 1):
        base = runs[0]
        out.append(f"| {i} | raw aiokafka consume + orjson.loads | {base['load']:.1f} | {lines / base['wall']:,.0f} "
                   f"| 1.00 | {base['worker_cpu'][0]:.2f} | {lines / base['worker_cpu'][0]:,.0f} | 1.00 | | | | | |")
        out.append(f"| {i} | the same, lines cut by BytesIO (as the worker cuts them) | | {lines / base['memchr_wall']:,.0f} "
                   f"| {base['wall'] / base['memchr_wall']:.2f} | {base['memchr_cpu']:.2f} "
                   f"| {lines / base['memchr_cpu']:,.0f} | {base['worker_cpu'][0] / base['memchr_cpu']:.2f} | | | | | |")
        for n in (1, 2):
            r = runs[n]
            cpu = " + ".join(f"{c:.1f}{' (detect)' if d and n > 1 else ''}" for c, d in zip(r["worker_cpu"], r["detecting"]))
            job = " + ".join(f"{c:.1f}" for c in r["job_cpu"])
            note = " (closes began)" if r["closing"] else ""
            out.append(f"| {i} | {n} worker{'s' if n > 1 else ''}{note} | {r['load']:.1f} | {lines / r['wall']:,.0f} "
                       f"| {base['wall'] / r['wall']:.2f} | {cpu} | {lines / sum(r['worker_cpu']):,.0f} "
                       f"| {base_ratio(runs, n, 'worker_cpu'):.2f} | {' + '.join(f'{q:.1f}' for q in r['worker_runq'])} "
                       f"| {job} | {base_ratio(runs, n, 'job_cpu'):.2f} | {r['broker_cpu']:.1f} | {r['same']} |")
    return "\n".join(out)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=6.0)
    parser.add_argument("--rps", type=float, default=4.0)
    parser.add_argument("--rounds", type=int, default=2, help="baseline/1 worker/2 workers rounds (default 2)")
    parser.add_argument("--incidents", default=INCIDENTS)
    asyncio.run(main(parser.parse_args()))
