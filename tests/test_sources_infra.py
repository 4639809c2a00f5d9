"""``tail redis`` / ``tail postgres`` on the real servers, ``tail probe`` against a local HTTP server."""

from __future__ import annotations

import asyncio
import uuid

import orjson
import pytest
from aiohttp import web

from connectors.infra_source import MetricPoller, postgres_metrics, redis_metrics
from connectors.kafka import BatchProducer, ensure_topics, raw_topic
from connectors.probe_source import ProbeSource
from tests.kafka_broker import free_port, read_raw

pytestmark = pytest.mark.integration
DSN = "postgresql://postgres@127.0.0.1:5432/test"
REDIS = "redis://127.0.0.1:6379/0"


async def _producer(kafka_bootstrap: str, source: str) -> tuple[BatchProducer, str]:
    prefix = f"t{uuid.uuid4().hex[:10]}"
    await ensure_topics(kafka_bootstrap, prefix)
    producer = BatchProducer(kafka_bootstrap, source, prefix=prefix, linger=60)
    await producer.start()
    return producer, prefix


async def _metrics_in_kafka(kafka_bootstrap: str, prefix: str, n: int) -> dict[str, dict]:
    got = await read_raw(kafka_bootstrap, [raw_topic("infra", prefix)], expect=n)
    records = [orjson.loads(r) for _, r in got]
    return {r.get("gatewatch_metric") or r.get("gatewatch_probe"): r for r in records}


async def test_redis_info(kafka_bootstrap) -> None:
    try:
        readings = dict(await redis_metrics(REDIS, {}))
    except Exception as exc:
        pytest.skip(f"no Redis at {REDIS}: {exc}")
    assert readings["redis_used_memory_bytes"] > 0 and readings["redis_connected_clients"] >= 0
    assert "redis_evicted_keys" in readings
    producer, prefix = await _producer(kafka_bootstrap, "redis")
    poller = MetricPoller("redis", lambda: redis_metrics(REDIS, {}), {"system": "redis"}, producer)
    n = await poller.poll_once()
    await producer.stop()
    metrics = await _metrics_in_kafka(kafka_bootstrap, prefix, n)
    assert metrics["redis_up"]["value"] == 1.0
    record = metrics["redis_used_memory_bytes"]
    assert record["labels"] == {"system": "redis"} and record["timestamp"].endswith("Z")


async def test_postgres_connections_and_long_queries(kafka_bootstrap) -> None:
    import psycopg

    try:
        blocker = await psycopg.AsyncConnection.connect(DSN, autocommit=True)
    except psycopg.OperationalError as exc:
        pytest.skip(f"no PostgreSQL at {DSN}: {exc}")
    sleeper = asyncio.create_task(blocker.execute("SELECT pg_sleep(3)"))
    await asyncio.sleep(1.2)
    readings = dict(await postgres_metrics(DSN, long_query_s=1.0))
    await sleeper
    await blocker.close()
    assert readings["postgres_max_connections"] >= 10 and readings["postgres_connections_in_use"] >= 1
    assert readings["postgres_long_running_queries"] >= 1 and readings["postgres_longest_query_seconds"] >= 1.0
    assert 0 < readings["postgres_connections_used_ratio"] < 1

    producer, prefix = await _producer(kafka_bootstrap, "postgres")
    down = MetricPoller("postgres", lambda: postgres_metrics("postgresql://postgres@127.0.0.1:1/x"),
                        {"system": "postgres"}, producer)
    assert await down.poll_once() == 1  # a dead database is a reading: postgres_up = 0
    await producer.stop()
    metrics = await _metrics_in_kafka(kafka_bootstrap, prefix, 1)
    assert metrics["postgres_up"]["value"] == 0.0


async def test_probe(kafka_bootstrap) -> None:
    state = {"status": 200}

    async def liveliness(_: web.Request) -> web.Response:
        return web.Response(text='"I\'m alive!"', status=state["status"])

    app = web.Application()
    app.router.add_get("/health/liveliness", liveliness)
    runner, port = web.AppRunner(app), free_port()
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    producer, prefix = await _producer(kafka_bootstrap, "probe")
    url, dead = f"http://127.0.0.1:{port}/health/liveliness", f"http://127.0.0.1:{free_port()}/health"
    source = ProbeSource([url, dead], producer, timeout=2)
    first = await source.poll_once()
    state["status"] = 503
    second = await source.poll_once()
    await source.client.aclose()
    await producer.stop()
    await runner.cleanup()
    assert [(r["ok"], r["status"]) for r in first] == [(True, 200), (False, None)]
    assert second[0]["ok"] is False and second[0]["status"] == 503 and "error" in second[1]
    got = await read_raw(kafka_bootstrap, [raw_topic("infra", prefix)], expect=4)
    records = [orjson.loads(r) for _, r in got]
    assert sorted(r["gatewatch_probe"] for r in records) == sorted([url, dead] * 2)
    assert all(r["latency_ms"] >= 0 and r["timestamp"].endswith("Z") for r in records)


async def test_postgres_with_pg_stat_statements_not_preloaded() -> None:
    """The extension exists but the library is not preloaded: the poll still succeeds, without the mean."""
    import psycopg

    db = f"gw_{uuid.uuid4().hex[:8]}"
    try:
        admin = await psycopg.AsyncConnection.connect(DSN, autocommit=True)
    except psycopg.OperationalError as exc:
        pytest.skip(f"no PostgreSQL at {DSN}: {exc}")
    await admin.execute(f"CREATE DATABASE {db}")
    try:
        dsn = DSN.rsplit("/", 1)[0] + f"/{db}"
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
            try:
                await conn.execute("CREATE EXTENSION pg_stat_statements")
            except psycopg.Error as exc:
                pytest.skip(f"pg_stat_statements not available: {exc}")
        readings = dict(await postgres_metrics(dsn))
        assert "postgres_connections_in_use" in readings
        preloaded = (await (await admin.execute("SHOW shared_preload_libraries")).fetchone())[0]
        assert ("postgres_mean_exec_time_ms" in readings) == ("pg_stat_statements" in preloaded)
    finally:
        await admin.execute(f"DROP DATABASE {db} WITH (FORCE)")
        await admin.close()
