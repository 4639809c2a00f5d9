"""Cross-source request dedup across a takeover, on the real broker (Tansu).

The LiteLLM callback and SpendLogs both carry every request, to the raw partition of its id
(the real ``BatchProducer`` routing). One ingest loop counts the callback copies and commits;
the partitions then change owner (a fresh loop, as after a restart, or a second member, as in
a rebalance) before the SpendLogs copies are read. The new owner reads the partition's tail
below its committed offset again (``streams.ingest.LookBack``) and recalls the ids there, so
each request is counted once; without the look-back the SpendLogs copies were counted again.
"""

from __future__ import annotations

import asyncio
import signal
import time
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from connectors.kafka import BatchProducer, encode_batch, ensure_topics, partition_for, raw_topic, read_back
from models.pipeline import build_engine
from streams.ingest import IngestLoop, LookBack
from streams.stages import DetectStage
from streams.topics import topic_names
from tests.engine_helpers import T0
from tests.test_worker_ingest import _committed, _loop, _setup
from tests.worker_helpers import (
    balanced, free_port, health, litellm_payload, read_topic, spendlog_row, start_worker, wait_for,
)

pytestmark = [pytest.mark.integration]
PARTITIONS = 2


def _requests(n: int, tag: str = "") -> list[tuple[str, float]]:
    return [(f"chatcmpl-{tag}{uuid.uuid4().hex}", T0 + i) for i in range(n)]


async def _callback(bootstrap: str, prefix: str, requests: list[tuple[str, float]], body: int = 25) -> None:
    """The callback copies, posted in bodies as LiteLLM's ``generic_api`` logger does."""
    producer = BatchProducer(bootstrap, "litellm-http", prefix=prefix)
    await producer.start()
    try:
        for k in range(0, len(requests), body):
            part = requests[k:k + body]
            await producer.send_records("litellm", [litellm_payload(ts, request_id=rid) for rid, ts in part],
                                        key=b"litellm-http", routes=[rid for rid, _ in part])
    finally:
        await producer.stop()


async def _spendlogs(bootstrap: str, prefix: str, requests: list[tuple[str, float]], poll: int = 40) -> None:
    """The SpendLogs copies, one flush per tailer poll."""
    producer = BatchProducer(bootstrap, "litellm-db", prefix=prefix, linger=60)
    await producer.start()
    try:
        for k in range(0, len(requests), poll):
            for rid, ts in requests[k:k + poll]:
                await producer.add("litellm", spendlog_row(ts, rid), key=b"litellm-db", route=rid)
            await producer.flush()
    finally:
        await producer.stop()


async def _ends(bootstrap: str, prefix: str) -> list[int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        tps = [TopicPartition(raw_topic("litellm", prefix), p) for p in range(PARTITIONS)]
        ends = await consumer.end_offsets(tps)
        return [ends[tp] for tp in tps]
    finally:
        await consumer.stop()


async def _ingest(loop: IngestLoop, done: list, count: int, timeout: float = 60.0,
                  linger: float = 0.0) -> None:
    """Run ``loop`` until it ingested ``count`` raw messages (and ``linger`` s more), then stop it
    (it commits)."""
    task = asyncio.ensure_future(loop.run())
    try:
        reached = await wait_for(lambda: _at_least(len(done), count), timeout, every=0.1)
        assert reached, f"ingested {len(done)} of {count} raw messages"
        await asyncio.sleep(linger)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def _at_least(value: int, n: int) -> bool:
    return value >= n


def _events(done: list) -> int:
    return sum(msg["events"] for msg, _ in done)


async def _counted_once(bootstrap: str, prefix: str, messages: int) -> int:
    """Events detection applies from everything on the partials topic (raw ids deduplicated)."""
    stage = DetectStage.new(build_engine(), idle_seconds=30)
    partials = await read_topic(bootstrap, topic_names(prefix).partials, until=messages, timeout=15,
                                settle=0.5, flatten=True)
    for msg in partials:
        stage.on_partials(msg, now=0.0)
    return stage.events


async def _first_owner(bootstrap: str, prefix: str, requests: list[tuple[str, float]]) -> tuple[list, int]:
    """A loop that ingests the callback copies, commits and stops; (what it ingested, raw messages)."""
    await _setup(bootstrap, prefix)
    await _callback(bootstrap, prefix, requests)
    first = sum(await _ends(bootstrap, prefix))
    done: list = []
    await _ingest(_loop(bootstrap, prefix, done), done, first)
    assert _events(done) == len(requests)
    assert await _committed(bootstrap, prefix) == await _ends(bootstrap, prefix)
    return done, first


async def test_a_new_owner_counts_the_second_copy_of_a_request_counted_before_it_once(kafka_bootstrap):
    prefix, requests = f"lb{uuid.uuid4().hex[:8]}", _requests(120)
    _, first = await _first_owner(kafka_bootstrap, prefix, requests)
    await _spendlogs(kafka_bootstrap, prefix, requests)
    second = sum(await _ends(kafka_bootstrap, prefix)) - first
    done: list = []
    loop = _loop(kafka_bootstrap, prefix, done)  # a fresh loop: a restarted worker, an empty memory
    await _ingest(loop, done, second)
    assert _events(done) == 0  # every SpendLogs copy dropped (before: each counted a second time)
    assert loop.stage.duplicates == len(requests) and loop.stage.recalled == len(requests)
    assert await _counted_once(kafka_bootstrap, prefix, first + second) == len(requests)


async def test_the_look_back_alone_counts_and_sends_nothing(kafka_bootstrap):
    prefix, requests = f"lb{uuid.uuid4().hex[:8]}", _requests(60)
    _, first = await _first_owner(kafka_bootstrap, prefix, requests)
    late = _requests(1, "late")
    await _callback(kafka_bootstrap, prefix, late)  # one new request: one new raw message
    done: list = []
    loop = _loop(kafka_bootstrap, prefix, done)
    await _ingest(loop, done, 1, linger=2.0)  # anything else it would send or count arrives meanwhile
    assert [(msg["events"], rejects) for msg, rejects in done] == [(1, [])]
    assert loop.stage.duplicates == 0
    # It read back the one partition it ingested from (the other has nothing new: not read).
    owner = done[0][0]["id"][1]
    assert loop.stage.recalled == sum(1 for rid, _ in requests if partition_for(rid, PARTITIONS) == owner) > 0
    partials = await read_topic(kafka_bootstrap, topic_names(prefix).partials, until=first + 1, timeout=10,
                                settle=1.0, flatten=True)
    assert len(partials) == first + 1
    assert await read_topic(kafka_bootstrap, topic_names(prefix).rejects, until=1, timeout=1, settle=0) == []


async def _commit(bootstrap: str, prefix: str, offsets: list[int]) -> None:
    """Set the ingest group's committed offsets, as if its owner's last commit had been lost
    (by a member of the group: Tansu refuses a commit from outside it)."""
    consumer = _loop(bootstrap, prefix, []).consumer
    await consumer.start()
    try:
        while not consumer.assignment():
            await consumer.getmany(timeout_ms=200)
        tps = [TopicPartition(raw_topic("litellm", prefix), p) for p in range(PARTITIONS)]
        await consumer.commit(dict(zip(tps, offsets)))
    finally:
        await consumer.stop()


async def test_what_is_read_again_from_the_committed_offset_counts_once(kafka_bootstrap):
    """The look-back ends at the committed offset: the messages at and after it are ingested
    again (their ids, recalled or not, are their own, not duplicates) and detection counts each
    request once, although the first owner had sent their partials too."""
    prefix, requests = f"lb{uuid.uuid4().hex[:8]}", _requests(80)
    done_a, first = await _first_owner(kafka_bootstrap, prefix, requests)
    ends = await _ends(kafka_bootstrap, prefix)
    await _commit(kafka_bootstrap, prefix, [end - 1 for end in ends])
    assert await _committed(kafka_bootstrap, prefix) == [end - 1 for end in ends]
    again = sum(msg["events"] for msg, _ in done_a if msg["id"][2] == ends[msg["id"][1]] - 1)
    await _spendlogs(kafka_bootstrap, prefix, requests)
    second = sum(await _ends(kafka_bootstrap, prefix)) - first + PARTITIONS
    done: list = []
    loop = _loop(kafka_bootstrap, prefix, done)
    await _ingest(loop, done, second)
    assert 0 < again < len(requests) and _events(done) == again  # the callback messages read again
    assert loop.stage.duplicates == len(requests)  # every SpendLogs copy
    assert loop.stage.recalled == len(requests) - again  # the look-back stops below the committed offset
    assert await _counted_once(kafka_bootstrap, prefix, first + second) == len(requests)


async def _produce_stamped(bootstrap: str, topic: str, items: list[tuple[bytes, int]]) -> None:
    """Values with their own timestamps (ms), to partition 0."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=False)
    await producer.start()
    try:
        futures = [await producer.send(topic, value, partition=0, timestamp_ms=ts) for value, ts in items]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def test_read_back_is_bounded_by_time_by_count_and_by_the_partition_start(kafka_bootstrap):
    topic, now = f"rb{uuid.uuid4().hex[:8]}", int(time.time() * 1000)
    # 200 messages stamped 10 min ago, then 100 stamped in the last seconds (offsets 0..299).
    await _produce_stamped(kafka_bootstrap, topic, [(b"old %d" % i, now - 600_000 + i) for i in range(200)]
                           + [(b"new %d" % i, now - 1_000 + i) for i in range(100)])
    tp = TopicPartition(topic, 0)
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        async def offsets(end: int, since_ms: int, max_messages: int) -> list[int]:
            messages = await read_back(consumer, tp, end, since_ms=since_ms, max_messages=max_messages)
            return [m.offset for m in messages]

        assert await offsets(300, now - 300_000, 2000) == list(range(200, 300))  # by time, over several steps
        assert await offsets(300, 0, 50) == list(range(250, 300))  # by count
        assert await offsets(150, 0, 2000) == list(range(150))  # down to the partition's start
        assert await offsets(0, 0, 2000) == []  # nothing below: a partition with nothing committed
        started = time.perf_counter()
        assert await offsets(1, now - 300_000, 2000) == []  # the one message below is too old
        assert time.perf_counter() - started < 5
    finally:
        await consumer.stop()


async def test_a_request_older_than_the_look_back_is_counted_again(kafka_bootstrap):
    """The bound, end to end: the callback copies stamped (by the broker's CreateTime) beyond
    ``LookBack.seconds`` before the first new message are not recalled, so their SpendLogs
    copies count again; those within it are dropped."""
    prefix, now = f"lb{uuid.uuid4().hex[:8]}", int(time.time() * 1000)
    await _setup(kafka_bootstrap, prefix)
    old, recent = _requests(6, "old"), _requests(6, "new")
    topic = raw_topic("litellm", prefix)
    await _produce_stamped(kafka_bootstrap, topic, [
        (encode_batch([litellm_payload(ts, request_id=rid)]), now - (200_000 if (rid, ts) in old else 10_000))
        for rid, ts in old + recent])
    done: list = []
    await _ingest(_loop(kafka_bootstrap, prefix, done), done, 12)
    await _produce_stamped(kafka_bootstrap, topic, [(spendlog_row(ts, rid), now) for rid, ts in old + recent])
    done = []
    loop = _loop(kafka_bootstrap, prefix, done, lookback=LookBack(seconds=120))
    await _ingest(loop, done, 12)
    assert (_events(done), loop.stage.duplicates, loop.stage.recalled) == (6, 6, 6)


async def test_after_a_rebalance_each_request_counts_once_and_the_old_owner_goes_on(kafka_bootstrap):
    """A second member joins: one raw.litellm partition moves to it, the first member keeps
    the other (and does not read it back: its memory holds it). Then the SpendLogs copies."""
    prefix, requests = f"lb{uuid.uuid4().hex[:8]}", _requests(120)
    await _setup(kafka_bootstrap, prefix)
    await _callback(kafka_bootstrap, prefix, requests)
    first = sum(await _ends(kafka_bootstrap, prefix))
    done_a: list = []
    done_b: list = []
    a = _loop(kafka_bootstrap, prefix, done_a)
    b = _loop(kafka_bootstrap, prefix, done_b)
    tasks = [asyncio.ensure_future(a.run())]
    try:
        assert await wait_for(lambda: _at_least(len(done_a), first), timeout=60)
        assert _events(done_a) == len(requests)
        tasks.append(asyncio.ensure_future(b.run()))
        litellm = raw_topic("litellm", prefix)

        async def split() -> bool:
            mine = [[tp for tp in loop.assignment() if tp.startswith(litellm)] for loop in (a, b)]
            return all(len(m) == 1 for m in mine)

        assert await wait_for(split, timeout=60), (a.assignment(), b.assignment())
        await _spendlogs(kafka_bootstrap, prefix, requests)
        second = sum(await _ends(kafka_bootstrap, prefix)) - first
        assert await wait_for(lambda: _at_least(len(done_a) + len(done_b) - first, second), timeout=60)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    assert _events(done_a[first:]) + _events(done_b) == 0  # before: B counted its partition's copies again
    assert done_a[first:] and done_b  # both ingested their SpendLogs copies
    assert a.stage.duplicates + b.stage.duplicates == len(requests)
    assert a.stage.recalled == 0 and b.stage.recalled > 0
    assert await _counted_once(kafka_bootstrap, prefix, first + second) == len(requests)


def test_the_look_back_comes_from_the_worker_settings(monkeypatch):
    from streams.agents import _lookback
    from streams.app import WorkerSettings

    assert (LookBack().seconds, LookBack().messages) == (300.0, 2000)
    monkeypatch.setenv("GATEWATCH_DEDUP_LOOKBACK_SECONDS", "120")
    monkeypatch.setenv("GATEWATCH_DEDUP_LOOKBACK_MESSAGES", "500")
    monkeypatch.setenv("GATEWATCH_TOPIC_PREFIX", "gw")
    lookback = _lookback(WorkerSettings())
    assert lookback == LookBack(120.0, 500, frozenset({"gw.raw.litellm"}))
    assert lookback.covers("gw.raw.litellm") and not lookback.covers("gw.raw.fly")
    assert not LookBack(seconds=0).covers("gw.raw.litellm")


@pytest.mark.slow
async def test_a_killed_worker_and_its_successor_count_each_request_once(kafka_bootstrap, tmp_path):
    """Whole ``gatewatch worker`` processes (Faust, detection and its snapshot table): worker A
    counts the callback copies, commits them, and is SIGKILLed; worker B (a fresh process)
    takes every partition over, restores detection, then reads the SpendLogs copies."""
    prefix, requests = f"lbw{uuid.uuid4().hex[:8]}", _requests(200)
    await ensure_topics(kafka_bootstrap, prefix, PARTITIONS)
    ports, workers = [free_port(), free_port()], []
    env = {"GATEWATCH_DEDUP_LOOKBACK_SECONDS": "600"}  # the setting reaches the loop (default 300 s)
    group = f"{prefix}-{prefix}-ingest"  # the worker's: <app id>-<topic prefix>-ingest
    try:
        workers.append(start_worker(kafka_bootstrap, prefix, tmp_path / "a", ports[0], prefix, env))
        assert await wait_for(lambda: balanced(ports[:1], PARTITIONS), timeout=60), "A did not join"
        await _callback(kafka_bootstrap, prefix, requests)
        ends = await _ends(kafka_bootstrap, prefix)
        assert await wait_for(lambda: _detected(ports[0], "events", len(requests)), timeout=90)

        async def committed() -> bool:
            return await _committed(kafka_bootstrap, prefix, PARTITIONS, group) == ends

        assert await wait_for(committed, timeout=30), "A did not commit what it ingested"
        await asyncio.sleep(2)  # a snapshot (every second here) covers them
        workers[0].send_signal(signal.SIGKILL)
        workers[0].wait(10)
        workers.append(start_worker(kafka_bootstrap, prefix, tmp_path / "b", ports[1], prefix, env))
        assert await wait_for(lambda: balanced(ports[1:], PARTITIONS), timeout=90), "B did not take over"
        await _spendlogs(kafka_bootstrap, prefix, requests)
        second = sum(await _ends(kafka_bootstrap, prefix)) - sum(ends)
        assert await wait_for(lambda: _detected(ports[1], "batches", second), timeout=90), "B did not ingest"
        await asyncio.sleep(3)  # a request counted twice would arrive now
        state = await health(ports[1])
    finally:
        for w in workers:
            if w.poll() is None:
                w.terminate()
                w.wait(30)
    assert state["detect"]["events"] == len(requests)  # before: 2x, every SpendLogs copy counted again
    assert state["events_ingested"] == 0 and state["request_duplicates"] == len(requests)
    assert state["request_ids_recalled"] == len(requests)


async def _detected(port: int, key: str, want: int) -> bool:
    state = await health(port)
    if not state or state["detect"] is None:
        return False
    return (state["detect"]["events"] if key == "events" else state[key]) >= want
