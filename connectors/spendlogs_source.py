"""``gatewatch tail litellm-db``: LiteLLM's spend log tables into ``<prefix>.raw.litellm``.

PostgreSQL ``"LiteLLM_SpendLogs"`` (SOURCES.md §1b) is written by LiteLLM's batched DB
writer, so rows appear late and out of order by ``"startTime"``. Each poll therefore
re-reads an **overlap window** before the high-water mark, keyset-paged by
``("startTime", request_id)`` (the table has that index), and skips the request_ids
already sent inside the window. A row that lands later than the overlap behind the
newest row is missed: choose ``overlap`` above the writer's flush lag (default 120 s).
Rows are converted by PostgreSQL itself (``to_jsonb``, session time zone UTC), so the
JSON keeps the column names.

SQLite ``request_log`` (smaller gateways: ``id, timestamp, user_id, model, ...``) is
tailed by its integer ``id``; each row becomes ``{"request_log": true, <columns>}``.

The checkpoint (high-water mark + ids inside the window, or the last id) is written
only after Kafka acknowledged everything before it.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import orjson
import psycopg

from connectors.checkpoint import Checkpoint, sleep_or_stop
from connectors.kafka import BatchProducer

__all__ = ["SpendLogsConfig", "SpendLogsSource", "RequestLogSource"]

log = logging.getLogger("gatewatch.source.litellm_db")
_PAGE_SQL = (
    'SELECT "startTime", request_id, to_jsonb(t)::text FROM {table} t '
    'WHERE ("startTime", request_id) > (%s, %s) ORDER BY "startTime", request_id LIMIT %s')


@dataclass(slots=True)
class SpendLogsConfig:
    dsn: str
    table: str = '"LiteLLM_SpendLogs"'  # may be schema-qualified: 'myschema."LiteLLM_SpendLogs"'
    overlap: float = 120.0
    interval: float = 5.0
    page_size: int = 1000
    since: datetime | None = None  # first run without a checkpoint; default: now - overlap


class SpendLogsSource:
    def __init__(self, config: SpendLogsConfig, producer: BatchProducer, checkpoint: Checkpoint) -> None:
        self.config, self.producer, self.checkpoint = config, producer, checkpoint
        state = checkpoint.load()
        start = config.since or datetime.now(timezone.utc) - timedelta(seconds=config.overlap)
        self.high_water = datetime.fromisoformat(state["high_water"]) if "high_water" in state else start
        self.recent: dict[str, str] = state.get("recent", {})  # request_id -> startTime (ISO)

    async def run(self, stop: asyncio.Event) -> None:
        async with await psycopg.AsyncConnection.connect(self.config.dsn, autocommit=True) as conn:
            await conn.execute("SET TIME ZONE 'UTC'")
            while not stop.is_set():
                await self.poll_once(conn)
                await sleep_or_stop(stop, self.config.interval)

    async def poll_once(self, conn: psycopg.AsyncConnection) -> int:
        """Send the rows of the overlap window not sent yet; return how many were sent."""
        cursor: tuple[datetime, str] = (self.high_water - timedelta(seconds=self.config.overlap), "")
        sent, newest = 0, self.high_water
        sql = _PAGE_SQL.format(table=self.config.table)
        while True:
            rows = await (await conn.execute(sql, (*cursor, self.config.page_size))).fetchall()
            for start, request_id, doc in rows:
                start = _aware(start)
                newest = max(newest, start)
                if request_id not in self.recent:
                    # on the partition of its request id, as the callback's copy (connectors.kafka)
                    await self.producer.add("litellm", doc.encode(), key=b"litellm-db", route=request_id)
                    self.recent[request_id] = start.isoformat()
                    sent += 1
            if len(rows) < self.config.page_size:
                break
            cursor = (rows[-1][0], rows[-1][1])
        await self._commit(newest)
        return sent

    async def _commit(self, newest: datetime) -> None:
        await self.producer.flush()
        self.high_water = newest
        floor = newest - timedelta(seconds=self.config.overlap)
        self.recent = {rid: ts for rid, ts in self.recent.items() if datetime.fromisoformat(ts) >= floor}
        self.checkpoint.save({"high_water": newest.isoformat(), "recent": self.recent})


def _aware(ts: datetime) -> datetime:
    # Prisma's DateTime is "timestamp(3) without time zone", stored in UTC.
    return ts if ts.tzinfo else ts.replace(tzinfo=timezone.utc)


class RequestLogSource:
    """Tails the SQLite ``request_log`` table by id."""

    def __init__(self, path: str, producer: BatchProducer, checkpoint: Checkpoint, *,
                 interval: float = 5.0, page_size: int = 1000, table: str = "request_log") -> None:
        self.path, self.producer, self.checkpoint = path, producer, checkpoint
        self.interval, self.page_size, self.table = interval, page_size, table
        self.last_id = int(checkpoint.load().get("last_id", 0))

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.poll_once()
            await sleep_or_stop(stop, self.interval)

    async def poll_once(self) -> int:
        sent = 0
        while True:
            rows = await asyncio.to_thread(self._read_page, self.last_id)
            for row in rows:
                await self.producer.add("litellm", orjson.dumps({"request_log": True, **row}),
                                        key=b"litellm-db")
            sent += len(rows)
            if rows:
                await self.producer.flush()
                self.last_id = int(rows[-1]["id"])
                self.checkpoint.save({"last_id": self.last_id})
            if len(rows) < self.page_size:
                return sent

    def _read_page(self, after_id: int) -> list[dict]:
        # A read-only connection per page: the gateway keeps writing to the file.
        conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=10)
        conn.row_factory = sqlite3.Row
        try:
            cur = conn.execute(f"SELECT * FROM {self.table} WHERE id > ? ORDER BY id LIMIT ?",
                               (after_id, self.page_size))
            return [dict(r) for r in cur.fetchall()]
        finally:
            conn.close()
