"""``tail langfuse`` against a local server speaking the documented v1/v2 shapes, 429 and 5xx included."""

from __future__ import annotations

import base64
import json
import time
import uuid
from datetime import datetime, timedelta, timezone

import orjson
import pytest
from aiohttp import web

from connectors.checkpoint import Checkpoint
from connectors.kafka import BatchProducer, ensure_topics, raw_topic
from connectors.langfuse_source import LangfuseConfig, LangfuseError, LangfuseSource
from tests.kafka_broker import free_port, read_raw

pytestmark = pytest.mark.integration
T0 = datetime(2026, 8, 21, 14, 0, tzinfo=timezone.utc)
AUTH = "Basic " + base64.b64encode(b"pk-lf-test:sk-lf-test").decode()


def observation(i: int, offset_s: float) -> dict:
    start = T0 + timedelta(seconds=offset_s)
    iso = start.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return {"id": f"obs-{i}", "traceId": f"trace-{i}", "projectId": "cm1proj0001", "type": "GENERATION",
            "name": "litellm:svc", "startTime": iso, "endTime": iso, "createdAt": iso, "level": "DEFAULT",
            "usageDetails": {"input": 10, "output": 5, "total": 15}, "costDetails": {"total": 0.0001}}


class FakeLangfuse:
    """Serves ``observations`` newest first, v1 by page and v2 by cursor; scripted failures first."""

    def __init__(self, v2: bool) -> None:
        self.v2, self.observations, self.failures, self.calls = v2, [], [], []
        app = web.Application()
        app.router.add_get("/api/public/observations", self.v1)
        app.router.add_get("/api/public/v2/observations", self.v2_handler)
        self.app, self.port = app, free_port()
        self.url = f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> FakeLangfuse:
        self.runner = web.AppRunner(self.app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.runner.cleanup()

    def _matching(self, request: web.Request) -> list[dict]:
        since = request.query.get("fromStartTime", "")
        return sorted((o for o in self.observations if o["startTime"] >= since),
                      key=lambda o: o["startTime"], reverse=True)

    def _gate(self, request: web.Request) -> web.Response | None:
        self.calls.append((request.path, dict(request.query), time.monotonic()))
        if request.headers.get("Authorization") != AUTH:
            return web.json_response({"message": "Invalid credentials"}, status=401)
        if self.failures:
            status = self.failures.pop(0)
            headers = {"Retry-After": "1", "X-RateLimit-Limit": "30"} if status == 429 else {}
            return web.json_response({"message": "nope"}, status=status, headers=headers)
        return None

    async def v1(self, request: web.Request) -> web.Response:
        if (failed := self._gate(request)) is not None:
            return failed
        items, page, limit = self._matching(request), int(request.query["page"]), int(request.query["limit"])
        assert limit <= 100
        return web.json_response({"data": items[(page - 1) * limit: page * limit], "meta": {
            "page": page, "limit": limit, "totalItems": len(items), "totalPages": -(-len(items) // limit)}})

    async def v2_handler(self, request: web.Request) -> web.Response:
        if not self.v2:
            return web.json_response({"message": "not found"}, status=404)
        if (failed := self._gate(request)) is not None:
            return failed
        items, limit = self._matching(request), int(request.query["limit"])
        start = json.loads(base64.b64decode(request.query["cursor"]))["offset"] if "cursor" in request.query else 0
        meta = {}
        if start + limit < len(items):
            meta["cursor"] = base64.b64encode(json.dumps({"offset": start + limit}).encode()).decode()
        return web.json_response({"data": items[start:start + limit], "meta": meta})


def _config(url: str, **kw) -> LangfuseConfig:
    return LangfuseConfig(host=url, public_key="pk-lf-test", secret_key="sk-lf-test", overlap=120,
                          backoff=0.05, since=T0 - timedelta(seconds=1), **kw)


async def _producer(kafka_bootstrap: str, prefix: str) -> BatchProducer:
    await ensure_topics(kafka_bootstrap, prefix)
    producer = BatchProducer(kafka_bootstrap, "langfuse", prefix=prefix, linger=60)
    await producer.start()
    return producer


async def test_v2_cursor_with_429_and_500(kafka_bootstrap, tmp_path) -> None:
    prefix = f"t{uuid.uuid4().hex[:10]}"
    producer = await _producer(kafka_bootstrap, prefix)
    async with FakeLangfuse(v2=True) as server:
        server.observations = [observation(i, i * 0.1) for i in range(2500)]  # 3 cursor pages of 1000
        server.failures = [429, 500, 503]
        source = LangfuseSource(_config(server.url), producer, Checkpoint(tmp_path / "lf.json"))
        started = time.monotonic()
        assert await source.poll_once() == 2500
        assert time.monotonic() - started >= 1.0  # waited Retry-After: 1
        paths = [c[0] for c in server.calls]
        assert paths == ["/api/public/v2/observations"] * 6 and "cursor" in server.calls[-1][1]
        assert producer.metrics.totals["errors"] == 3
        await source.client.aclose()
    await producer.stop()
    got = await read_raw(kafka_bootstrap, [raw_topic("langfuse", prefix)], expect=2500)
    assert sorted(orjson.loads(r)["id"] for _, r in got) == sorted(f"obs-{i}" for i in range(2500))


async def test_v1_fallback_late_observations_and_restart(kafka_bootstrap, tmp_path) -> None:
    prefix = f"t{uuid.uuid4().hex[:10]}"
    producer = await _producer(kafka_bootstrap, prefix)
    cp = Checkpoint(tmp_path / "lf.json")
    async with FakeLangfuse(v2=False) as server:
        server.observations = [observation(i, i) for i in range(250)]
        source = LangfuseSource(_config(server.url), producer, cp)
        assert await source.poll_once() == 250 and source.api == "v1"
        # Late arrivals (ingestion lag) inside the overlap window, plus new ones.
        server.observations += [observation(1000 + i, 200 + i / 10) for i in range(5)]
        server.observations += [observation(i, i) for i in range(250, 300)]
        assert await source.poll_once() == 55
        await source.client.aclose()
        restarted = LangfuseSource(_config(server.url), producer, cp)
        assert restarted.api == "v1" and restarted.high_water == T0 + timedelta(seconds=299)
        server.observations += [observation(i, i) for i in range(300, 310)]
        server.calls.clear()
        assert await restarted.poll_once() == 10
        assert all(p == "/api/public/observations" for p, *_ in server.calls)  # v1 remembered
        assert server.calls[0][1]["fromStartTime"] == "2026-08-21T14:02:59.000Z"  # high-water − overlap
        await restarted.client.aclose()
    await producer.stop()
    got = await read_raw(kafka_bootstrap, [raw_topic("langfuse", prefix)], expect=315)
    ids = [orjson.loads(r)["id"] for _, r in got]
    assert len(ids) == len(set(ids)) == 315


async def test_bad_keys_stop_the_source(kafka_bootstrap, tmp_path) -> None:
    producer = await _producer(kafka_bootstrap, f"t{uuid.uuid4().hex[:10]}")
    async with FakeLangfuse(v2=True) as server:
        config = LangfuseConfig(host=server.url, public_key="pk-lf-test", secret_key="wrong")
        source = LangfuseSource(config, producer, Checkpoint(tmp_path / "lf.json"))
        with pytest.raises(LangfuseError, match="401"):
            await source.poll_once()
        await source.client.aclose()
    await producer.stop()
