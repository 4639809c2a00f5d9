"""The same telemetry from every ``gatewatch tail`` source (the Vector model).

Counters, all labelled by ``source`` (the tail source name):
``gatewatch_source_records_in_total`` (records read from the source),
``gatewatch_source_records_out_total`` (records acknowledged by Kafka),
``gatewatch_source_rejected_total{stage}`` (records dropped, and at which stage),
``gatewatch_source_batches_total`` (Kafka messages acknowledged),
``gatewatch_source_errors_total`` (source or broker errors, retried or not).

:func:`start_health_server` serves ``/health`` and ``/metrics`` on a small aiohttp app;
the HTTP receiver mounts the same two routes on its own app instead.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, generate_latest

__all__ = ["SourceMetrics", "add_health_routes", "start_health_server"]

_IN = Counter("gatewatch_source_records_in", "records read from the source", ["source"])
_OUT = Counter("gatewatch_source_records_out", "records acknowledged by Kafka", ["source"])
_REJECTED = Counter("gatewatch_source_rejected", "records dropped", ["source", "stage"])
_BATCHES = Counter("gatewatch_source_batches", "Kafka batches acknowledged", ["source"])
_ERRORS = Counter("gatewatch_source_errors", "source or broker errors", ["source"])


class SourceMetrics:
    """The counters of one source, with plain totals kept beside them for /health and tests."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.totals = {"records_in": 0, "records_out": 0, "rejected": 0, "batches": 0, "errors": 0}

    def records_in(self, n: int = 1) -> None:
        self._count("records_in", _IN.labels(self.source), n)

    def records_out(self, n: int = 1) -> None:
        self._count("records_out", _OUT.labels(self.source), n)

    def rejected(self, stage: str, n: int = 1) -> None:
        self._count("rejected", _REJECTED.labels(self.source, stage), n)

    def batches(self, n: int = 1) -> None:
        self._count("batches", _BATCHES.labels(self.source), n)

    def errors(self, n: int = 1) -> None:
        self._count("errors", _ERRORS.labels(self.source), n)

    def _count(self, name: str, counter: Counter, n: int) -> None:
        self.totals[name] += n
        counter.inc(n)


def add_health_routes(app: web.Application, health: Callable[[], dict]) -> None:
    """``GET /health`` answers 200 with ``health()`` as JSON, or 503 when it says ``ok: false``."""

    async def health_handler(_: web.Request) -> web.Response:
        body = health()
        return web.Response(text=json.dumps(body), status=200 if body.get("ok", True) else 503,
                            content_type="application/json")

    async def metrics_handler(_: web.Request) -> web.Response:
        resp = web.Response(body=generate_latest(REGISTRY))
        resp.content_type = CONTENT_TYPE_LATEST.split(";")[0]
        return resp

    app.router.add_get("/health", health_handler)
    app.router.add_get("/metrics", metrics_handler)


async def start_health_server(host: str, port: int, health: Callable[[], dict]) -> web.AppRunner:
    """Serve /health and /metrics; the caller ``await runner.cleanup()`` on shutdown."""
    app = web.Application()
    add_health_routes(app, health)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
