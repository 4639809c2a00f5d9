"""Webhook sink: payload shapes (golden), signature and headers, status mapping, secrets."""

from __future__ import annotations

import json
import logging

import httpx
import pytest
from pydantic import SecretStr

from connectors.webhook import (AM_ZERO_TIME, WebhookSink, classify_status, fingerprint, render_body, sign)
from tests.slack_server import WebhookReceiver, assert_golden, notification

SECRET = "whsec-test-0123456789"


def _resolved() -> dict:
    return notification(seq=3, status="resolved", at="2026-09-14T09:20:00.000Z")


@pytest.mark.parametrize("fmt", ["gatewatch", "alertmanager", "simple"])
@pytest.mark.parametrize("which", ["firing", "resolved"])
def test_body_matches_golden(fmt: str, which: str) -> None:
    n = notification() if which == "firing" else _resolved()
    extra = {"external_url": "https://gatewatch.example"} if fmt == "alertmanager" else {}
    assert_golden(f"webhook_{fmt}_{which}", json.loads(render_body(n, fmt, **extra)))


def test_gatewatch_body_is_the_notification_unchanged() -> None:
    n = notification(unknown_key={"kept": True})
    assert json.loads(render_body(n)) == n


def test_alertmanager_v4_semantics() -> None:
    firing = json.loads(render_body(notification(), "alertmanager"))
    assert firing["version"] == "4" and firing["status"] == "firing" and firing["truncatedAlerts"] == 0
    alert = firing["alerts"][0]
    assert alert["endsAt"] == AM_ZERO_TIME and alert["labels"]["alertname"] == "GatewayHigh5xxRate"
    assert alert["fingerprint"] == fingerprint(alert["labels"]) and len(alert["fingerprint"]) == 16
    assert firing["commonLabels"]["provider"] == "openai"
    resolved = json.loads(render_body(_resolved(), "alertmanager"))
    assert resolved["alerts"][0]["endsAt"] == "2026-09-14T09:20:00.000Z"
    assert resolved["alerts"][0]["fingerprint"] == alert["fingerprint"]  # same alert, same fingerprint
    assert resolved["groupKey"] == firing["groupKey"]


def test_fingerprint_is_prometheus_fnv1a() -> None:
    assert fingerprint({}) == "cbf29ce484222325"  # FNV-64 offset basis: nothing hashed
    assert fingerprint({"a": "1", "b": "2"}) == fingerprint({"b": "2", "a": "1"})
    assert fingerprint({"a": "1"}) != fingerprint({"a": "2"})


def test_simple_format_fields() -> None:
    body = json.loads(render_body(notification(), "simple"))
    assert body["alert"] == "GatewayHigh5xxRate" and body["severity"] == "critical"
    assert body["metadata"]["current_value"] == 0.148 and body["metadata"]["threshold"] == 0.01


def test_signature_and_headers_are_stable_per_key() -> None:
    sink = WebhookSink("http://127.0.0.1:9/x", httpx.AsyncClient(), SecretStr(SECRET),
                       clock=lambda: 1789376650.7)
    body, headers = sink.request(notification(), "inc-openai-1:1")
    assert headers["Idempotency-Key"] == "inc-openai-1:1"
    assert headers["X-Gatewatch-Timestamp"] == "1789376650"
    assert headers["X-Gatewatch-Signature"] == sign(SECRET, "1789376650", body)
    assert headers["Content-Type"] == "application/json"
    unsigned = WebhookSink("http://127.0.0.1:9/x", httpx.AsyncClient()).request(notification(), "k")[1]
    assert "X-Gatewatch-Signature" not in unsigned


@pytest.mark.parametrize("status, retryable, delivered", [
    (200, False, True), (204, False, True), (400, False, False), (401, False, False), (404, False, False),
    (408, True, False), (429, True, False), (500, True, False), (502, True, False), (503, True, False),
])
def test_status_classification(status: int, retryable: bool, delivered: bool) -> None:
    outcome = classify_status(status, {"retry-after": "7"})
    assert outcome.retryable is retryable and (outcome.error is None) is delivered
    if status in (429, 503):
        assert outcome.retry_after == 7.0


async def test_real_receiver_verifies_signature() -> None:
    receiver = WebhookReceiver(SECRET).start()
    try:
        async with httpx.AsyncClient() as client:
            good = WebhookSink(receiver.url + "/hook", client, SecretStr(SECRET))
            assert (await good.send(notification(), "inc-openai-1:1")).error is None
            bad = WebhookSink(receiver.url + "/hook", client, SecretStr("wrong"))
            outcome = await bad.send(notification(seq=2), "inc-openai-1:2")
    finally:
        receiver.stop()
    assert receiver.keys == ["inc-openai-1:1"] and receiver.bad_signatures == 1
    assert outcome.retryable is False and "401" in str(outcome.error)


async def test_secrets_never_in_repr_errors_or_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    url = "http://127.0.0.1:9/hooks/T000/B000/tok-in-path?token=tok-in-query"
    async with httpx.AsyncClient() as client:
        sink = WebhookSink(url, client, SecretStr(SECRET), timeout=0.5)
        outcome = await sink.send(notification(), "k:1")  # port 9: connection refused
    assert outcome.retryable is True
    text = repr(sink) + str(outcome.error) + caplog.text
    for secret in (SECRET, "tok-in-path", "tok-in-query"):
        assert secret not in text
