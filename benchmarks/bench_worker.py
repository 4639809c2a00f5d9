"""Worker throughput and latency through Kafka (Tansu), against raw aiokafka in the same run.

    python benchmarks/bench_worker.py [--hours 6] [--rps 4]

1. ``gatewatch simulate`` writes LiteLLM/Fly/Langfuse files; their lines go to the raw
   topics as NDJSON batches of 500 (what ``gatewatch tail`` sends).
2. baseline: one aiokafka consumer reads every raw message and ``orjson.loads`` each line.
3. worker: a ``gatewatch worker`` subprocess catches up on the same topics; events/s is
   measured from its first ingested batch to the moment detection has applied every event
   (the group join is not counted).
4. latency: LiteLLM only (one input, so its time alone is the watermark), everything up to
   the first minute that fires is sent and applied; then the one batch that closes that
   minute is sent, and the time until its notification is on the notifications topic is
   measured (record entering Kafka → notification out; Slack/webhook delivery comes on top).
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


def lines_of(path: str) -> list[bytes]:
    return [line.rstrip(b"\n") for line in open_input(path) if line.strip()]


async def produce(bootstrap: str, prefix: str, batches: list[tuple[str, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=False,
                                linger_ms=5, max_request_size=8 << 20)
    await producer.start()
    try:
        for i, (family, value) in enumerate(batches):
            await producer.send(raw_topic(family, prefix), value, partition=i % 4)
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


async def baseline(bootstrap: str, prefix: str, messages: int) -> tuple[int, float]:
    consumer = AIOKafkaConsumer(*all_raw_topics(prefix), bootstrap_servers=bootstrap,
                                auto_offset_reset="earliest", group_id=None, max_partition_fetch_bytes=8 << 20)
    await consumer.start()
    seen = lines = 0
    t0 = None
    try:
        while seen < messages:
            for msgs in (await consumer.getmany(timeout_ms=500, max_records=1000)).values():
                t0 = t0 or time.perf_counter()
                for m in msgs:
                    seen += 1
                    for line in m.value.split(b"\n"):
                        orjson.loads(line)
                        lines += 1
    finally:
        await consumer.stop()
    return lines, time.perf_counter() - t0


async def worker_catch_up(bootstrap: str, prefix: str, state: Path, events: int):
    port = free_port()
    proc = start_worker(bootstrap, prefix, state, port, app_id=prefix)
    first = None
    while True:
        h = await health(port)
        if h and h["batches"] and first is None:
            first = time.perf_counter()
        if h and h["detect"] and h["detect"]["events"] >= events:
            return time.perf_counter() - first, proc
        await asyncio.sleep(0.05)



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
    await produce(bootstrap, prefix, [(f, v) for f, v in before])
    port = free_port()
    proc = start_worker(bootstrap, prefix, tmp / prefix, port, app_id=prefix,
                        extra_env={"GATEWATCH_IDLE_SECONDS": "600"})
    try:
        while True:  # caught up with everything before the closing record
            h = await health(port)
            if h and h["detect"] and h["detect"]["events"] >= h["events_ingested"] > 0 and h["batches"] >= len(before):
                break
            await asyncio.sleep(0.1)
        consumer = AIOKafkaConsumer(f"{prefix}.notifications", bootstrap_servers=bootstrap,
                                    auto_offset_reset="latest")
        await consumer.start()
        await consumer.seek_to_end()
        t0 = time.perf_counter()
        await produce(bootstrap, prefix, [("litellm", b"\n".join(lines[cut:cut + 1]))])
        while True:
            if any((await consumer.getmany(timeout_ms=20)).values()):
                elapsed = time.perf_counter() - t0
                break
        await consumer.stop()
        return elapsed
    finally:
        proc.terminate()
        proc.wait(30)


def _epoch(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


async def main(args: argparse.Namespace) -> None:
    from gatewatch.simulate import simulate
    from models.engine import Engine

    tmp = Path(tempfile.mkdtemp(prefix="bench-worker-"))
    simulate(tmp / "sim", hours=args.hours, rps=args.rps, incidents="provider_outage", workers=1, seed=1)
    files = [str(tmp / "sim" / f"{n}.ndjson.gz") for n in ("litellm", "fly", "langfuse")]
    engine = Engine()
    replay(files, io.BytesIO(), engine=engine)
    broker = TansuBroker(tansu_binary()).start()
    try:
        prefix = f"bench{uuid.uuid4().hex[:6]}"
        await ensure_topics(broker.bootstrap, prefix, 4)
        batches = batches_of(files)
        await produce(broker.bootstrap, prefix, batches)
        lines, base_s = await baseline(broker.bootstrap, prefix, len(batches))
        worker_s, proc = await worker_catch_up(broker.bootstrap, prefix, tmp / "w", engine.events)
        proc.terminate()
        proc.wait(30)
        try:
            lat = await asyncio.wait_for(latency(broker.bootstrap, tmp, files[0]), 90)
        except asyncio.TimeoutError:  # reported, not hidden: see the report of issue 5
            lat = float("nan")
    finally:
        broker.stop()
    rows = [("raw aiokafka consume + orjson.loads", lines, base_s),
            ("gatewatch worker (ingest+detect)", lines, worker_s)]
    print(f"\n{len(batches)} raw messages of <= {BATCH} lines, {lines:,} lines, "
          f"{engine.events:,} counted events, Tansu, {os.cpu_count()} cores\n")
    print(f"| {'path':<38} | {'lines/s':>10} | {'seconds':>8} |")
    print(f"| {'-' * 38} | {'-' * 10}:| {'-' * 8}:|")
    for name, n, s in rows:
        print(f"| {name:<38} | {n / s:>10,.0f} | {s:>8.2f} |")
    print(f"\nend-to-end latency, closing record into Kafka -> notification on the topic: {lat * 1000:,.0f} ms")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=6.0)
    parser.add_argument("--rps", type=float, default=4.0)
    asyncio.run(main(parser.parse_args()))
