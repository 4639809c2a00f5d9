"""``tail fly``: Fly log envelopes published on the local NATS server reach ``raw.fly``."""

from __future__ import annotations

import asyncio
import uuid

import nats
import orjson
import pytest

from connectors.kafka import BatchProducer, ensure_topics, raw_topic
from connectors.nats_source import NatsConfig, NatsSource
from tests.kafka_broker import read_raw

pytestmark = pytest.mark.integration
NATS_URL = "nats://127.0.0.1:4222"


def envelope(app: str, i: int) -> bytes:
    inner = orjson.dumps({"message": f"POST /chat/completions {i}", "level": "INFO"}).decode()
    return orjson.dumps({"event": {"provider": "app"}, "fly": {"app": {"instance": "148ed193b95e89", "name": app},
                         "region": "iad"}, "host": "7a2f", "log": {"level": "info"}, "message": inner,
                         "timestamp": f"2026-08-21T14:03:{i % 60:02d}.005120331Z"})


async def _nats_or_skip() -> nats.NATS:
    try:
        return await nats.connect(NATS_URL, connect_timeout=2, max_reconnect_attempts=0)
    except Exception as exc:
        pytest.skip(f"no NATS server on {NATS_URL}: {exc}")


async def _start(kafka_bootstrap: str, prefix: str, config: NatsConfig):
    producer = BatchProducer(kafka_bootstrap, "fly", prefix=prefix, linger=0.05)
    await producer.start()
    stop = asyncio.Event()
    task = asyncio.create_task(NatsSource(config, producer).run(stop))
    await asyncio.sleep(0.3)  # subscribed
    return producer, stop, task


async def _stop(producer: BatchProducer, stop: asyncio.Event, task: asyncio.Task) -> None:
    stop.set()
    await task
    await producer.stop()


async def test_core_subscription_wildcards(kafka_bootstrap) -> None:
    nc = await _nats_or_skip()
    app, prefix = f"app{uuid.uuid4().hex[:8]}", f"t{uuid.uuid4().hex[:10]}"
    await ensure_topics(kafka_bootstrap, prefix)
    producer, stop, task = await _start(kafka_bootstrap, prefix, NatsConfig([NATS_URL], subject=f"logs.{app}.>"))
    sent = [envelope(app, i) for i in range(2000)]
    for i, data in enumerate(sent):
        await nc.publish(f"logs.{app}.{'iad' if i % 2 else 'ams'}.148ed193b95e89", data)
    await nc.publish(f"logs.other{app}.iad.x", envelope("other", 0))  # not subscribed
    await nc.flush()
    await asyncio.sleep(0.3)
    await _stop(producer, stop, task)
    await nc.close()
    got = await read_raw(kafka_bootstrap, [raw_topic("fly", prefix)], expect=2000)
    assert sorted(r for _, r in got) == sorted(sent)  # envelopes unchanged, none lost, none extra
    assert producer.metrics.totals["records_out"] == 2000


async def test_jetstream_durable_resumes_without_gap(kafka_bootstrap) -> None:
    nc = await _nats_or_skip()
    js = nc.jetstream()
    app, prefix = f"app{uuid.uuid4().hex[:8]}", f"t{uuid.uuid4().hex[:10]}"
    stream = f"GW_{app}"
    await js.add_stream(name=stream, subjects=[f"logs.{app}.>"])
    await ensure_topics(kafka_bootstrap, prefix)
    config = NatsConfig([NATS_URL], subject=f"logs.{app}.>", durable="gatewatch", stream=stream)
    try:
        for i in range(300):
            await js.publish(f"logs.{app}.iad.m1", envelope(app, i))  # before the tail ever ran
        producer, stop, task = await _start(kafka_bootstrap, prefix, config)
        await asyncio.sleep(0.5)
        await _stop(producer, stop, task)
        for i in range(300, 700):
            await js.publish(f"logs.{app}.iad.m1", envelope(app, i))  # while the tail is down
        producer, stop, task = await _start(kafka_bootstrap, prefix, config)
        await asyncio.sleep(0.5)
        await _stop(producer, stop, task)
    finally:
        await js.delete_stream(stream)
        await nc.close()
    got = await read_raw(kafka_bootstrap, [raw_topic("fly", prefix)])
    assert sorted(r for _, r in got) == sorted(envelope(app, i) for i in range(700))
