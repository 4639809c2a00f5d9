"""Webhook sink: POST each notification as JSON, signed, with an idempotency key.

Three body formats: ``gatewatch`` (CONTRACT §3 as is, the default), ``alertmanager``
(Alertmanager webhook v4, so existing AM receivers work unchanged) and ``simple`` (the
LLM-router runbook's ``alert/severity/message/timestamp/metadata`` shape).

Headers on every request: ``Idempotency-Key: <incident>:<seq>`` (the same on every retry),
``X-Gatewatch-Timestamp: <unix seconds>`` and, with a secret,
``X-Gatewatch-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any, Callable, Mapping
from urllib.parse import urlsplit

import httpx
from pydantic import SecretStr

from connectors.delivery import Outcome

__all__ = ["WebhookSink", "render_body", "sign", "verify", "fingerprint", "FORMATS", "redact_url"]

FORMATS = ("gatewatch", "alertmanager", "simple")
AM_ZERO_TIME = "0001-01-01T00:00:00Z"  # Alertmanager's endsAt while an alert is firing


def redact_url(url: str) -> str:
    """Scheme and host only: webhook paths and queries often embed tokens."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or ''}{':' + str(parts.port) if parts.port else ''}/…"


def sign(secret: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(secret: str, timestamp: str, body: bytes, signature: str, now: float, tolerance: float = 300.0) -> bool:
    """A receiver's check of ``X-Gatewatch-Signature``: the HMAC compared in constant time (no early
    exit at the first differing byte to time), and a timestamp within ``tolerance`` seconds of ``now``
    so that a captured request cannot be replayed later."""
    try:
        sent = float(timestamp)
    except ValueError:
        return False
    if not abs(now - sent) <= tolerance:  # also false for NaN
        return False
    return hmac.compare_digest(sign(secret, timestamp, body).encode(), signature.encode("utf-8", "replace"))


def fingerprint(labels: Mapping[str, str]) -> str:
    """Prometheus' label fingerprint: FNV-1a 64 over sorted ``name 0xff value 0xff``, as
    16 hex digits, so ours equal what Alertmanager would compute for the same labels."""
    h = 0xCBF29CE484222325
    for name in sorted(labels):
        for chunk in (name.encode(), b"\xff", str(labels[name]).encode(), b"\xff"):
            for byte in chunk:
                h = ((h ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


def _am_alert(n: Mapping[str, Any], alert: Mapping[str, Any], external_url: str) -> dict[str, Any]:
    labels = {"alertname": str(alert.get("name", n.get("category", "gatewatch"))),
              "category": str(alert.get("category", n.get("category", ""))),
              "severity": str(alert.get("severity", n.get("severity", ""))),
              **{str(k): str(v) for k, v in (alert.get("labels") or {}).items()}}
    annotations = {"summary": str(n.get("title", "")),
                   "description": str(alert.get("explanation") or n.get("summary") or n.get("title", ""))}
    for key in ("value", "threshold", "baseline", "score"):
        if alert.get(key) is not None:
            annotations[key] = str(alert[key])
    links = n.get("links") or []
    resolved = n.get("status") == "resolved"
    return {"status": "resolved" if resolved else "firing", "labels": labels, "annotations": annotations,
            "startsAt": alert.get("started_at") or n.get("started_at"),
            "endsAt": n.get("at") if resolved else AM_ZERO_TIME,
            "generatorURL": links[0]["url"] if links else external_url,
            "fingerprint": fingerprint(labels)}


def _common(dicts: list[dict[str, str]]) -> dict[str, str]:
    if not dicts:
        return {}
    return {k: v for k, v in dicts[0].items() if all(d.get(k) == v for d in dicts[1:])}


def to_alertmanager(n: Mapping[str, Any], receiver: str = "gatewatch",
                    external_url: str = "") -> dict[str, Any]:
    alerts = [_am_alert(n, a, external_url) for a in n.get("alerts") or []]
    return {"version": "4", "groupKey": f'{{}}:{{incident="{n.get("incident")}"}}',
            "truncatedAlerts": 0, "status": "resolved" if n.get("status") == "resolved" else "firing",
            "receiver": receiver, "groupLabels": {"incident": str(n.get("incident"))},
            "commonLabels": _common([a["labels"] for a in alerts]),
            "commonAnnotations": _common([a["annotations"] for a in alerts]),
            "externalURL": external_url, "alerts": alerts}


def to_simple(n: Mapping[str, Any]) -> dict[str, Any]:
    first = (n.get("alerts") or [{}])[0]
    return {"alert": first.get("name") or n.get("category"), "severity": n.get("severity"),
            "message": n.get("title"), "timestamp": n.get("at"),
            "metadata": {"current_value": first.get("value"), "threshold": first.get("threshold"),
                         "baseline": first.get("baseline"), "status": n.get("status"),
                         "incident": n.get("incident"), "labels": n.get("labels") or {}}}


def render_body(n: Mapping[str, Any], fmt: str = "gatewatch", **am: str) -> bytes:
    if fmt == "alertmanager":
        payload: Any = to_alertmanager(n, **am)
    elif fmt == "simple":
        payload = to_simple(n)
    elif fmt == "gatewatch":
        payload = n
    else:
        raise ValueError(f"unknown webhook format {fmt!r}; one of {FORMATS}")
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


def classify_status(status: int, headers: Mapping[str, str]) -> Outcome:
    """2xx delivered; 408/429/5xx retryable (429 honours Retry-After); other 4xx final."""
    if 200 <= status < 300:
        return Outcome(False, None)
    retry_after = _retry_after(headers.get("retry-after"))
    if status in (408, 429) or status >= 500:
        return Outcome(True, f"HTTP {status}", retry_after)
    return Outcome(False, f"HTTP {status} (not retryable)")


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None  # an HTTP-date; rare for webhooks, fall back to our own backoff


class WebhookSink:
    def __init__(self, url: str, client: httpx.AsyncClient, secret: SecretStr | None = None,
                 fmt: str = "gatewatch", name: str = "webhook", timeout: float = 10.0,
                 clock: Callable[[], float] = time.time, receiver: str = "gatewatch",
                 external_url: str = "") -> None:
        if fmt not in FORMATS:
            raise ValueError(f"unknown webhook format {fmt!r}; one of {FORMATS}")
        self.name, self.fmt, self.timeout = name, fmt, timeout
        self._url, self._client, self._secret, self._clock = url, client, secret, clock
        self._am = {"receiver": receiver, "external_url": external_url}

    def __repr__(self) -> str:
        signed = "signed" if self._secret else "unsigned"
        return f"WebhookSink(name={self.name!r}, url={redact_url(self._url)!r}, fmt={self.fmt!r}, {signed})"

    def request(self, n: Mapping[str, Any], key: str) -> tuple[bytes, dict[str, str]]:
        """Body and headers of one attempt (a new timestamp and signature per attempt)."""
        body = render_body(n, self.fmt, **(self._am if self.fmt == "alertmanager" else {}))
        timestamp = str(int(self._clock()))
        headers = {"Content-Type": "application/json", "Idempotency-Key": key,
                   "X-Gatewatch-Timestamp": timestamp}
        if self._secret is not None:
            headers["X-Gatewatch-Signature"] = sign(self._secret.get_secret_value(), timestamp, body)
        return body, headers

    async def send(self, n: Mapping[str, Any], key: str) -> Outcome:
        body, headers = self.request(n, key)
        try:
            resp = await self._client.post(self._url, content=body, headers=headers, timeout=self.timeout)
        except httpx.TimeoutException:
            return Outcome(True, f"timeout after {self.timeout:g}s ({redact_url(self._url)})")
        except httpx.TransportError as exc:
            return Outcome(True, f"{type(exc).__name__} ({redact_url(self._url)})")
        return classify_status(resp.status_code, resp.headers)
