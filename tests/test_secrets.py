"""Secrets in inputs never reach what gatewatch stores, logs or sends; settings print masked;
webhook signatures are checked in constant time; the LiteLLM receiver wants its shared secret."""

from __future__ import annotations

import dataclasses

import hmac
import io
import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from connectors.formats import parse_one
from connectors.webhook import sign, verify
from gatewatch.replay import replay
from gatewatch.settings import Settings
from models.events import Rejected
from models.redaction import redact, redact_bytes, redact_value
from streams.stages import RawBatch, _reject

OPENAI = "sk-proj-Zq8wV1xY2mN3bC4dE5fG6hJ7"
LANGFUSE = "sk-lf-7c1e4b2a-9d3f-4e5a-8b6c-1d2e3f4a5b6c"
BEARER = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl"
SECRETS = (OPENAI, LANGFUSE, BEARER, "hunter2-db-pass", "AKIAIOSFODNN7EXAMPLE")


@pytest.mark.parametrize("text, kept", [
    (f"litellm.AuthenticationError: Incorrect API key provided: {OPENAI}.", "Incorrect API key provided: sk-proj-***"),
    (f"LANGFUSE_SECRET_KEY={LANGFUSE}", "LANGFUSE_SECRET_KEY=***"),
    (f"Authorization: Bearer {BEARER}", "Authorization: Bearer ***"),
    ("postgresql://litellm:hunter2-db-pass@db.internal:5432/litellm", "postgresql://litellm:***@db.internal"),
    ('{"api_key": "abcd1234efgh", "model": "gpt-4o"}', '"api_key": "***", "model": "gpt-4o"'),
    ("aws AKIAIOSFODNN7EXAMPLE", "aws AKIA***"),
    ("x-api-key: sk-ant-api03-ABCDEFGHIJKLMNOP", "x-api-key: ***"),
])
def test_each_kind_of_secret_is_masked(text: str, kept: str) -> None:
    clean = redact(text)
    assert kept in clean and not any(s in clean for s in SECRETS)
    assert redact(clean) == clean  # idempotent


@pytest.mark.parametrize("text", ["openai returned 503", "total_tokens: 1234", "team support spent $3.20",
                                  '10.0.1.5 - "POST /chat/completions HTTP/1.1" 200', "key support-bot"])
def test_ordinary_text_is_untouched(text: str) -> None:
    assert redact(text) is text or redact(text) == text


def test_raw_bytes_and_values() -> None:
    assert redact_bytes(b"\xff " + OPENAI.encode() + b" \xfe") == b"\xff sk-proj-*** \xfe"
    assert redact_value({"a": [OPENAI, 1, {"b": f"Bearer {BEARER}"}]}) == {"a": ["sk-proj-***", 1, {"b": "Bearer ***"}]}


def _records() -> list[dict]:
    t = 1787320985.0  # 2026-08-21T14:03:05Z, with the other records
    fail = {"id": "r-1", "call_type": "acompletion", "response_cost": 0.0, "status": "failure", "startTime": t,
            "endTime": t + 1, "custom_llm_provider": "openai", "model": "gpt-4o",
            "error_information": {"error_code": "401", "error_class": "AuthenticationError",
                                  "error_message": f"Incorrect API key provided: {OPENAI}"},
            "metadata": {"user_api_key_team_alias": "support", "user_api_key_alias": "support-bot"}}
    log = {"message": f"Exception occured - litellm.AuthenticationError: key {OPENAI} Authorization: Bearer {BEARER}",
           "level": "ERROR", "timestamp": "2026-08-21T14:03:09.951210", "component": "LiteLLM Proxy"}
    fly = {"event": {"provider": "app"}, "fly": {"app": {"instance": "e286", "name": "gw"}, "region": "ord"},
           "log": {"level": "error"}, "timestamp": "2026-08-21T14:03:10Z",
           "message": "ERROR connecting to postgresql://litellm:hunter2-db-pass@db.internal:5432/litellm"}
    obs = {"id": "o1", "traceId": "t1", "level": "ERROR", "statusMessage": f"litellm.AuthenticationError: {LANGFUSE}",
           "createdAt": "2026-08-21T14:03:12Z", "endTime": "2026-08-21T14:03:11Z", "startTime": "2026-08-21T14:03:10Z"}
    spend = {"request_id": "s1", "spend": 0.0, "startTime": "2026-08-21T14:03:07Z", "endTime": "2026-08-21T14:03:09Z",
             "api_key": OPENAI, "model": "gpt-4o"}
    return [fail, log, fly, obs, spend]


def test_parsers_keep_no_secret() -> None:
    for record in _records():
        event = parse_one(record)
        kept = " ".join(str(getattr(event, f.name)) for f in dataclasses.fields(event))
        assert not any(s in kept for s in SECRETS), kept
    assert parse_one(_records()[-1]).key == "sk-***"


def test_replay_outputs_hold_no_secret(tmp_path: Path) -> None:
    lines = [orjson.dumps(r) for r in _records()]
    lines.append(b"not json but a key: " + OPENAI.encode() + b" and Bearer " + BEARER.encode())
    lines.append(orjson.dumps({"unknown": LANGFUSE}))
    path = tmp_path / "in.ndjson"
    path.write_bytes(b"\n".join(lines) + b"\n")
    out, rejects = io.BytesIO(), io.BytesIO()
    summary = replay([str(path)], out, rejects=rejects)
    assert sum(summary.rejected.values()) == 2
    for blob in (out.getvalue(), rejects.getvalue()):
        assert not any(s.encode() in blob for s in SECRETS), blob[:500]
    assert b"sk-***" in rejects.getvalue() or b"sk-proj-***" in rejects.getvalue()


def test_worker_rejects_hold_no_secret() -> None:
    raw = RawBatch("gw.raw.litellm", 0, 7, b"", None, "litellm")
    record = _reject(raw, b"garbage " + OPENAI.encode(), Rejected("not_json", OPENAI))
    assert OPENAI not in orjson.dumps(record).decode()


def test_notifications_hold_no_secret() -> None:
    from models.incidents import Alert, IncidentManager

    manager = IncidentManager()
    manager.fire(Alert(id="a", name="X", category="error_rate", severity="critical", detector="rule",
                       labels={"key": OPENAI}, value=1.0, threshold=0.5, started_at=0.0,
                       title=f"key {OPENAI} failing", explanation=f"Bearer {BEARER}"), 60.0)
    notes = manager.flush(60.0)
    assert notes and not any(s in orjson.dumps(notes).decode() for s in SECRETS)


def test_settings_print_masked(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {"GATEWATCH_WEBHOOK_SECRET": "whsec-verysecret", "SLACK_BOT_TOKEN": "xoxb-123-456-abcdefghij",
           "LANGFUSE_SECRET_KEY": LANGFUSE, "DATABASE_URL": "postgresql://u:hunter2-db-pass@db/x",
           "FLY_ACCESS_TOKEN": "FlyV1 fm2_abcdefghijklmnop", "GATEWATCH_RECEIVER_SECRET": "recv-verysecret"}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    settings = Settings()
    for text in (str(settings.masked()), repr(settings), str(settings)):
        assert not any(v in text for v in env.values()), text
    assert settings.webhook_secret.get_secret_value() == "whsec-verysecret"


def test_webhook_signature_is_verified_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    body, ts, now = b'{"incident": "i"}', "1787311387", 1787311390.0
    good = sign("s3cret", ts, body)
    assert verify("s3cret", ts, body, good, now)
    assert not verify("s3cret", ts, body + b" ", good, now)  # tampered body
    assert not verify("other", ts, body, good, now)  # wrong secret
    assert not verify("s3cret", ts, body, good, now + 3600)  # replayed an hour later
    assert not verify("s3cret", "nan", body, good, now) and not verify("s3cret", "x", body, good, now)
    assert not verify("s3cret", ts, body, "sha256=é", now)  # non-ASCII header: False, not an exception
    calls = []
    monkeypatch.setattr(hmac, "compare_digest", lambda a, b: calls.append((a, b)) or a == b)
    verify("s3cret", ts, body, good, now)
    assert calls, "the comparison must go through hmac.compare_digest"


def test_the_receiver_will_not_start_without_its_secret() -> None:
    env = {k: v for k, v in os.environ.items() if k != "GATEWATCH_RECEIVER_SECRET"}
    done = subprocess.run([sys.executable, "-m", "gatewatch", "tail", "litellm-http", "--port", "0",
                           "--brokers", "127.0.0.1:1"], env=env, capture_output=True, timeout=60, check=False,
                          cwd=Path(__file__).resolve().parents[1])
    assert done.returncode != 0 and b"GATEWATCH_RECEIVER_SECRET" in done.stderr


def test_source_logs_hold_no_secret() -> None:
    import logging

    from gatewatch.commands.tail import _JsonLogFormatter

    record = logging.LogRecord("gatewatch.source", logging.WARNING, __file__, 1,
                               f"langfuse answered 401 for {LANGFUSE}", None, None)
    record.kv = {"dsn": "postgresql://u:hunter2-db-pass@db/x", "auth": f"Bearer {BEARER}"}
    line = _JsonLogFormatter().format(record)
    assert not any(s in line for s in SECRETS) and "sk-lf-***" in line
