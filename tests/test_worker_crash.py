"""Crash test: two workers share 4-partition raw topics; the one running detection is
SIGKILLed mid-stream; the survivor takes its partitions over, restores the engine from
the snapshot table, and the result is still exactly replay's: every event counted once,
every notification delivered to the webhook, none twice.

``GATEWATCH_IDLE_SECONDS`` (15 s here) must exceed the failover time (session timeout,
6 s here, plus the rebalance): the dead worker's partitions must hold the watermark back
while nobody reads them, or their data would arrive after its minutes closed.
"""

from __future__ import annotations

import asyncio
import itertools
import signal
import uuid

import pytest
from aiokafka import AIOKafkaProducer

from connectors.file_source import route
from connectors.files import open_input
from connectors.kafka import HEADER_BATCH, ensure_topics, raw_topic
from models.pipeline import build_engine
from tests.worker_helpers import (
    WebhookReceiver, balanced, detect_owner, free_port, health, replay_notes, simulate_small, start_worker, wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]
PARTITIONS = 4


def batches(paths: list[str], size: int = 250):
    """(family, partition, batch id, value): each file cut in batches dealt round-robin over
    the partitions, so every partition moves through time like the source does."""
    per_file = []
    for path in paths:
        lines = [line.rstrip(b"\n") for line in open_input(path) if line.strip()]
        family = route(lines[0])
        per_file.append([(family, i % PARTITIONS, f"{family}-{i}", b"\n".join(lines[k:k + size]))
                         for i, k in enumerate(range(0, len(lines), size))])
    for group in itertools.zip_longest(*per_file):
        yield from filter(None, group)


async def produce(bootstrap: str, prefix: str, items: list, pause: float) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=False)
    await producer.start()
    try:
        for family, partition, batch_id, value in items:
            await producer.send_and_wait(raw_topic(family, prefix), value, partition=partition,
                                         headers=[(HEADER_BATCH, batch_id.encode())])
            await asyncio.sleep(pause)
    finally:
        await producer.stop()


async def test_survivor_takes_over_and_nothing_is_lost_or_sent_twice(kafka_bootstrap, tmp_path):
    files = simulate_small(tmp_path / "sim")
    engine = build_engine()  # rules and models, as `gatewatch replay` and the worker run
    want = replay_notes(files, engine)
    prefix = f"crash{uuid.uuid4().hex[:8]}"
    await ensure_topics(kafka_bootstrap, prefix, PARTITIONS)
    items = list(batches(files))
    env = {"GATEWATCH_IDLE_SECONDS": "15"}
    async with WebhookReceiver() as hook:
        env["GATEWATCH_WEBHOOK_URL"] = hook.url
        ports = [free_port(), free_port()]
        workers = []
        try:
            # One after the other, as a deployment scales out; then the kill hits a
            # settled group, not a first join.
            for i in range(2):
                workers.append(start_worker(kafka_bootstrap, prefix, tmp_path / f"w{i}", ports[i],
                                            app_id=prefix, extra_env=env))
                assert await wait_for(lambda: balanced(ports[:i + 1], PARTITIONS), timeout=60), "group did not settle"
            owner = await wait_for(lambda: detect_owner(ports), timeout=30)
            assert owner is not None, f"no worker started detection: {[await health(p) for p in ports]}"
            survivor = 1 - owner
            producing = asyncio.ensure_future(produce(kafka_bootstrap, prefix, items, pause=0.08))
            await wait_for(lambda: _applied(ports[owner], 2000), timeout=60)
            workers[owner].send_signal(signal.SIGKILL)  # mid-stream, no goodbye
            await producing
            done = await wait_for(lambda: _all_delivered(hook, want), timeout=120)
            await asyncio.sleep(3)  # anything sent twice would arrive now
            state = await health(ports[survivor])
        finally:
            for w in workers:
                if w.poll() is None:
                    w.terminate()
                    w.wait(30)
    keys = [key for key, _ in hook.received]
    if state["detect"]["events"] != engine.events:  # kept for the post-mortem
        import json
        from tests.worker_helpers import read_topic
        partials = await read_topic(kafka_bootstrap, f"{prefix}.partials", until=10**9, timeout=8, flatten=True)
        (tmp_path / "partials.json").write_text(json.dumps(
            [[m.get("id"), m.get("events")] for m in partials if "id" in m]))
        (tmp_path / "state.json").write_text(json.dumps(state))
    if sorted(keys) != sorted(f"{n['incident']}:{n['seq']}" for n in want):  # kept for the post-mortem
        import json
        (tmp_path / "mismatch.json").write_text(json.dumps({"got": [b for _, b in hook.received], "want": want}))
    assert done, f"delivered {len(keys)} of {len(want)}"
    assert len(keys) == len(set(keys)), "a notification was delivered twice"
    assert sorted(keys) == sorted(f"{n['incident']}:{n['seq']}" for n in want)
    assert sorted((b["incident"], b["seq"], b["status"]) for _, b in hook.received) == sorted(
        (n["incident"], n["seq"], n["status"]) for n in want)
    assert state["restored"] >= 1  # the survivor resumed from the snapshot table
    assert state["detect"]["events"] == engine.events  # every event counted exactly once


async def _applied(port: int, events: int) -> bool:
    state = await health(port)
    return bool(state and state["detect"] and state["detect"]["events"] >= events)


async def _all_delivered(hook: WebhookReceiver, want: list[dict]) -> bool:
    return len(hook.received) >= len(want)
