"""``gatewatch tail probe``: black-box health probes of the gateway into ``<prefix>.raw.infra``.

Every ``interval`` seconds GETs each URL (e.g. LiteLLM's ``/health/liveliness`` or
``/health/readiness``) and emits
``{"gatewatch_probe": url, "ok": bool, "status": code, "latency_ms": x, "timestamp": iso}``.
``ok`` is a 2xx answer within the timeout; a timeout or refused connection gives
``status`` null and an ``error`` string. The probe sees what a client sees, so it
catches an outage that leaves no log line (a dead machine logs nothing).
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime, timezone

import httpx
import orjson

from connectors.checkpoint import sleep_or_stop
from connectors.kafka import BatchProducer

__all__ = ["probe", "ProbeSource"]

log = logging.getLogger("gatewatch.source.probe")


async def probe(client: httpx.AsyncClient, url: str) -> dict:
    at = datetime.now(timezone.utc)
    started = time.perf_counter()
    status, error = None, None
    try:
        resp = await client.get(url)
        status = resp.status_code
    except httpx.HTTPError as exc:
        error = f"{type(exc).__name__}: {exc}"[:200]
    record = {"gatewatch_probe": url, "ok": status is not None and 200 <= status < 300, "status": status,
              "latency_ms": round((time.perf_counter() - started) * 1000, 3),
              "timestamp": at.isoformat(timespec="milliseconds").replace("+00:00", "Z")}
    if error:
        record["error"] = error
    return record


class ProbeSource:
    def __init__(self, urls: list[str], producer: BatchProducer, *, interval: float = 10.0,
                 timeout: float = 5.0, headers: dict[str, str] | None = None) -> None:
        self.urls, self.producer, self.interval = urls, producer, interval
        self.client = httpx.AsyncClient(timeout=timeout, headers=headers or {})

    async def run(self, stop: asyncio.Event) -> None:
        async with self.client:
            while not stop.is_set():
                await self.poll_once()
                await sleep_or_stop(stop, self.interval)

    async def poll_once(self) -> list[dict]:
        records = await asyncio.gather(*(probe(self.client, url) for url in self.urls))
        for record in records:
            if not record["ok"]:
                log.warning("probe failed", extra={"kv": {k: record.get(k) for k in ("gatewatch_probe", "status", "error")}})
            await self.producer.add("infra", orjson.dumps(record), key=b"probe")
        await self.producer.flush()
        return list(records)
