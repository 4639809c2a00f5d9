"""``tail litellm-http``: the generic_api receiver against a real broker."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter

import httpx
import orjson
import pytest
from aiokafka import AIOKafkaConsumer

from connectors.http_receiver import ReceiverSource, split_body
from connectors.kafka import HEADER_BATCH, BatchProducer, ensure_topics, raw_topic
from tests.kafka_broker import free_port, read_raw

pytestmark = pytest.mark.integration
SECRET = "s3cret-for-tests"


def payload(i: int) -> dict:
    return {"id": f"chatcmpl-{i}", "call_type": "acompletion", "status": "success", "response_cost": 0.001,
            "startTime": 1787311387.1 + i, "endTime": 1787311389.9 + i, "metadata": {"user_api_key_team_alias": "t"}}


class Receiver:
    def __init__(self, bootstrap: str, prefix: str, delivery_timeout: float = 5.0) -> None:
        self.port, self.stop = free_port(), asyncio.Event()
        self.producer = BatchProducer(bootstrap, "litellm-http", prefix=prefix, delivery_timeout=delivery_timeout)
        self.url = f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> Receiver:
        await self.producer.start()
        self.task = asyncio.create_task(ReceiverSource(self.producer, SECRET, "127.0.0.1", self.port).run(self.stop))
        for _ in range(100):
            try:
                async with httpx.AsyncClient() as c:
                    await c.get(self.url + "/health")
                return self
            except httpx.TransportError:
                await asyncio.sleep(0.02)
        raise RuntimeError("receiver did not start")

    async def __aexit__(self, *exc) -> None:
        self.stop.set()
        await self.task
        await self.producer.stop()


def test_split_body_formats_and_errors() -> None:
    one, two = orjson.dumps(payload(1)), orjson.dumps(payload(2))
    assert split_body(b"[" + one + b"," + two + b"]") == [one, two]
    assert split_body(one + b"\n" + two + b"\n") == [one, two]
    assert split_body(b"  " + one) == [one]
    for bad, reason in ((b"", "empty"), (b"[1]", "item 0"), (one + b"\n{oops", "line 2"), (b"[{]", "line 1")):
        with pytest.raises(ValueError, match=reason):
            split_body(bad)


async def test_receiver_array_ndjson_single_and_errors(kafka_bootstrap) -> None:
    prefix = f"t{uuid.uuid4().hex[:10]}"
    await ensure_topics(kafka_bootstrap, prefix)
    auth = {"X-Gatewatch-Secret": SECRET}
    async with Receiver(kafka_bootstrap, prefix) as rx, httpx.AsyncClient(base_url=rx.url) as c:
        r = await c.post("/", content=orjson.dumps([payload(i) for i in range(600)]), headers=auth)
        assert (r.status_code, r.json()) == (200, {"accepted": 600})
        ndjson = b"\n".join(orjson.dumps(payload(i)) for i in range(600, 610))
        r = await c.post("/litellm", content=ndjson, headers={"Authorization": f"Bearer {SECRET}"})
        assert r.json() == {"accepted": 10}
        r = await c.post("/", content=orjson.dumps(payload(610)), headers=auth)
        assert r.json() == {"accepted": 1}
        r = await c.post("/", content=orjson.dumps(payload(611)), headers={"X-Gatewatch-Secret": "wrong"})
        assert r.status_code == 401
        r = await c.post("/", content=orjson.dumps(payload(612)))
        assert r.status_code == 401
        r = await c.post("/", content=b'{"id": 1}\n{"id": ', headers=auth)
        assert r.status_code == 400 and "line 2" in r.json()["error"]
        health = (await c.get("/health")).json()
        assert health["ok"] and health["records_out"] == 611
        metrics = (await c.get("/metrics")).text
        assert 'gatewatch_source_rejected_total{source="litellm-http",stage="auth"}' in metrics
    got = await read_raw(kafka_bootstrap, [raw_topic("litellm", prefix)], expect=611)
    assert sorted(orjson.loads(r)["id"] for _, r in got) == sorted(f"chatcmpl-{i}" for i in range(611))


async def test_receiver_answers_503_while_broker_down(tansu_factory) -> None:
    broker = tansu_factory()
    prefix = f"t{uuid.uuid4().hex[:10]}"
    await ensure_topics(broker.bootstrap, prefix)
    auth = {"X-Gatewatch-Secret": SECRET}
    async with Receiver(broker.bootstrap, prefix, delivery_timeout=1.5) as rx, \
            httpx.AsyncClient(base_url=rx.url, timeout=10) as c:
        assert (await c.post("/", content=orjson.dumps([payload(1)]), headers=auth)).status_code == 200
        broker.stop()
        started = time.monotonic()
        r = await c.post("/", content=orjson.dumps([payload(2), payload(3)]), headers=auth)
        assert r.status_code == 503 and r.headers["Retry-After"]
        assert time.monotonic() - started < 5
        assert (await c.get("/health")).status_code == 503
        assert rx.producer.metrics.totals["records_out"] == 1  # nothing of the failed body acknowledged
        broker.start()
        await ensure_topics(broker.bootstrap, prefix)
        r = await _post_until_stored(c, [payload(4)], auth)
        assert r.status_code == 200 and (await c.get("/health")).status_code == 200
        # The refused body may still reach the broker late (at-least-once); a retry of the
        # same body carries the same content-hash batch ids, so consumers keep one copy.
        # (Its records go to other partitions than payload 4's, by request id: their first
        # produce after the restart may be refused too, and LiteLLM would retry later.)
        r = await _post_until_stored(c, [payload(2), payload(3)], auth)
        assert r.status_code == 200
    got = await read_raw(broker.bootstrap, [raw_topic("litellm", prefix)])
    assert sorted(orjson.loads(r)["id"] for _, r in got) == ["chatcmpl-2", "chatcmpl-3", "chatcmpl-4"]


async def test_a_lost_ack_answers_503_and_the_retried_body_is_kept_once(lossy_kafka) -> None:
    """The broker stores a body's batches but its acknowledgements are lost on the network
    (the proxy drops them; nothing is patched): 503; LiteLLM's retry of the same body is cut
    into the same per-partition batches with the same content-hash ids, so the topic holds
    two copies of each and a consumer sees every record once."""
    prefix = f"t{uuid.uuid4().hex[:10]}"
    await ensure_topics(lossy_kafka.bootstrap, prefix)
    auth, body = {"X-Gatewatch-Secret": SECRET}, orjson.dumps([payload(i) for i in range(40)])
    async with Receiver(lossy_kafka.bootstrap, prefix, delivery_timeout=1.5) as rx, \
            httpx.AsyncClient(base_url=rx.url, timeout=10) as c:
        lossy_kafka.drop_acks = True
        r = await c.post("/", content=body, headers=auth)
        assert r.status_code == 503 and lossy_kafka.dropped >= 1
        lossy_kafka.drop_acks = False
        assert (await _post_until_stored(c, orjson.loads(body), auth)).status_code == 200
    topic = raw_topic("litellm", prefix)
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=lossy_kafka.bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    stored: list = []
    try:
        for _ in range(20):
            stored.extend(m for msgs in (await consumer.getmany(timeout_ms=300)).values() for m in msgs)
    finally:
        await consumer.stop()
    ids = Counter(dict(m.headers)[HEADER_BATCH] for m in stored)
    assert len({m.partition for m in stored}) == 4 and min(ids.values()) >= 2  # every batch stored twice
    got = await read_raw(lossy_kafka.bootstrap, [topic])
    assert sorted(orjson.loads(r)["id"] for _, r in got) == sorted(f"chatcmpl-{i}" for i in range(40))


async def _post_until_stored(c: httpx.AsyncClient, items: list[dict], auth: dict) -> httpx.Response:
    for _ in range(20):  # the client reconnects within a few metadata refreshes
        r = await c.post("/", content=orjson.dumps(items), headers=auth)
        if r.status_code == 200:
            break
    return r


async def test_receiver_throughput(kafka_bootstrap) -> None:
    """Not a pass/fail timing: records/s for 512-record json_array posts (LiteLLM's default batch)."""
    prefix = f"t{uuid.uuid4().hex[:10]}"
    body = orjson.dumps([payload(i) for i in range(512)])
    async with Receiver(kafka_bootstrap, prefix) as rx, httpx.AsyncClient(base_url=rx.url) as c:
        started = time.perf_counter()
        for _ in range(40):
            assert (await c.post("/", content=body, headers={"X-Gatewatch-Secret": SECRET})).status_code == 200
        rate = 40 * 512 / (time.perf_counter() - started)
    print(f"litellm-http receiver: {rate:,.0f} records/s (sequential posts)")
