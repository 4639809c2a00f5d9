"""The ingest loop on the real broker (Tansu): raw batches in, one partials message per
batch (a fetch's together in one Kafka message) and the rejects out, and the raw offsets
committed only after those are stored, so a second loop of the same group starts where the
first one stopped."""

from __future__ import annotations

import asyncio
import uuid

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from connectors.kafka import encode_batch, ensure_topics, raw_topic
from models.pipeline import build_engine
from streams.ingest import IngestLoop
from streams.stages import DetectStage, IngestStage
from streams.topics import topic_names
from tests.engine_helpers import T0
from tests.kafka_broker import AckDropper
from tests.worker_helpers import litellm_payload, read_topic, wait_for

pytestmark = [pytest.mark.integration]


async def _setup(bootstrap: str, prefix: str) -> None:
    await ensure_topics(bootstrap, prefix, 2)
    names = topic_names(prefix)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(names.partials, 1, 1), NewTopic(names.rejects, 1, 1)])
    finally:
        await admin.close()


async def _produce(bootstrap: str, prefix: str, values: list[bytes]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=False)
    await producer.start()
    try:
        for i, value in enumerate(values):
            await producer.send_and_wait(raw_topic("litellm", prefix), value, partition=i % 2)
    finally:
        await producer.stop()


def _loop(bootstrap: str, prefix: str, done: list, **kw) -> IngestLoop:
    names = topic_names(prefix)
    return IngestLoop([bootstrap], names.raw, f"{prefix}-ingest", names.partials, names.rejects, IngestStage(),
                      session_timeout=6.0, on_done=lambda msg, rejects: done.append((msg, rejects)), **kw)


async def _committed(bootstrap: str, prefix: str, partitions: int = 2,
                     group: str | None = None) -> list[int | None]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group or f"{prefix}-ingest")
    await consumer.start()
    try:
        topic = raw_topic("litellm", prefix)
        return [await consumer.committed(TopicPartition(topic, p)) for p in range(partitions)]
    finally:
        await consumer.stop()


async def _run_until(loop: IngestLoop, done: list, count: int, timeout: float) -> None:
    task = asyncio.ensure_future(loop.run())
    try:
        for _ in range(int(timeout * 10)):
            if len(done) >= count:
                break
            await asyncio.sleep(0.1)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_ingest_commits_only_what_it_stored_and_a_new_member_resumes_there(kafka_bootstrap):
    prefix = f"ing{uuid.uuid4().hex[:8]}"
    await _setup(kafka_bootstrap, prefix)
    batches = [encode_batch([litellm_payload(T0 + 10 * b + i, request_id=f"r{b}-{i}") for i in range(5)])
               for b in range(4)]
    batches[1] += b"\nnot json"
    await _produce(kafka_bootstrap, prefix, batches)
    done: list = []
    await _run_until(_loop(kafka_bootstrap, prefix, done), done, 4, timeout=30)
    assert sorted(m["events"] for m, _ in done) == [5, 5, 5, 5]
    assert [r["reason"] for _, rejects in done for r in rejects] == ["not_json"]
    names = topic_names(prefix)
    partials = await read_topic(kafka_bootstrap, names.partials, until=4, timeout=10, settle=0.5, flatten=True)
    assert sorted(tuple(m["id"][1:]) for m in partials) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert await _committed(kafka_bootstrap, prefix) == [2, 2]
    await _produce(kafka_bootstrap, prefix, [encode_batch([litellm_payload(T0 + 99, request_id="late")])])
    more: list = []
    await _run_until(_loop(kafka_bootstrap, prefix, more), more, 1, timeout=30)
    assert [(m["id"][1:], m["events"]) for m, _ in more] == [([0, 2], 1)]  # only the new batch


async def test_a_lost_partials_ack_commits_nothing_and_the_redo_counts_once(lossy_kafka: AckDropper):
    """The broker stores the partials but its acknowledgements are lost on the way back (a
    real network fault, by the proxy; nothing in aiokafka is patched): the loop commits no
    raw offset and counts nothing while that lasts, and sends again; once acks come back
    it commits, and detection applies each raw batch once although the topic holds copies."""
    bootstrap, prefix = lossy_kafka.bootstrap, f"ack{uuid.uuid4().hex[:8]}"
    await _setup(bootstrap, prefix)
    await _produce(bootstrap, prefix, [
        encode_batch([litellm_payload(T0 + 10 * b + i, request_id=f"r{b}-{i}") for i in range(5)]) for b in range(4)])
    lossy_kafka.drop_acks = True
    done: list = []
    task = asyncio.ensure_future(_loop(bootstrap, prefix, done, request_timeout=1.5).run())
    try:
        assert await wait_for(lambda: _ge(lossy_kafka.dropped, 3), timeout=60), "no produce answer was dropped"
        assert done == [] and await _committed(bootstrap, prefix) == [None, None]  # nothing acknowledged
        lossy_kafka.drop_acks = False
        assert await wait_for(lambda: _ge(len(done), 4), timeout=60), f"ingested {len(done)} of 4"
        assert await _committed(bootstrap, prefix) == [2, 2]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    partials = await read_topic(bootstrap, topic_names(prefix).partials, until=8, timeout=15, settle=1.0,
                                flatten=True)
    assert len(partials) > 4  # the unacknowledged sends were stored: copies downstream
    stage = DetectStage.new(build_engine(), idle_seconds=30)
    for msg in partials:
        stage.on_partials(msg, now=0.0)
    assert stage.events == 20 and stage.duplicates == len(partials) - 4  # each raw batch once


@pytest.mark.parametrize("cap", [None, ("PARTIALS_BYTES", 1), ("PARTIALS_SECONDS", 0.0)])
async def test_a_fetch_partials_go_out_together_up_to_a_size(kafka_bootstrap, monkeypatch, cap):
    """The partials messages of one fetch share a Kafka message (a JSON list: one producer send
    and one detect event instead of one per raw batch); past ``PARTIALS_BYTES`` a list is split,
    so a default Kafka broker's 1 MB limit is not reached, and after ``PARTIALS_SECONDS``, so a
    long fetch does not hold its first messages back. Either way every raw batch's message
    arrives once, and detection applies each."""
    import streams.ingest

    if cap is not None:
        monkeypatch.setattr(streams.ingest, *cap)  # every message alone
    prefix = f"lst{uuid.uuid4().hex[:8]}"
    await _setup(kafka_bootstrap, prefix)
    await _produce(kafka_bootstrap, prefix, [
        encode_batch([litellm_payload(T0 + 10 * b + i, request_id=f"r{b}-{i}") for i in range(3)]) for b in range(8)])
    done: list = []
    await _run_until(_loop(kafka_bootstrap, prefix, done), done, 8, timeout=30)
    names = topic_names(prefix)
    values = await read_topic(kafka_bootstrap, names.partials, until=1, timeout=10, settle=1.0)
    assert all(type(v) is list for v in values)
    messages = [m for v in values for m in v]
    assert sorted(tuple(m["id"][1:]) for m in messages) == [(p, o) for p in (0, 1) for o in range(4)]
    if cap is None:
        assert len(values) < len(messages)  # together: 8 raw batches arrive in one fetch or a few
    else:
        assert len(values) == len(messages)
    stage = DetectStage.new(build_engine(), idle_seconds=30)
    for m in messages:
        stage.on_partials(m, now=0.0)
    assert stage.events == 24 and stage.duplicates == 0


async def _ge(value: int, n: int) -> bool:
    return value >= n


async def test_detect_reads_again_the_partials_its_consumer_skipped(kafka_bootstrap):
    from types import SimpleNamespace

    from streams.agents import _in_order

    topic = f"gap{uuid.uuid4().hex[:8]}.partials"
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all", enable_idempotence=False)
    await producer.start()
    try:
        for i in range(6):
            await producer.send_and_wait(topic, orjson.dumps({"n": i}), partition=0)
    finally:
        await producer.stop()
    ctx = SimpleNamespace(stage=SimpleNamespace(next_offset=1), pending=[], counts={"partials_gaps": 0},
                          settings=SimpleNamespace(brokers=[kafka_bootstrap]))

    def event(offset: int):
        return SimpleNamespace(message=SimpleNamespace(topic=topic, partition=0, offset=offset))

    assert await _in_order(ctx, event(1)) == []  # the expected one
    missed = await _in_order(ctx, event(5))  # 2, 3, 4 were skipped by the consumer
    assert [orjson.loads(v)["n"] for v in missed] == [2, 3, 4] and ctx.counts["partials_gaps"] == 1
    assert await _in_order(ctx, event(3)) is None and len(ctx.pending) == 1  # a re-read: applied already
    assert ctx.stage.next_offset == 6


@pytest.mark.parametrize("weights, want", [
    ({"a": 1.0, "b": 1.0}, {"a": [0, 1], "b": [2, 3]}),
    ({"a": 0.25, "b": 1.0}, {"a": [0], "b": [1, 2, 3]}),  # a also detects: a quarter share
    ({"a": 0.25}, {"a": [0, 1, 2, 3]}),  # alone, it reads everything
    ({"a": 0.25, "b": 1.0, "c": 1.0}, {"a": [], "b": [0, 1], "c": [2, 3]}),
])
def test_raw_partitions_are_dealt_by_weight_and_every_one_once(weights, want):
    from streams.assignor import deal

    assert deal([0, 1, 2, 3], weights) == want
