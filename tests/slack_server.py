"""Local HTTP servers for delivery tests: a fake Slack (Web API + incoming webhook) and a
webhook receiver that checks signatures. Real sockets on 127.0.0.1, so slack-sdk and
httpx run unmodified. Each can be scripted to answer 429 (with Retry-After), 500, an
API error, to be slow, or be stopped (connection refused) and started on the same port.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl

from connectors.webhook import verify


class ScriptedServer:
    """A threaded HTTP server whose next answers can be scripted with ``script``."""

    def __init__(self) -> None:
        self.port = 0
        self.requests: list[dict[str, Any]] = []
        self._script: list[tuple[str, Any]] = []
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self.accept_limit: int | None = None  # after this many accepted requests: 503

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ScriptedServer:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                owner._handle(self)

            def do_GET(self) -> None:  # noqa: N802 (slack-sdk reads history with GET)
                owner._handle(self)

            def log_message(self, *args: Any) -> None:
                return None

        self._httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        threading.Thread(target=self._httpd.serve_forever, args=(0.02,), daemon=True).start()
        return self

    def stop(self) -> None:
        """Stop listening: clients now get "connection refused" on this port."""
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def script(self, *steps: tuple[str, Any]) -> None:
        """Queue answers: ("status", 500), ("429", retry_after_s), ("slow", seconds),
        ("error", "channel_not_found" | http_status)."""
        with self._lock:
            self._script.extend(steps)

    def _next_step(self) -> tuple[str, Any] | None:
        with self._lock:
            return self._script.pop(0) if self._script else None

    def _handle(self, req: BaseHTTPRequestHandler) -> None:
        body = req.rfile.read(int(req.headers.get("Content-Length") or 0))
        step = self._next_step()
        if step and step[0] == "slow":
            time.sleep(step[1])
            step = None
        if step and step[0] == "status":
            return _reply(req, step[1], {"ok": False, "error": "internal_error"})
        if step and step[0] == "429":
            return _reply(req, 429, {"ok": False, "error": "ratelimited"}, {"Retry-After": str(step[1])})
        if self.accept_limit is not None and len(self.requests) >= self.accept_limit:
            return _reply(req, 503, {"ok": False, "error": "service_unavailable"})
        self.on_request(req, body, step)

    def on_request(self, req: BaseHTTPRequestHandler, body: bytes, step: tuple[str, Any] | None) -> None:
        raise NotImplementedError


def _reply(req: BaseHTTPRequestHandler, status: int, payload: Any, headers: dict[str, str] | None = None,
           content_type: str = "application/json") -> None:
    data = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
    req.send_response(status)
    req.send_header("Content-Type", content_type)
    req.send_header("Content-Length", str(len(data)))
    for k, v in (headers or {}).items():
        req.send_header(k, v)
    try:
        req.end_headers()
        req.wfile.write(data)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the client gave up (a timeout test); nothing to answer


def _listed(m: dict[str, Any]) -> dict[str, Any]:
    """A message as Slack lists it: ts, text and (asked for with include_all_metadata) metadata."""
    meta = m.get("metadata")
    if isinstance(meta, str):  # form-encoded requests carry it as JSON text
        meta = json.loads(meta)
    return {"ts": m["ts"], "text": m.get("text"), **({"metadata": meta} if meta else {})}


def _params(req: BaseHTTPRequestHandler, body: bytes) -> dict[str, Any]:
    if req.command == "GET":
        return dict(parse_qsl(req.path.partition("?")[2]))
    if "json" in (req.headers.get("Content-Type") or ""):
        return json.loads(body or b"{}")
    params: dict[str, Any] = dict(parse_qsl(body.decode()))
    if "blocks" in params:
        params["blocks"] = json.loads(params["blocks"])
    return params


class FakeSlack(ScriptedServer):
    """``/api/chat.postMessage``, ``/api/chat.update`` and ``/hooks/...`` (incoming webhook).
    ``messages`` maps ts → the current parent; ``requests`` keeps every accepted call."""

    def __init__(self) -> None:
        super().__init__()
        self.messages: dict[str, dict[str, Any]] = {}
        self.replies: dict[str, list[dict[str, Any]]] = {}  # parent ts → its thread, oldest first
        self._ts = 1_700_000_000

    @property
    def api_url(self) -> str:
        return self.url + "/api/"

    def on_request(self, req: BaseHTTPRequestHandler, body: bytes, step: tuple[str, Any] | None) -> None:
        if step and step[0] == "error":
            return _reply(req, 200, {"ok": False, "error": step[1]})
        if req.path.startswith("/hooks/"):
            self.requests.append({"method": "webhook", **json.loads(body)})
            return _reply(req, 200, "ok", content_type="text/plain")
        method = req.path.partition("?")[0].rsplit("/", 1)[-1]
        params = _params(req, body)
        if method == "conversations.history":  # newest first, with metadata, as Slack answers
            with self._lock:
                self.requests.append({"method": method, **params})
                found = [_listed({"ts": ts, **m}) for ts, m in sorted(self.messages.items(), reverse=True)
                         if m.get("channel") == params.get("channel")]
            return _reply(req, 200, {"ok": True, "messages": found[:int(params.get("limit") or 100)]})
        if method == "conversations.replies":  # the parent first, then its thread, as Slack answers
            with self._lock:
                self.requests.append({"method": method, **params})
                parent = params.get("ts")
                thread = [{"ts": parent, **self.messages.get(parent, {})}, *self.replies.get(parent, [])]
            return _reply(req, 200, {"ok": True, "messages": [_listed(m) for m in thread]})
        with self._lock:
            self._ts += 1
            ts = params["ts"] if method == "chat.update" else f"{self._ts}.000100"
            self.requests.append({"method": method, "ts": ts, **params})
            if method == "chat.postMessage" and not params.get("thread_ts"):
                self.messages[ts] = params
            elif method == "chat.postMessage":
                self.replies.setdefault(params["thread_ts"], []).append({"ts": ts, **params})
            elif method == "chat.update":
                self.messages[ts] = {**self.messages.get(ts, {}), **params}
        _reply(req, 200, {"ok": True, "channel": params.get("channel"), "ts": ts})

    def calls(self, method: str) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["method"] == method]


class WebhookReceiver(ScriptedServer):
    """Accepts JSON POSTs; checks ``X-Gatewatch-Signature`` when given a secret (401 if
    wrong) and records each Idempotency-Key in arrival order."""

    def __init__(self, secret: str | None = None) -> None:
        super().__init__()
        self.secret = secret
        self.bad_signatures = 0

    @property
    def keys(self) -> list[str]:
        return [r["key"] for r in self.requests]

    def on_request(self, req: BaseHTTPRequestHandler, body: bytes, step: tuple[str, Any] | None) -> None:
        if step and step[0] == "error":
            return _reply(req, int(step[1]), {"error": "scripted"})
        timestamp = req.headers.get("X-Gatewatch-Timestamp", "")
        if self.secret is not None:  # the verifier we ship for receivers (constant time, fresh timestamp)
            given = req.headers.get("X-Gatewatch-Signature", "")
            if not verify(self.secret, timestamp, body, given, time.time()):
                self.bad_signatures += 1
                return _reply(req, 401, {"error": "bad signature"})
        with self._lock:
            self.requests.append({"key": req.headers.get("Idempotency-Key"), "body": json.loads(body),
                                  "headers": dict(req.headers)})
        _reply(req, 200, {"ok": True})


def notification(incident: str = "inc-openai-1", seq: int = 1, status: str = "firing",
                 **extra: Any) -> dict[str, Any]:
    """A CONTRACT §3 notification plus the detection core's extra keys."""
    minute = 4 + seq
    n: dict[str, Any] = {
        "incident": incident, "seq": seq, "status": status, "category": "error_rate", "severity": "critical",
        "title": "OpenAI 5xx rate 14.8% (baseline 0.3%)", "at": f"2026-09-14T09:{minute:02d}:10.000Z",
        "started_at": "2026-09-14T09:01:00.000Z", "labels": {"provider": "openai"},
        "summary": ("OpenAI calls fail with 5xx since 09:01 UTC.\n"
                    "14.8% of 2,310 calls in 5 min; baseline 0.3%."),
        "links": [{"title": "Langfuse traces", "url": "https://langfuse.example/traces?provider=openai"}],
        "alerts": [{"name": "GatewayHigh5xxRate", "category": "error_rate", "detector": "rule",
                    "value": 0.148,
                    "threshold": 0.01, "baseline": 0.003, "labels": {"provider": "openai"},
                    "started_at": "2026-09-14T09:01:00.000Z", "severity": "critical",
                    "explanation": "team prod_customer on gpt-4o: 71% of the errors"}],
    }
    n.update(extra)
    return n


GOLDEN_DIR = __import__("pathlib").Path(__file__).parent / "golden"


def assert_golden(name: str, payload: Any) -> None:
    """Compare with ``tests/golden/<name>.json``; ``GATEWATCH_REGEN_GOLDEN=1`` rewrites it."""
    import os

    path = GOLDEN_DIR / f"{name}.json"
    text = json.dumps(payload, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    if os.environ.get("GATEWATCH_REGEN_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"missing golden {path}: run with GATEWATCH_REGEN_GOLDEN=1"
    assert json.loads(path.read_text(encoding="utf-8")) == json.loads(text), f"golden {path} differs"
