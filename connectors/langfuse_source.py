"""``gatewatch tail langfuse``: Langfuse observations into ``<prefix>.raw.langfuse``.

Polls the public API (SOURCES.md §2) with Basic auth (``LANGFUSE_PUBLIC_KEY`` /
``LANGFUSE_SECRET_KEY``) on ``LANGFUSE_HOST``:

- v2 ``/api/public/v2/observations`` (cursor-based, Langfuse v4 servers), or
- v1 ``/api/public/observations`` (page-based, deprecated, ``limit`` ≤ 100);
- ``api="auto"`` tries v2 and falls back to v1 for good on a 404.

Each sweep asks for ``fromStartTime = high_water - overlap`` and follows pages/cursors
to the end. Observations reach Langfuse late (that lag is itself a signal), so the
overlap re-reads the recent past, and ids already sent inside it are skipped. A sweep is
restartable, so the checkpoint holds only the high-water start time and the ids seen in
the window, written after Kafka acknowledged the sweep.

429 waits ``Retry-After`` (seconds or an HTTP date); 5xx and network errors back off
exponentially up to ``max_backoff``; other 4xx (bad keys) stop the source.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime

import httpx
import orjson

from connectors.checkpoint import Checkpoint, sleep_or_stop
from connectors.kafka import BatchProducer

__all__ = ["LangfuseConfig", "LangfuseSource", "LangfuseError"]

log = logging.getLogger("gatewatch.source.langfuse")
V1_PATH, V2_PATH = "/api/public/observations", "/api/public/v2/observations"


class LangfuseError(Exception):
    pass


class _NotFound(LangfuseError):
    pass


class _Stopped(Exception):
    """Shutdown arrived while waiting to retry: abandon the sweep, keep the checkpoint."""


@dataclass(slots=True)
class LangfuseConfig:
    host: str
    public_key: str
    secret_key: str  # never logged
    api: str = "auto"  # auto | v1 | v2
    overlap: float = 300.0
    interval: float = 30.0
    v2_fields: str = "core,basic,time,usage,metrics,model"
    backoff: float = 1.0
    max_backoff: float = 60.0
    since: datetime | None = None


class LangfuseSource:
    def __init__(self, config: LangfuseConfig, producer: BatchProducer, checkpoint: Checkpoint,
                 client: httpx.AsyncClient | None = None) -> None:
        self.config, self.producer, self.checkpoint = config, producer, checkpoint
        self.client = client or httpx.AsyncClient(
            base_url=config.host, auth=(config.public_key, config.secret_key), timeout=30.0,
            headers={"X-Langfuse-Sdk-Name": "gatewatch"})
        state = checkpoint.load()
        start = config.since or datetime.now(timezone.utc) - timedelta(seconds=config.overlap)
        self.high_water = datetime.fromisoformat(state["high_water"]) if "high_water" in state else start
        self.seen: dict[str, str] = state.get("seen", {})
        self.api = state.get("api", config.api)
        self._stop = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        self._stop = stop
        async with self.client:
            while not stop.is_set():
                try:
                    await self.poll_once()
                except _Stopped:
                    return
                await sleep_or_stop(stop, self.config.interval)

    async def poll_once(self) -> int:
        """One sweep over the overlap window; returns the number of new observations sent."""
        since = self.high_water - timedelta(seconds=self.config.overlap)
        sent, newest = 0, self.high_water
        async for items in self._pages(since):
            for item in items:
                start = _parse_time(item.get("startTime")) or newest
                newest = max(newest, start)
                if item.get("id") in self.seen:
                    continue
                self.seen[str(item.get("id"))] = start.isoformat()
                await self.producer.add("langfuse", orjson.dumps(item), key=str(item.get("traceId")).encode())
                sent += 1
        await self._commit(newest)
        return sent

    async def _pages(self, since: datetime) -> AsyncIterator[list[dict]]:
        if self.api in ("auto", "v2"):
            try:
                async for items in self._pages_v2(since):
                    yield items
                self.api = "v2"
                return
            except _NotFound:
                if self.api == "v2":
                    raise LangfuseError("v2 observations API not found (server is not Langfuse v4)")
                log.info("v2 observations API absent, using v1")
                self.api = "v1"
        async for items in self._pages_v1(since):
            yield items

    async def _pages_v2(self, since: datetime) -> AsyncIterator[list[dict]]:
        params = {"fromStartTime": _iso(since), "limit": 1000, "fields": self.config.v2_fields}
        while True:
            body = await self._get(V2_PATH, params)
            yield body.get("data") or []
            cursor = (body.get("meta") or {}).get("cursor")
            if not cursor:
                return
            params = {**params, "cursor": cursor}

    async def _pages_v1(self, since: datetime) -> AsyncIterator[list[dict]]:
        page = 1
        while True:
            body = await self._get(V1_PATH, {"fromStartTime": _iso(since), "limit": 100, "page": page})
            yield body.get("data") or []
            if page >= int((body.get("meta") or {}).get("totalPages") or 0):
                return
            page += 1

    async def _get(self, path: str, params: dict) -> dict:
        delay = self.config.backoff
        while not self._stop.is_set():
            wait, delay = await self._attempt(path, params, delay)
            if isinstance(wait, dict):
                return wait
            await sleep_or_stop(self._stop, wait)
        raise _Stopped()

    async def _attempt(self, path: str, params: dict, delay: float) -> tuple[dict | float, float]:
        """One request: ``(body, delay)`` on success, else ``(seconds to wait, next delay)``."""
        try:
            resp = await self.client.get(path, params=params)
        except httpx.TransportError as exc:
            return self._retry(f"network: {type(exc).__name__}", delay, delay)
        if resp.status_code == 200:
            return resp.json(), delay
        if resp.status_code == 404:
            raise _NotFound(path)
        if resp.status_code == 429:
            return self._retry("429", _retry_after(resp) or delay, delay)
        if resp.status_code >= 500:
            return self._retry(f"http {resp.status_code}", delay, delay)
        raise LangfuseError(f"{path}: HTTP {resp.status_code} {resp.text[:200]}")

    def _retry(self, reason: str, wait: float, delay: float) -> tuple[float, float]:
        self.producer.metrics.errors()
        log.warning("langfuse retry", extra={"kv": {"reason": reason, "wait_s": round(wait, 3)}})
        return wait, min(delay * 2, self.config.max_backoff)

    async def _commit(self, newest: datetime) -> None:
        await self.producer.flush()
        self.high_water = newest
        floor = newest - timedelta(seconds=self.config.overlap)
        self.seen = {i: ts for i, ts in self.seen.items() if datetime.fromisoformat(ts) >= floor}
        self.checkpoint.save({"high_water": newest.isoformat(), "seen": self.seen, "api": self.api})


def _retry_after(resp: httpx.Response) -> float | None:
    value = resp.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        return max((parsedate_to_datetime(value) - datetime.now(timezone.utc)).total_seconds(), 0.0)
    except (TypeError, ValueError):
        return None


def _parse_time(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        ts = datetime.fromisoformat(value)
    except ValueError:
        return None
    return ts if ts.tzinfo else ts.replace(tzinfo=timezone.utc)


def _iso(ts: datetime) -> str:
    return ts.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
