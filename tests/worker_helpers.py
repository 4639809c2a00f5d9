"""Helpers for the worker tests: raw records, a worker subprocess, topic readers, a webhook."""

from __future__ import annotations

import asyncio
import io
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path

import orjson
from aiohttp import web

from gatewatch.replay import replay

# Short timeouts so a consumer group joins in seconds (Faust's first join waits half the
# session timeout), idle partitions stop holding the watermark fast, snapshots are frequent.
FAST = {"GATEWATCH_SESSION_TIMEOUT": "6", "GATEWATCH_IDLE_SECONDS": "3", "GATEWATCH_TICK_SECONDS": "0.5",
        "GATEWATCH_SNAPSHOT_SECONDS": "1"}


def litellm_payload(ts: float, ok: bool = True, provider: str = "openai", model: str = "gpt-4o",
                    team: str = "support", request_id: str | None = None) -> bytes:
    """A minimal LiteLLM ``StandardLoggingPayload`` line (CONTRACT §2)."""
    rec = {"id": request_id or f"req-{ts:.3f}-{ok}", "call_type": "acompletion", "startTime": ts - 1.0,
           "endTime": ts, "model": model, "model_group": model, "custom_llm_provider": provider,
           "response_cost": 0.001, "total_tokens": 100, "status": "success" if ok else "failure",
           "metadata": {"user_api_key_team_alias": team, "user_api_key_alias": f"{team}-svc"}}
    if not ok:
        rec["error_information"] = {"error_code": "503", "error_class": "ServiceUnavailableError",
                                    "llm_provider": provider}
    return orjson.dumps(rec)


def spendlog_row(ts: float, request_id: str, team: str = "support") -> bytes:
    """The ``"LiteLLM_SpendLogs"`` row of the request ``litellm_payload(ts, request_id=...)`` posts,
    as ``tail litellm-db`` sends it (CONTRACT §2; Prisma's naive UTC times)."""
    def iso(t: float) -> str:
        return datetime.fromtimestamp(t, timezone.utc).replace(tzinfo=None).isoformat()

    return orjson.dumps({"request_id": request_id, "call_type": "acompletion", "spend": 0.001,
                         "total_tokens": 100, "startTime": iso(ts - 1.0), "endTime": iso(ts),
                         "model": "gpt-4o", "model_group": "gpt-4o", "custom_llm_provider": "openai",
                         "status": "success",
                         "metadata": {"user_api_key_team_alias": team, "user_api_key_alias": f"{team}-svc"}})


def simulate_small(out: Path, incidents: str = "provider_outage", hours: float = 1.5) -> list[str]:
    from gatewatch.simulate import simulate

    simulate(out, hours=hours, rps=2, incidents=incidents, workers=1, seed=7)
    return [str(out / f"{name}.ndjson.gz") for name in ("litellm", "fly", "langfuse")]


def replay_notes(paths: list[str], engine=None) -> list[dict]:
    out = io.BytesIO()
    replay(paths, out, engine=engine)
    return [orjson.loads(line) for line in out.getvalue().splitlines()]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def gatewatch(*args: str, env: dict | None = None, log: Path | None = None, **kw) -> subprocess.Popen:
    out = open(log, "ab") if log else subprocess.DEVNULL
    return subprocess.Popen([sys.executable, "-m", "gatewatch", *args], env={**os.environ, **(env or {})},
                            stdout=out, stderr=subprocess.STDOUT, **kw)


def start_worker(bootstrap: str, prefix: str, state: Path, port: int, app_id: str,
                 extra_env: dict | None = None) -> subprocess.Popen:
    env = {**FAST, "GATEWATCH_APP_ID": app_id, **(extra_env or {})}
    return gatewatch("worker", "--brokers", bootstrap, "--topic-prefix", prefix, "--state-dir", str(state),
                     "--web-port", str(port), env=env, log=state.with_suffix(".log"))


def tail_files(bootstrap: str, prefix: str, state: Path, paths: Iterable[str], **kw) -> subprocess.Popen:
    return gatewatch("tail", "file", *paths, "--brokers", bootstrap, "--topic-prefix", prefix,
                     "--state-dir", str(state), **kw)


async def health(port: int) -> dict | None:
    import httpx

    try:
        async with httpx.AsyncClient(timeout=1.0) as client:
            return (await client.get(f"http://127.0.0.1:{port}/health")).json()
    except (httpx.HTTPError, ValueError):
        return None


async def detect_owner(ports: list[int]) -> int | None:
    """The index of the worker that runs detection, if one does."""
    for i, port in enumerate(ports):
        state = await health(port)
        if state and state["detect"] is not None:
            return i
    return None


async def balanced(ports: list[int], partitions: int) -> bool:
    """Every raw partition and the partials partition assigned, each to exactly one worker."""
    states = [await health(p) for p in ports]
    if not all(states):
        return False
    assigned = [tp for s in states for tp in s["assigned"] if ".raw." in tp or tp.endswith(".partials/0")]
    return len(assigned) == len(set(assigned)) == 4 * partitions + 1 and all(s["assigned"] for s in states)


async def read_topic(bootstrap: str, topic: str, *, until: int, timeout: float,
                     settle: float = 3.0, flatten: bool = False) -> list[dict]:
    """JSON values on ``topic`` from the start: stop ``settle`` s after ``until`` were read.
    ``flatten``: a value that is a JSON list counts as its items (the partials topic, whose
    values hold the partials messages of one fetch each)."""
    from aiokafka import AIOKafkaConsumer

    from streams.stages import partials_messages

    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False)
    await consumer.start()
    out: list[dict] = []
    deadline, reached = time.monotonic() + timeout, None
    try:
        while time.monotonic() < deadline and (reached is None or time.monotonic() < reached + settle):
            for messages in (await consumer.getmany(timeout_ms=200)).values():
                for m in messages:
                    out.extend(partials_messages(m.value) if flatten else [orjson.loads(m.value)])
            if reached is None and len(out) >= until:
                reached = time.monotonic()
    finally:
        await consumer.stop()
    return out


class WebhookReceiver:
    """A local HTTP server that records every POST body and its Idempotency-Key."""

    def __init__(self) -> None:
        self.received: list[tuple[str, dict]] = []
        self.port = free_port()
        self._runner: web.AppRunner | None = None

    async def __aenter__(self) -> WebhookReceiver:
        app = web.Application()
        app.router.add_post("/hook", self._hook)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def _hook(self, request: web.Request) -> web.Response:
        self.received.append((request.headers.get("Idempotency-Key", ""), await request.json()))
        return web.json_response({"ok": True})


async def wait_for(predicate, timeout: float, every: float = 0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await predicate()
        if value is not None and value is not False and value != {}:  # 0 is an answer
            return value
        await asyncio.sleep(every)
    return None
