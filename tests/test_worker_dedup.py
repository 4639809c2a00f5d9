"""Cross-source request dedup with two workers: the LiteLLM callback (``tail litellm-http``)
and SpendLogs (``tail litellm-db``) both carry every request; each source routes a request
to the raw partition of its id, so both copies reach the same worker, which counts it once.

Real parts only: the receiver over HTTP, the SpendLogs tailer on PostgreSQL, the Tansu
broker, and two ``gatewatch worker`` processes on 4-partition raw topics (each owning some
``raw.litellm`` partitions). Before the routing, the callback's batches (key
``litellm-http``, partition 3) and SpendLogs' (``litellm-db``, partition 0) were read by
different workers, and every request was counted twice.
"""

from __future__ import annotations

import asyncio
import io
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import httpx
import orjson
import psycopg
import pytest

from connectors.checkpoint import Checkpoint
from connectors.http_receiver import ReceiverSource
from connectors.kafka import BatchProducer, ensure_topics, raw_topic
from connectors.spendlogs_source import SpendLogsConfig, SpendLogsSource
from gatewatch.replay import replay
from models.pipeline import build_engine
from tests.kafka_broker import read_raw
from tests.test_sources_db import DSN, spendlogs_schema  # noqa: F401  (fixture)
from tests.worker_helpers import balanced, detect_owner, free_port, health, litellm_payload, start_worker, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]
PARTITIONS = 4
REQUESTS, BODY = 600, 50  # LiteLLM posts its callback in batches; SpendLogs is polled per batch
TEAMS = ("support", "search", "billing")


def _utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, timezone.utc).replace(tzinfo=None)  # Prisma: naive UTC


async def _insert_spendlogs(conn, schema: str, requests: list[tuple[str, float, str]]) -> None:
    """The SpendLogs rows of the same requests, as LiteLLM's batch writer stores them."""
    async with conn.transaction():
        async with conn.cursor() as cur:
            await cur.executemany(
                f'INSERT INTO {schema}."LiteLLM_SpendLogs" (request_id, call_type, spend, total_tokens, "startTime", '
                '"endTime", model, model_group, custom_llm_provider, metadata, status) '
                'VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)',
                [(rid, "acompletion", 0.001, 100, _utc(ts - 1.0), _utc(ts), "gpt-4o", "gpt-4o", "openai",
                  orjson.dumps({"user_api_key_team_alias": team, "user_api_key_alias": f"{team}-svc"}).decode(),
                  "success") for rid, ts, team in requests])


async def test_both_litellm_sources_with_two_workers_count_each_request_once(kafka_bootstrap, spendlogs_schema,
                                                                             tmp_path):
    conn, schema = spendlogs_schema
    prefix = f"dedup{uuid.uuid4().hex[:8]}"
    await ensure_topics(kafka_bootstrap, prefix, PARTITIONS)
    start = time.time() - 3600
    requests = [(f"chatcmpl-{uuid.uuid4().hex}", start + i, TEAMS[i % len(TEAMS)]) for i in range(REQUESTS)]

    ports, workers = [free_port(), free_port()], []
    http = BatchProducer(kafka_bootstrap, "litellm-http", prefix=prefix)
    db = BatchProducer(kafka_bootstrap, "litellm-db", prefix=prefix, linger=60)
    stop, rx_port = asyncio.Event(), free_port()
    try:
        for i in range(2):  # one after the other, as a deployment scales out
            workers.append(start_worker(kafka_bootstrap, prefix, tmp_path / f"w{i}", ports[i], app_id=prefix))
            assert await wait_for(lambda: balanced(ports[:i + 1], PARTITIONS), timeout=60), "group did not settle"
        states = [await health(p) for p in ports]
        litellm = [[tp for tp in s["assigned"] if ".raw.litellm/" in tp] for s in states]
        assert all(litellm), f"each worker owns raw.litellm partitions: {litellm}"
        owner = await wait_for(lambda: detect_owner(ports), timeout=30)
        assert owner is not None

        await http.start()
        await db.start()
        receiver = asyncio.create_task(ReceiverSource(http, None, "127.0.0.1", rx_port).run(stop))
        tailer = SpendLogsSource(SpendLogsConfig(dsn=DSN, table=f'{schema}."LiteLLM_SpendLogs"', overlap=120,
                                                 since=datetime.fromtimestamp(start - 10, timezone.utc)),
                                 db, Checkpoint(tmp_path / "spendlogs.json"))
        async with await psycopg.AsyncConnection.connect(DSN, autocommit=True) as tail_conn, \
                httpx.AsyncClient(base_url=f"http://127.0.0.1:{rx_port}", timeout=30) as client:
            await tail_conn.execute("SET TIME ZONE 'UTC'")
            await wait_for(lambda: _listening(client), timeout=10)
            for n, k in enumerate(range(0, REQUESTS, BODY)):
                body = requests[k:k + BODY]
                callback = [orjson.loads(litellm_payload(ts, team=team, request_id=rid)) for rid, ts, team in body]
                await _insert_spendlogs(conn, schema, body)
                if n % 2:  # SpendLogs first for every other body: either copy may come first
                    assert await tailer.poll_once(tail_conn) == len(body)
                r = await client.post("/litellm", content=orjson.dumps(callback))
                assert r.json() == {"accepted": len(body)}
                if not n % 2:
                    assert await tailer.poll_once(tail_conn) == len(body)

        records = await read_raw(kafka_bootstrap, [raw_topic("litellm", prefix)], expect=2 * REQUESTS)
        want = _replay_events(records, tmp_path)
        assert want == REQUESTS  # replay of the same records: each request once
        counted = await wait_for(lambda: _events(ports[owner], want), timeout=90)
        await asyncio.sleep(3)  # a request counted twice would arrive now
        states = [await health(p) for p in ports]
    finally:
        stop.set()
        for producer in (http, db):
            await producer.stop()
        for w in workers:
            if w.poll() is None:
                w.terminate()
                w.wait(30)
    assert counted, f"detection applied {states[owner]['detect']['events']} events, replay {want}"
    assert states[owner]["detect"]["events"] == want  # every request counted once, as replay does
    dropped = [s["request_duplicates"] for s in states]
    assert sum(dropped) == REQUESTS and all(dropped), dropped  # each worker dropped the second copies it read


async def _listening(client: httpx.AsyncClient) -> bool:
    try:
        return (await client.get("/health")).status_code == 200
    except httpx.TransportError:
        return False


async def _events(port: int, want: int) -> bool:
    state = await health(port)
    return bool(state and state["detect"] and state["detect"]["events"] >= want)


def _replay_events(records: list[tuple[str, bytes]], out: Path) -> int:
    """Events ``gatewatch replay`` counts for the callback's and SpendLogs' records, one file each
    in its source's order (time)."""
    docs = [orjson.loads(r) for _, r in records]
    callback = sorted((d for d in docs if "response_cost" in d), key=lambda d: d["endTime"])
    spendlogs = sorted((d for d in docs if "spend" in d), key=lambda d: d["endTime"])  # ISO text
    assert len(callback) + len(spendlogs) == len(docs)
    files = []
    for name, rows in (("callback", callback), ("spendlogs", spendlogs)):
        files.append(str(out / f"{name}.ndjson"))
        Path(files[-1]).write_bytes(b"".join(orjson.dumps(d) + b"\n" for d in rows))
    engine = build_engine()
    replay(files, io.BytesIO(), engine=engine)
    return engine.events
