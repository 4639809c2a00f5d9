"""One ``test_context()`` test per agent: the wiring, without a broker (ingest is not an agent:
``tests/test_worker_ingest.py``).

Topics and tables are swapped for fakes through the worker context (``ctx.topics`` /
``ctx.tables``); what the agents send is what these fakes record.
"""

from __future__ import annotations

import orjson
import pytest

from connectors.kafka import encode_batch
from streams.app import WorkerSettings, create_app
from tests.engine_helpers import T0
from tests.worker_helpers import litellm_payload


class FakeTopic:
    def __init__(self) -> None:
        self.sent: list[tuple[bytes | None, bytes]] = []

    async def send(self, key: bytes | None = None, value: bytes = b"", **_: object) -> None:
        self.sent.append((key, value))


@pytest.fixture
def app_ctx(tmp_path):
    settings = WorkerSettings().model_copy(update={
        "state_dir": str(tmp_path), "topic_prefix": "unit", "web_port": 0, "idle_seconds": 5.0,
        "snapshot_seconds": 0.0, "webhook_url": None, "slack_bot_token": None, "slack_webhook_url": None})
    app = create_app(settings)
    ctx = app.gatewatch
    ctx.topics = {name: FakeTopic() for name in ctx.topics}
    ctx.tables = {name: {} for name in ctx.tables}
    return app, ctx


async def test_detect_applies_partials_closes_minutes_and_snapshots(app_ctx):
    from streams.snapshot import read_snapshot
    from streams.stages import RawBatch, ingest_batch

    app, ctx = app_ctx
    ticks = iter(range(10_000))
    ctx.clock = lambda: float(next(ticks))  # one second of wall time per message
    batches = [encode_batch([litellm_payload(T0 + m * 60 + s, ok=m < 20 or s % 4 == 0)
                             for s in range(0, 60, 2)]) for m in range(40)]
    msgs = [ingest_batch(RawBatch("unit.raw.litellm", 0, i, b))[0] for i, b in enumerate(batches)]
    async with app.agents["detect"].test_context() as agent:
        for msg in msgs[:20]:  # one per Kafka message, as workers before the lists sent them
            await agent.put(orjson.dumps(msg))
        for k in range(20, 40, 5):  # a fetch's together, as the ingest sends them
            await agent.put(orjson.dumps(msgs[k:k + 5]))
        await agent.put(orjson.dumps([msgs[5]]))  # a redelivered message: skipped
        await agent.put(b'{"tick":true}')
    stage = ctx.stage
    assert stage.events == 40 * 30 and stage.duplicates == 1
    notes = [orjson.loads(v) for _, v in ctx.topics["notifications"].sent]
    assert notes and all(k == n["incident"].encode() for (k, _), n in zip(ctx.topics["notifications"].sent, notes))
    assert any(n["category"] == "error_rate" for n in notes)
    restored = read_snapshot(ctx.tables["snapshots"])
    assert restored.events == stage.events and restored.engine.closed_minute == stage.engine.closed_minute


async def test_deliver_submits_each_notification_once(app_ctx, monkeypatch):
    app, ctx = app_ctx
    submitted = []

    class FakeDelivery:
        sinks = []

        def submit(self, n):
            submitted.append(n)
            from models.silences import Send
            return Send()

        async def drain(self):
            return None

    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def fake_open(*_a, **_k):
        yield FakeDelivery()

    monkeypatch.setattr("streams.agents.open_delivery", fake_open)
    note = {"incident": "gw-1", "seq": 1, "status": "firing", "at": "2026-09-14T08:00:00.000Z"}
    async with app.agents["deliver"].test_context() as agent:
        await agent.put(orjson.dumps(note))
        await agent.put(orjson.dumps(note))  # redelivered after a restart: not sent again
        await agent.put(orjson.dumps({**note, "seq": 2}))
    assert [n["seq"] for n in submitted] == [1, 2]
    assert set(ctx.tables["delivered"]) == {"gw-1:1", "gw-1:2"}
