"""``tail litellm-db``: SpendLogs on the real PostgreSQL (overlap, late rows, restart) and SQLite request_log."""

from __future__ import annotations

import sqlite3
import uuid
from collections import Counter
from datetime import datetime, timedelta, timezone

import orjson
import psycopg
import pytest

from connectors.checkpoint import Checkpoint
from connectors.kafka import BatchProducer, ensure_topics, raw_topic
from connectors.spendlogs_source import RequestLogSource, SpendLogsConfig, SpendLogsSource
from tests.kafka_broker import read_raw

pytestmark = pytest.mark.integration
DSN = "postgresql://postgres@127.0.0.1:5432/test"
T0 = datetime(2026, 8, 21, 14, 0, 0, tzinfo=timezone.utc)
# Prisma's schema for LiteLLM_SpendLogs (SOURCES.md §1b), as `prisma migrate` creates it.
DDL = """
CREATE TABLE {schema}."LiteLLM_SpendLogs" (
  request_id TEXT PRIMARY KEY, call_type TEXT NOT NULL, api_key TEXT NOT NULL DEFAULT '',
  spend DOUBLE PRECISION NOT NULL DEFAULT 0.0, total_tokens INTEGER NOT NULL DEFAULT 0,
  prompt_tokens INTEGER NOT NULL DEFAULT 0, completion_tokens INTEGER NOT NULL DEFAULT 0,
  "startTime" TIMESTAMP(3) NOT NULL, "endTime" TIMESTAMP(3) NOT NULL, request_duration_ms INTEGER,
  "completionStartTime" TIMESTAMP(3), model TEXT NOT NULL DEFAULT '', model_id TEXT DEFAULT '',
  model_group TEXT DEFAULT '', custom_llm_provider TEXT DEFAULT '', api_base TEXT DEFAULT '',
  "user" TEXT DEFAULT '', metadata JSONB DEFAULT '{{}}', cache_hit TEXT DEFAULT '', cache_key TEXT DEFAULT '',
  request_tags JSONB DEFAULT '[]', team_id TEXT, organization_id TEXT, end_user TEXT,
  requester_ip_address TEXT, messages JSONB DEFAULT '{{}}', response JSONB DEFAULT '{{}}',
  proxy_server_request JSONB DEFAULT '{{}}', session_id TEXT, status TEXT,
  mcp_namespaced_tool_name TEXT, agent_id TEXT);
CREATE INDEX ON {schema}."LiteLLM_SpendLogs" ("startTime", request_id);
"""


@pytest.fixture
async def spendlogs_schema():
    schema = f"gw_{uuid.uuid4().hex[:10]}"
    try:
        conn = await psycopg.AsyncConnection.connect(DSN, autocommit=True)
    except psycopg.OperationalError as exc:
        pytest.skip(f"no PostgreSQL at {DSN}: {exc}")
    await conn.execute(f"CREATE SCHEMA {schema}")
    await conn.execute(DDL.format(schema=schema))
    yield conn, schema
    await conn.execute(f"DROP SCHEMA {schema} CASCADE")
    await conn.close()


async def _insert(conn, schema: str, rows: list[tuple[str, float]]) -> None:
    """Rows ``(request_id, seconds after T0)``, in one transaction, as LiteLLM's batch writer does."""
    async with conn.transaction():
        for rid, offset in rows:
            start = (T0 + timedelta(seconds=offset)).replace(tzinfo=None)
            await conn.execute(
                f'INSERT INTO {schema}."LiteLLM_SpendLogs" (request_id, call_type, spend, "startTime", "endTime", '
                'model, cache_hit, metadata, status) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)',
                (rid, "acompletion", 0.001, start, start + timedelta(seconds=2), "gpt-4o-mini", "False",
                 '{"user_api_key_team_alias": "support"}', "success"))


async def test_spendlogs_overlap_late_rows_and_restart(kafka_bootstrap, spendlogs_schema, tmp_path) -> None:
    conn, schema = spendlogs_schema
    prefix = f"t{uuid.uuid4().hex[:10]}"
    await ensure_topics(kafka_bootstrap, prefix)
    producer = BatchProducer(kafka_bootstrap, "litellm-db", prefix=prefix, linger=60)
    await producer.start()
    cp = Checkpoint(tmp_path / "spend.json")
    config = SpendLogsConfig(dsn=DSN, table=f'{schema}."LiteLLM_SpendLogs"', overlap=60, page_size=7,
                             since=T0 - timedelta(seconds=1))
    async with await psycopg.AsyncConnection.connect(DSN, autocommit=True) as tail_conn:
        await tail_conn.execute("SET TIME ZONE 'UTC'")
        source = SpendLogsSource(config, producer, cp)
        await _insert(conn, schema, [(f"a{i:03d}", i) for i in range(30)])
        assert await source.poll_once(tail_conn) == 30
        # Late rows inside the window (one ties the high-water time with a smaller id), and new ones.
        await _insert(conn, schema, [("late1", 10.5), ("late2", 10.5), ("a000x", 29), *[(f"b{i}", 30 + i) for i in range(30)]])
        assert await source.poll_once(tail_conn) == 33
        assert await source.poll_once(tail_conn) == 0  # nothing new: the overlap re-read sends nothing

        source = SpendLogsSource(config, producer, cp)  # restart from the checkpoint
        assert source.high_water == T0 + timedelta(seconds=59)
        await _insert(conn, schema, [("late3", 40), ("too-late", -5), *[(f"c{i}", 60 + i) for i in range(30)]])
        assert await source.poll_once(tail_conn) == 31  # "too-late" is older than the checkpoint's high-water (T0+59 s) − overlap (60 s)
    await producer.stop()

    got = [orjson.loads(r) for _, r in await read_raw(kafka_bootstrap, [raw_topic("litellm", prefix)], expect=94)]
    counts = Counter(r["request_id"] for r in got)
    assert len(counts) == 94 and set(counts.values()) == {1}  # each row exactly once
    assert "too-late" not in counts
    row = next(r for r in got if r["request_id"] == "a005")
    assert row["startTime"] == "2026-08-21T14:00:05" and row["cache_hit"] == "False"
    assert row["metadata"] == {"user_api_key_team_alias": "support"} and "user" in row  # column names kept


async def test_sqlite_request_log_by_id(kafka_bootstrap, tmp_path) -> None:
    db = tmp_path / "gateway.db"
    with sqlite3.connect(db) as c:
        c.execute("CREATE TABLE request_log (id INTEGER PRIMARY KEY, timestamp TEXT, user_id TEXT, model TEXT, "
                  "prompt_tokens INTEGER, completion_tokens INTEGER, total_tokens INTEGER, cost REAL, "
                  "latency REAL, status_code INTEGER)")
        c.executemany("INSERT INTO request_log (timestamp, user_id, model, prompt_tokens, completion_tokens, "
                      "total_tokens, cost, latency, status_code) VALUES (?,?,?,?,?,?,?,?,?)",
                      [(f"2026-08-21T14:00:{i:02d}Z", "u1", "gpt-4o-mini", 10, 5, 15, 0.0001, 0.8, 200)
                       for i in range(25)])
    prefix = f"t{uuid.uuid4().hex[:10]}"
    await ensure_topics(kafka_bootstrap, prefix)
    producer = BatchProducer(kafka_bootstrap, "litellm-db", prefix=prefix, linger=60)
    await producer.start()
    cp = Checkpoint(tmp_path / "rl.json")
    assert await RequestLogSource(str(db), producer, cp, page_size=10).poll_once() == 25
    with sqlite3.connect(db) as c:
        c.execute("INSERT INTO request_log (timestamp, model, status_code) VALUES ('2026-08-21T14:01:00Z', 'x', 500)")
    assert await RequestLogSource(str(db), producer, cp, page_size=10).poll_once() == 1  # resumed from id 25
    await producer.stop()
    got = [orjson.loads(r) for _, r in await read_raw(kafka_bootstrap, [raw_topic("litellm", prefix)], expect=26)]
    assert [r["id"] for r in got] == list(range(1, 27))
    assert got[0]["request_log"] is True and got[0]["status_code"] == 200 and got[-1]["status_code"] == 500
