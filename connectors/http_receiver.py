"""``gatewatch tail litellm-http``: a receiver for LiteLLM's ``generic_api`` callback.

LiteLLM POSTs batches of ``StandardLoggingPayload`` objects to one endpoint
(SOURCES.md §1d) as a JSON array (default ``log_format: json_array``), NDJSON, or one
object per request (``single``). Point ``GENERIC_LOGGER_ENDPOINT`` at any path of this
server and send the shared secret in ``X-Gatewatch-Secret`` (or ``Authorization:
Bearer``): ``GENERIC_LOGGER_HEADERS="X-Gatewatch-Secret=<GATEWATCH_RECEIVER_SECRET>"``.

Answers:

- ``200 {"accepted": n}`` only after Kafka acknowledged every record of the body;
- ``503`` (with ``Retry-After``) when the broker did not acknowledge in time;
- ``401`` bad or missing secret (compared in constant time);
- ``400 {"error": reason}`` malformed body (not JSON, not objects).

LiteLLM's batch logger does not retry (its queue is cleared after each attempt), so a
503 is lost on LiteLLM's side; it is still the truthful answer, and it is counted.
Each object is re-serialised compactly (one line) and sent unparsed otherwise, to the
partition of its request ``id`` (where SpendLogs puts the same request: ``connectors.kafka``).
"""

from __future__ import annotations

import asyncio
import hmac
import logging

import orjson
from aiohttp import web

from connectors.kafka import BatchProducer, DeliveryError
from connectors.metrics import add_health_routes

__all__ = ["SECRET_HEADER", "split_body", "body_items", "MalformedBody", "build_app", "ReceiverSource"]

SECRET_HEADER = "X-Gatewatch-Secret"
log = logging.getLogger("gatewatch.source.litellm_http")


class MalformedBody(ValueError):
    pass


def split_body(body: bytes) -> list[bytes]:
    """The records of a generic_api body (array, NDJSON or single object), one line each."""
    return [orjson.dumps(item) for item in body_items(body)]


def body_items(body: bytes) -> list[dict]:
    """The objects of a generic_api body (array, NDJSON or single object)."""
    text = body.strip()
    if not text:
        raise MalformedBody("empty body")
    try:
        doc = orjson.loads(text)
    except orjson.JSONDecodeError:
        return _split_ndjson(text)
    items = doc if isinstance(doc, list) else [doc]
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise MalformedBody(f"item {i} is a JSON {type(item).__name__}, not an object")
    return items


def _split_ndjson(text: bytes) -> list[dict]:
    records = []
    for n, line in enumerate(text.split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            item = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise MalformedBody(f"line {n}: not JSON ({exc})") from None
        if not isinstance(item, dict):
            raise MalformedBody(f"line {n}: a JSON {type(item).__name__}, not an object")
        records.append(item)
    return records


def _request_id(item: dict) -> str | None:
    rid = item.get("id")
    return str(rid) if rid else None


def _authorised(request: web.Request, secret: bytes) -> bool:
    given = request.headers.get(SECRET_HEADER, "")
    auth = request.headers.get("Authorization", "")
    if not given and auth.lower().startswith("bearer "):
        given = auth[7:].strip()
    return hmac.compare_digest(given.encode(), secret)


def build_app(producer: BatchProducer, secret: str | None, *, key: bytes = b"litellm-http",
              max_body: int = 64 * 1024 * 1024) -> web.Application:
    """The receiver app; ``secret=None`` disables auth (only for a private network)."""
    metrics = producer.metrics
    state = {"broker_ok": True}
    secret_bytes = secret.encode() if secret else None

    async def ingest(request: web.Request) -> web.Response:
        if secret_bytes is not None and not _authorised(request, secret_bytes):
            metrics.rejected("auth")
            return web.json_response({"error": "bad or missing secret"}, status=401)
        try:
            items = body_items(await request.read())
        except MalformedBody as exc:
            metrics.rejected("body")
            return web.json_response({"error": str(exc)}, status=400)
        records = [orjson.dumps(item) for item in items]
        try:
            await producer.send_records("litellm", records, key=key, routes=[_request_id(i) for i in items])
        except DeliveryError as exc:
            state["broker_ok"] = False
            log.warning("kafka did not acknowledge", extra={"kv": {"records": len(records), "error": str(exc)}})
            return web.json_response({"error": "broker unavailable"}, status=503, headers={"Retry-After": "5"})
        state["broker_ok"] = True
        return web.json_response({"accepted": len(records)})

    app = web.Application(client_max_size=max_body)
    add_health_routes(app, lambda: {"ok": state["broker_ok"], "source": "litellm-http", **metrics.totals})
    app.router.add_route("POST", "/{path:.*}", ingest)
    return app


class ReceiverSource:
    """Serves :func:`build_app` until ``stop``; in-flight requests finish before it returns."""

    def __init__(self, producer: BatchProducer, secret: str | None, host: str, port: int) -> None:
        self.app, self.host, self.port = build_app(producer, secret), host, port

    async def run(self, stop: asyncio.Event) -> None:
        runner = web.AppRunner(self.app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, self.host, self.port).start()
        log.info("receiver listening", extra={"kv": {"host": self.host, "port": self.port}})
        try:
            await stop.wait()
        finally:
            await runner.cleanup()
