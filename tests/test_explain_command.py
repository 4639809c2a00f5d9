"""``gatewatch explain INCIDENT``: from a replay's notifications and from the service's
delivery history (notifications sent through a real local webhook receiver)."""

from __future__ import annotations

import json

import httpx
from pydantic import SecretStr

from connectors.delivery import Delivery, RetryPolicy
from connectors.outbox import FileOutbox, FileStateStore, HistoryLog
from connectors.webhook import WebhookSink
from gatewatch.cli import main
from tests.slack_server import WebhookReceiver

SECRET = "whsec-explain-test"


def _alert(name, status, value, **kw):
    return {"name": name, "category": "error_rate", "severity": "critical", "detector": kw.get("detector", "rule"),
            "value": value, "threshold": 0.2, "labels": {"provider": "openai"}, "status": status,
            "started_at": "2026-09-14T09:01:00.000Z", **{k: v for k, v in kw.items() if k != "detector"}}


def _incident(iid="gw-0123abcd") -> list[dict]:
    explanation = "error rate 49.0% vs 3.7% expected (+133 failed calls in 5 min); of it: 100% provider openai"
    firing = _alert("ProviderErrorRateCritical", "firing", 0.49, baseline=0.037, explanation=explanation)
    anomaly = _alert("ErrorRateAnomaly", "firing", 0.35, detector="anomaly", score=0.74, baseline=0.001,
                     explanation="error rate 35% vs 0.1% expected; of it: 100% provider openai, 68% team prod")
    calm = _alert("ProviderErrorRateCritical", "resolved", 0.0, ended_at="2026-09-14T09:20:00.000Z")
    base = {"incident": iid, "category": "error_rate", "severity": "critical", "labels": {"provider": "openai"},
            "started_at": "2026-09-14T09:00:00.000Z"}
    return [
        {**base, "status": "firing", "seq": 1, "reason": "new", "at": "2026-09-14T09:03:00.000Z",
         "title": "provider openai error rate 49.0%", "alerts": [firing, anomaly]},
        {**base, "status": "resolved", "seq": 2, "reason": "resolved", "at": "2026-09-14T09:28:00.000Z",
         "title": "RESOLVED: provider openai error rate 0.0%", "alerts": [calm]},
    ]


def _check(text: str) -> None:
    assert "What:   provider openai error rate 49.0%" in text
    assert "resolved 2026-09-14 09:28" in text
    # the evidence is the last firing reading, not the calm values of the resolved message
    assert "value 49.0% against threshold 20.0%, baseline 3.7%" in text
    assert "anomaly score 0.74" in text and "until 09:20" in text
    assert "100% provider openai  (named by ProviderErrorRateCritical, ErrorRateAnomaly)" in text
    assert "68% team prod  (named by ErrorRateAnomaly)" in text


def test_explain_from_replay_notifications(tmp_path, capsys):
    path = tmp_path / "notifs.ndjson"
    other = _incident("gw-0199ffff")
    path.write_text("\n".join(json.dumps(n) for n in _incident() + other) + "\nnot json\n")
    assert main(["explain", "gw-0123", "--notifications", str(path)]) == 0
    _check(capsys.readouterr().out)
    assert main(["explain", "gw-01", "--notifications", str(path)]) == 1  # ambiguous
    assert "matches several incidents" in capsys.readouterr().err
    assert main(["explain", "gw-nope", "--notifications", str(path)]) == 1
    assert main(["explain", "gw-0123", "--notifications", str(tmp_path / "missing")]) == 2


async def test_explain_from_the_delivery_history(tmp_path, capsys):
    receiver = WebhookReceiver(SECRET).start()
    try:
        async with httpx.AsyncClient() as http:
            sink = WebhookSink(receiver.url + "/hook", http, SecretStr(SECRET), timeout=2.0)
            delivery = Delivery([sink], FileOutbox(tmp_path), FileStateStore(tmp_path), HistoryLog(tmp_path),
                                policy=RetryPolicy(initial=0.01, cap=0.05, max_elapsed=2.0))
            delivery.submit_many(_incident())
            await delivery.drain()
    finally:
        receiver.stop()
    assert main(["explain", "gw-0123abcd", "--state-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    _check(out)
    assert "[sent webhook]" in out
