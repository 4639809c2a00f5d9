"""``gatewatch tail redis`` / ``gatewatch tail postgres``: resource metrics into ``<prefix>.raw.infra``.

Every ``interval`` seconds one poll emits metric records
``{"gatewatch_metric": name, "value": v, "labels": {...}, "timestamp": iso}``:

- Redis (the LiteLLM cache), from ``INFO``: ``redis_used_memory_bytes``,
  ``redis_maxmemory_bytes``, ``redis_evicted_keys`` (a counter since start),
  ``redis_connected_clients``, ``redis_keyspace_hits``, ``redis_keyspace_misses``.
- PostgreSQL (LiteLLM's and Langfuse's database): ``postgres_connections_in_use``,
  ``postgres_max_connections``, ``postgres_connections_used_ratio``,
  ``postgres_long_running_queries`` (active longer than ``long_query_s``),
  ``postgres_longest_query_seconds``, and, when the ``pg_stat_statements`` extension is
  installed, ``postgres_mean_exec_time_ms`` (over all statements since its last reset).

The emitted values are raw readings; rates and thresholds are the worker's business.
A failed poll is itself recorded (``<system>_up`` = 0) so that a dead cache or database
shows up downstream instead of as silence.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone

import orjson
import psycopg
import redis.asyncio as aioredis

from connectors.checkpoint import sleep_or_stop
from connectors.kafka import BatchProducer

__all__ = ["metric_record", "redis_metrics", "postgres_metrics", "MetricPoller"]

log = logging.getLogger("gatewatch.source.infra")
_REDIS_FIELDS = {
    "used_memory": "redis_used_memory_bytes", "maxmemory": "redis_maxmemory_bytes",
    "evicted_keys": "redis_evicted_keys", "connected_clients": "redis_connected_clients",
    "keyspace_hits": "redis_keyspace_hits", "keyspace_misses": "redis_keyspace_misses",
}
_PG_ACTIVITY = """
SELECT count(*) AS in_use,
       count(*) FILTER (WHERE state = 'active' AND now() - query_start > make_interval(secs => %s)) AS long_running,
       coalesce(max(extract(epoch FROM now() - query_start)) FILTER (WHERE state = 'active'), 0) AS longest
FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()
"""
_PG_STATEMENTS = "SELECT sum(total_exec_time) / nullif(sum(calls), 0) FROM pg_stat_statements"


def metric_record(name: str, value: float, labels: dict[str, str], at: datetime) -> bytes:
    return orjson.dumps({"gatewatch_metric": name, "value": value, "labels": labels,
                         "timestamp": at.isoformat(timespec="milliseconds").replace("+00:00", "Z")})


async def redis_metrics(url: str, labels: dict[str, str]) -> list[tuple[str, float]]:
    client = aioredis.from_url(url, socket_timeout=5)
    try:
        info = await client.info()
    finally:
        await client.aclose()
    return [(name, float(info[key])) for key, name in _REDIS_FIELDS.items() if key in info]


async def postgres_metrics(dsn: str, long_query_s: float = 60.0) -> list[tuple[str, float]]:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True, connect_timeout=5) as conn:
        in_use, long_running, longest = await (await conn.execute(_PG_ACTIVITY, (long_query_s,))).fetchone()
        max_conn = int((await (await conn.execute("SHOW max_connections")).fetchone())[0])
        out = [("postgres_connections_in_use", float(in_use)), ("postgres_max_connections", float(max_conn)),
               ("postgres_connections_used_ratio", in_use / max_conn if max_conn else 0.0),
               ("postgres_long_running_queries", float(long_running)),
               ("postgres_longest_query_seconds", float(longest))]
        mean = await _mean_exec_time_ms(conn)
        if mean is not None:
            out.append(("postgres_mean_exec_time_ms", mean))
    return out


async def _mean_exec_time_ms(conn: psycopg.AsyncConnection) -> float | None:
    if not await (await conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'pg_stat_statements'")).fetchone():
        return None
    try:
        mean = (await (await conn.execute(_PG_STATEMENTS)).fetchone())[0]
    except psycopg.Error:  # created but not in shared_preload_libraries: no statistics
        return None
    return float(mean) if mean is not None else None


class MetricPoller:
    """Calls ``read()`` every ``interval`` seconds and sends its readings as metric records."""

    def __init__(self, system: str, read: Callable[[], Awaitable[list[tuple[str, float]]]],
                 labels: dict[str, str], producer: BatchProducer, interval: float = 15.0) -> None:
        self.system, self.read, self.labels = system, read, labels
        self.producer, self.interval = producer, interval

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.poll_once()
            await sleep_or_stop(stop, self.interval)

    async def poll_once(self) -> int:
        at = datetime.now(timezone.utc)
        try:
            readings = await self.read()
            readings.append((f"{self.system}_up", 1.0))
        except Exception as exc:  # the system being down is a reading, not a crash
            self.producer.metrics.errors()
            log.warning("poll failed", extra={"kv": {"system": self.system, "error": f"{type(exc).__name__}: {exc}"}})
            readings = [(f"{self.system}_up", 0.0)]
        for name, value in readings:
            await self.producer.add("infra", metric_record(name, value, self.labels, at), key=self.system.encode())
        await self.producer.flush()
        return len(readings)
