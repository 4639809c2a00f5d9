"""BatchProducer against a real broker (Tansu): batching, headers, keys, ack, broker down."""

from __future__ import annotations

import time
import uuid

import orjson
import pytest
from aiokafka import AIOKafkaConsumer

from connectors.checkpoint import Checkpoint, checkpoint_path
from connectors.kafka import (
    HEADER_BATCH, BatchDeduper, BatchProducer, DeliveryError, all_raw_topics, decode_batch, ensure_topics,
    partition_for, raw_topic,
)
from connectors.metrics import SourceMetrics
from tests.kafka_broker import AckDropper, read_raw

pytestmark = pytest.mark.integration


def _prefix() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


def test_topic_names() -> None:
    assert raw_topic("fly", "gw") == "gw.raw.fly"
    assert all_raw_topics("p") == ["p.raw.fly", "p.raw.litellm", "p.raw.langfuse", "p.raw.infra"]
    with pytest.raises(ValueError):
        raw_topic("nope")


def test_deduper_and_checkpoint(tmp_path) -> None:
    d = BatchDeduper(capacity=2)
    assert [d.seen("a"), d.seen("a"), d.seen("b"), d.seen("c"), d.seen("a")] == [False, True, False, False, False]
    cp = Checkpoint(checkpoint_path(tmp_path, "litellm-db/x"))
    assert cp.load() == {}
    cp.save({"a": 1})
    assert cp.load() == {"a": 1} and cp.path.name == "litellm-db_x.json"
    cp.path.write_text("{half")
    assert cp.load() == {}  # unreadable: start fresh, logged


async def test_batches_are_ndjson_with_headers_and_keys(kafka_bootstrap) -> None:
    prefix = _prefix()
    await ensure_topics(kafka_bootstrap, prefix, partitions=4)
    metrics = SourceMetrics("unit")
    producer = BatchProducer(kafka_bootstrap, "unit", prefix=prefix, max_records=500, linger=60, metrics=metrics)
    await producer.start()
    records = [orjson.dumps({"call_type": "acompletion", "n": i}) for i in range(1200)]
    for r in records:
        await producer.add("litellm", r, key=b"k1")
    await producer.flush()
    assert metrics.totals["records_out"] == 1200 and metrics.totals["batches"] == 3
    await producer.stop()

    consumer = AIOKafkaConsumer(raw_topic("litellm", prefix), bootstrap_servers=kafka_bootstrap,
                                auto_offset_reset="earliest")
    await consumer.start()
    got = []
    deadline = time.monotonic() + 10
    while len(got) < 3 and time.monotonic() < deadline:
        for msgs in (await consumer.getmany(timeout_ms=300)).values():
            got.extend(msgs)
    await consumer.stop()
    assert [len(decode_batch(m.value)) for m in got] == [500, 500, 200]
    assert len({m.partition for m in got}) == 1 and all(m.key == b"k1" for m in got)  # one key, one partition
    headers = dict(got[0].headers)
    assert headers["gw-source"] == b"unit" and headers["gw-count"] == b"500" and headers["gw-batch"]
    assert [line for m in got for line in decode_batch(m.value)] == records  # order kept


async def test_size_limit_linger_and_oversize(kafka_bootstrap) -> None:
    prefix = _prefix()
    producer = BatchProducer(kafka_bootstrap, "unit", prefix=prefix, max_bytes=10_000, linger=0.1)
    await producer.start()
    for i in range(50):
        await producer.add("fly", orjson.dumps({"fly": {"i": i}, "pad": "x" * 900}))
    await producer.add("fly", b"{" + b"x" * (1024 * 1024) + b"}")  # too big for any Kafka message
    got = await read_raw(kafka_bootstrap, [raw_topic("fly", prefix)], expect=50, timeout=10)  # linger sent them
    assert len(got) == 50
    assert producer.metrics.totals["rejected"] == 1
    assert producer.metrics.totals["batches"] >= 5  # ~1 KB records, 10 KB batches
    await producer.stop()


async def test_flush_raises_when_broker_down_and_resends_after(tansu_factory) -> None:
    broker = tansu_factory()
    prefix = _prefix()
    await ensure_topics(broker.bootstrap, prefix, partitions=4)
    producer = BatchProducer(broker.bootstrap, "unit", prefix=prefix, linger=60, delivery_timeout=2)
    await producer.start()
    await producer.add("infra", b'{"gatewatch_metric":"a","value":1}')
    await producer.flush()
    broker.stop()
    await producer.add("infra", b'{"gatewatch_metric":"b","value":2}')
    with pytest.raises(DeliveryError):
        await producer.flush()
    assert producer.pending == 1  # kept for the next flush
    broker.start()  # same port; memory storage is empty again, and Tansu acks (and drops)
    await ensure_topics(broker.bootstrap, prefix, partitions=4)  # writes to topics it lost
    for _ in range(20):
        try:
            await producer.flush()
            break
        except DeliveryError:
            continue
    got = await read_raw(broker.bootstrap, [raw_topic("infra", prefix)], expect=1, timeout=10)
    assert [orjson.loads(r)["gatewatch_metric"] for _, r in got] == ["b"]
    await producer.stop()


async def _raw_messages(bootstrap: str, topic: str, count: int, timeout: float = 10) -> list:
    """Every message on ``topic`` as the broker stores it (no batch dedup), until ``count``."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    got: list = []
    deadline = time.monotonic() + timeout
    try:
        while len(got) < count and time.monotonic() < deadline:
            for msgs in (await consumer.getmany(timeout_ms=300)).values():
                got.extend(msgs)
    finally:
        await consumer.stop()
    return got


async def test_litellm_records_are_routed_by_request_id_in_batches(kafka_bootstrap) -> None:
    """Both ways in (buffered ``add``, SpendLogs; ``send_records``, the callback) put a request
    id on the same partition, whatever the source's key, and cut batches per partition."""
    prefix = _prefix()
    await ensure_topics(kafka_bootstrap, prefix, partitions=4)
    ids = [f"chatcmpl-{i}" for i in range(400)]
    db = BatchProducer(kafka_bootstrap, "litellm-db", prefix=prefix, max_records=60, linger=60)
    http = BatchProducer(kafka_bootstrap, "litellm-http", prefix=prefix, max_records=60, linger=60)
    await db.start()
    await http.start()
    for rid in ids:
        await db.add("litellm", orjson.dumps({"request_id": rid, "spend": 0.0}), key=b"litellm-db", route=rid)
    await db.add("litellm", b'{"request_log":true,"id":1}', key=b"litellm-db")  # no route: by its key
    await db.flush()
    await http.send_records("litellm", [orjson.dumps({"id": rid}) for rid in ids], key=b"litellm-http",
                            routes=list(ids))
    await db.stop()
    await http.stop()
    got = await _raw_messages(kafka_bootstrap, raw_topic("litellm", prefix), count=2)
    where: dict[str, set[int]] = {}
    for m in got:
        for line in decode_batch(m.value):
            rec = orjson.loads(line)
            where.setdefault(str(rec.get("request_id") or rec.get("id")), set()).add(m.partition)
    assert all(where[rid] == {partition_for(rid, 4)} for rid in ids)  # both copies, one partition
    assert len({p for rid in ids for p in where[rid]}) == 4  # and the ids spread over all of them
    routed = [m for m in got if b"request_log" not in m.value]
    assert all(int(dict(m.headers)["gw-count"]) <= 60 for m in got)
    assert len(routed) < len(ids) * 2 / 20  # batches of tens of records, not a message per record
    assert sum(int(dict(m.headers)["gw-count"]) for m in got) == 801


async def test_lost_acknowledgement_keeps_the_batch_and_the_resend_is_one_copy(lossy_kafka: AckDropper) -> None:
    """The broker stores a batch but its answer is lost (the proxy drops it on the way back):
    flush raises and keeps the batch; the next flush resends it with the same ``gw-batch``
    id, so the topic holds two copies and a consumer sees one. A real broker and a real
    network fault; nothing in aiokafka is patched."""
    bootstrap, prefix = lossy_kafka.bootstrap, _prefix()
    await ensure_topics(bootstrap, prefix, partitions=1)
    topic = raw_topic("infra", prefix)
    producer = BatchProducer(bootstrap, "unit", prefix=prefix, linger=60, delivery_timeout=1.5)
    await producer.start()
    records = [orjson.dumps({"gatewatch_metric": "m", "value": i}) for i in range(5)]
    for r in records[:2]:
        await producer.add("infra", r)
    await producer.flush()
    lossy_kafka.drop_acks = True
    for r in records[2:]:
        await producer.add("infra", r)
    with pytest.raises(DeliveryError):
        await producer.flush()
    assert lossy_kafka.dropped >= 1 and producer.pending == 3  # kept for the next flush
    lossy_kafka.drop_acks = False
    for _ in range(10):  # the client reconnects after the timed-out request
        try:
            await producer.flush()
            break
        except DeliveryError:
            continue
    assert producer.pending == 0 and producer.metrics.totals["records_out"] == 5
    await producer.stop()
    stored = await _raw_messages(bootstrap, topic, count=3)
    ids = [dict(m.headers)[HEADER_BATCH] for m in stored]
    assert len(ids) >= 3 and len(set(ids)) == 2  # the lost-ack batch is stored twice, one id
    assert [r for _, r in await read_raw(bootstrap, [topic])] == records  # a consumer sees each once, in order


async def test_producer_throughput(kafka_bootstrap) -> None:
    """Not a pass/fail timing: prints records/s of add+flush for 1 KB-ish records."""
    producer = BatchProducer(kafka_bootstrap, "bench", prefix=_prefix(), linger=60)
    await producer.start()
    record = orjson.dumps({"call_type": "acompletion", "pad": "x" * 800})
    n, started = 50_000, time.perf_counter()
    for _ in range(n):
        await producer.add("litellm", record, key=b"k")
    await producer.flush()
    rate = n / (time.perf_counter() - started)
    await producer.stop()
    print(f"BatchProducer: {rate:,.0f} records/s")
    assert producer.metrics.totals["records_out"] == n
