"""Delivery stages and guarantees against real local receivers (no mocks of httpx/slack-sdk)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr
from slack_sdk.web.async_client import AsyncWebClient

from connectors.delivery import Delivery, RetryPolicy
from connectors.outbox import FileOutbox, FileStateStore, HistoryLog, MemoryStateStore
from connectors.slack import SlackSink, SlackWebhookSink
from connectors.webhook import WebhookSink
from gatewatch import cli
from models.silences import Silence, Suppressed, parse_matcher, parse_time
from tests.slack_server import FakeSlack, WebhookReceiver, notification

SECRET = "whsec-delivery-test"
FAST = RetryPolicy(initial=0.01, multiplier=2.0, cap=0.05, max_elapsed=2.0)


@pytest.fixture
def receiver():
    server = WebhookReceiver(SECRET).start()
    yield server
    server.stop()


@pytest.fixture
def slack():
    server = FakeSlack().start()
    yield server
    server.stop()


def _stream() -> list[dict]:
    """Two interleaved incidents, three notifications each (firing, update, resolved)."""
    out = []
    for seq in (1, 2, 3):
        for inc in ("inc-a", "inc-b"):
            out.append(notification(inc, seq, "resolved" if seq == 3 else "firing",
                                    labels={"provider": "openai" if inc == "inc-a" else "groq"}))
    return out


def _keys(ns: list[dict]) -> list[str]:
    return [f"{n['incident']}:{n['seq']}" for n in ns]


def _delivery(state: Path, http: httpx.AsyncClient, receiver=None, slack=None, policy=FAST,
              timeout: float = 2.0, **kw) -> Delivery:
    store = FileStateStore(state)
    sinks = []
    if receiver is not None:
        sinks.append(WebhookSink(receiver.url + "/hook", http, SecretStr(SECRET), timeout=timeout))
    if slack is not None:
        client = AsyncWebClient(token="xoxb-t", base_url=slack.api_url, timeout=timeout, retry_handlers=[])
        sinks.append(SlackSink(client, store, "#llm-alerts"))
    return Delivery(sinks, FileOutbox(state), store, HistoryLog(state), policy=policy, **kw)


def _slack_ok(slack: FakeSlack, ns: list[dict]) -> None:
    parents = [r for r in slack.calls("chat.postMessage") if not r.get("thread_ts")]
    assert len(parents) == len({n["incident"] for n in ns})
    assert len(slack.calls("chat.update")) == len(ns) - len(parents)


async def test_receivers_down_then_up_lose_nothing_duplicate_nothing_in_order(tmp_path, receiver, slack):
    receiver.stop(), slack.stop()
    ns = _stream()
    async with httpx.AsyncClient() as http:
        d = _delivery(tmp_path, http, receiver, slack, policy=RetryPolicy(0.01, 2, 0.05, 0.2))
        d.submit_many(ns)
        down = await d.drain()
        assert down.pending == {"webhook": 6, "slack": 6} and sum(down.sent.values()) == 0
        receiver.start(), slack.start()
        up = await d.drain()
    assert up.sent == {"webhook": 6, "slack": 6} and up.pending_total == 0
    assert receiver.keys == _keys(ns) and receiver.bad_signatures == 0
    _slack_ok(slack, ns)


async def test_thirty_minute_outage_drains_in_order_on_a_manual_clock(tmp_path, receiver):
    """Virtual time: the receiver is down for 30 min; delivery keeps retrying (cap 60 s)."""
    receiver.stop()
    now = [0.0]
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        now[0] += seconds
        if now[0] >= 1800 and receiver._httpd is None:
            receiver.start()

    ns = _stream()
    async with httpx.AsyncClient() as http:
        policy = RetryPolicy(initial=1.0, cap=60.0, max_elapsed=None)
        d = _delivery(tmp_path, http, receiver, policy=policy, sleep=sleep, clock=lambda: now[0])
        d.submit_many(ns)
        report = await d.drain()
    assert report.sent == {"webhook": 6} and receiver.keys == _keys(ns)
    assert max(waits) <= 60.0 and 30 <= len(waits) <= 200, len(waits)


async def test_500s_then_ok_retries_with_same_idempotency_key(tmp_path, receiver):
    receiver.script(("status", 500), ("status", 502), ("status", 503))
    ns = _stream()[:2]
    async with httpx.AsyncClient() as http:
        d = _delivery(tmp_path, http, receiver)
        d.submit_many(ns)
        report = await d.drain()
    assert report.sent == {"webhook": 2} and receiver.keys == _keys(ns)
    retries = [r for r in HistoryLog(tmp_path).read() if r["event"] == "retry"]
    assert [r["error"] for r in retries] == ["HTTP 500", "HTTP 502", "HTTP 503"]
    assert {r["key"] for r in retries} == {"inc-a:1"}


async def test_429_retry_after_is_honoured(tmp_path, receiver, slack):
    receiver.script(("429", 1))
    slack.script(("429", 1))
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        await asyncio.sleep(seconds)

    ns = _stream()[:1]
    async with httpx.AsyncClient() as http:
        d = _delivery(tmp_path, http, receiver, slack, sleep=sleep)
        d.submit_many(ns)
        report = await d.drain()
    assert report.sent == {"webhook": 1, "slack": 1}
    assert waits == [1.0, 1.0]  # exactly what Retry-After said, not our jittered backoff


async def test_slow_beyond_timeout_is_retried_with_same_key(tmp_path, receiver):
    receiver.script(("slow", 0.6))
    ns = _stream()[:2]
    async with httpx.AsyncClient() as http:
        d = _delivery(tmp_path, http, receiver, timeout=0.2)
        d.submit_many(ns)
        report = await d.drain()
    await asyncio.sleep(0.6)  # let the slow request land
    assert report.sent == {"webhook": 2}
    # at-least-once: the timed-out attempt may still arrive, with the same Idempotency-Key
    assert list(dict.fromkeys(receiver.keys)) == _keys(ns)
    assert receiver.keys.count("inc-a:1") <= 2 and receiver.keys.count("inc-b:1") == 1
    assert any("timeout" in r.get("error", "") for r in HistoryLog(tmp_path).read())


async def test_restart_mid_backlog_sends_no_duplicate(tmp_path, receiver, slack):
    receiver.accept_limit, slack.accept_limit = 2, 2
    ns = _stream()
    async with httpx.AsyncClient() as http:
        first = _delivery(tmp_path, http, receiver, slack, policy=RetryPolicy(0.01, 2, 0.05, 0.1))
        first.submit_many(ns)
        partial = await first.drain()
        assert partial.sent == {"webhook": 2, "slack": 2}  # slack: post(a), post(b), then update(a) 503
        receiver.accept_limit = slack.accept_limit = None
        restarted = _delivery(tmp_path, http, receiver, slack)  # new objects over the same state dir
        assert restarted.submit_many(ns) == {"duplicate": 6}  # resubmitting the file is harmless
        rest = await restarted.drain()
    assert rest.sent == {"webhook": 4, "slack": 4}
    assert receiver.keys == _keys(ns)
    _slack_ok(slack, ns)


async def test_4xx_is_final_failed_with_reason_and_backlog_moves_on(tmp_path, receiver, capsys):
    receiver.script(("error", 400))
    ns = _stream()[:3]
    async with httpx.AsyncClient() as http:
        d = _delivery(tmp_path, http, receiver)
        d.submit_many(ns)
        report = await d.drain()
        again = await d.drain()
    assert report.failed == {"webhook": 1} and report.sent == {"webhook": 2} and again.sent == {"webhook": 0}
    assert receiver.keys == _keys(ns)[1:]
    failed = [r for r in HistoryLog(tmp_path).read() if r["event"] == "failed"]
    assert failed[0]["key"] == "inc-a:1" and "400" in failed[0]["error"]
    assert cli.main(["incidents", "--state-dir", str(tmp_path)]) == 0
    assert "HTTP 400 (not retryable)" in capsys.readouterr().out


async def test_mute_stage_silences_and_inhibits_with_reasons(tmp_path, receiver):
    silence = Silence("s-groq", (parse_matcher("provider=groq"),), parse_time("2026-09-14T00:00:00Z"),
                      parse_time("2026-09-15T00:00:00Z"))
    outage = notification("outage", 1, category="availability", labels={"provider": "openai"})
    team = notification("team", 1, labels={"provider": "openai", "team": "prod"})
    groq = notification("g", 1, labels={"provider": "groq"})
    team_resolved = notification("team", 2, status="resolved", labels={"provider": "openai", "team": "prod"})
    async with httpx.AsyncClient() as http:
        d = _delivery(tmp_path, http, receiver, silences=[silence])
        decisions = [d.submit(n) for n in (outage, team, groq, team_resolved)]
        await d.drain()
    assert decisions[1] == Suppressed("inhibited", by="provider_outage:outage")
    assert decisions[2] == Suppressed("silenced", by="s-groq")
    assert decisions[3].reason == "unnotified_resolve"
    assert receiver.keys == ["outage:1"]
    reasons = [r["reason"] for r in HistoryLog(tmp_path).read() if r["event"] == "suppressed"]
    assert reasons == ["inhibited", "silenced", "unnotified_resolve"]


def _sink_kind(kind: str, http: httpx.AsyncClient, receiver, slack, timeout: float = 0.3):
    if kind == "webhook":
        return receiver, WebhookSink(receiver.url + "/h", http, SecretStr(SECRET), timeout=timeout)
    if kind == "slack":
        client = AsyncWebClient(token="xoxb-t", base_url=slack.api_url, timeout=timeout, retry_handlers=[])
        return slack, SlackSink(client, MemoryStateStore(), "#c")
    return slack, SlackWebhookSink.from_url(slack.url + "/hooks/x", timeout=timeout)


@pytest.mark.parametrize("kind", ["webhook", "slack", "slack_webhook"])
async def test_sink_battery(kind: str, receiver, slack):
    """Every sink: ok → delivered; 5xx, 429, timeout, refused → retryable; 4xx → final."""
    async with httpx.AsyncClient() as http:
        server, sink = _sink_kind(kind, http, receiver, slack)
        assert (await sink.send(notification(), "k:1")).error is None
        for step in (("status", 500), ("429", 2), ("slow", 0.5)):
            server.script(step)
            outcome = await sink.send(notification(seq=2), "k:2")
            assert outcome.retryable and outcome.error, (step, outcome)
        server.script(("error", 404) if server is receiver else ("error", "channel_not_found"))
        if kind != "slack_webhook":  # an incoming webhook answers 404 as plain HTTP
            final = await sink.send(notification(seq=3), "k:3")
            assert not final.retryable and final.error
        server.stop()
        refused = await sink.send(notification(seq=4), "k:4")
    assert refused.retryable and refused.error


def test_outbox_survives_torn_tail_and_compacts(tmp_path):
    box = FileOutbox(tmp_path, compact_every=2)
    for i in range(4):
        box.enqueue("w", f"k:{i}", {"i": i})
    box.sync()
    box.ack("w", "k:0", "sent")
    box.ack("w", "k:1", "failed", "HTTP 400")  # second ack: compaction
    pending_file = tmp_path / "outbox" / "w.pending.jsonl"
    assert [json.loads(line)["key"] for line in pending_file.read_text().splitlines()] == ["k:2", "k:3"]
    with pending_file.open("a") as fh:
        fh.write('{"key": "k:4", "n": {"i"')  # crash mid-append
    reopened = FileOutbox(tmp_path)
    assert [k for k, _ in reopened.pending("w")] == ["k:2", "k:3"]
    assert reopened.state_of("w", "k:0") == "sent" and reopened.state_of("w", "k:1") == "failed"
    assert reopened.enqueue("w", "k:4", {"i": 4}) and not reopened.enqueue("w", "k:0", {"i": 0})
    assert [k for k, _ in FileOutbox(tmp_path).pending("w")] == ["k:2", "k:3", "k:4"]


def test_cli_deliver_is_resumable_and_silence_commands(tmp_path, receiver, monkeypatch, capsys):
    notifs = tmp_path / "notifs.ndjson"
    notifs.write_text("".join(json.dumps(n) + "\n" for n in _stream()))
    state = str(tmp_path / "state")
    monkeypatch.setenv("GATEWATCH_WEBHOOK_URL", receiver.url + "/hook")
    monkeypatch.setenv("GATEWATCH_WEBHOOK_SECRET", SECRET)
    for var in ("SLACK_BOT_TOKEN", "GATEWATCH_SLACK_WEBHOOK_URL", "GATEWATCH_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    assert cli.main(["silence", "--state-dir", state, "add", "provider=groq", "--starts",
                     "2026-09-14T00:00:00Z", "--duration", "1d", "--comment", "groq maintenance"]) == 0
    silence_id = capsys.readouterr().out.strip()
    assert cli.main(["deliver", str(notifs), "--state-dir", state]) == 0
    assert cli.main(["deliver", str(notifs), "--state-dir", state]) == 0  # rerun: nothing re-sent
    assert receiver.keys == ["inc-a:1", "inc-a:2", "inc-a:3"]  # inc-b (groq) is silenced
    capsys.readouterr()
    assert cli.main(["silence", "--state-dir", state, "list", "--all"]) == 0
    assert silence_id in capsys.readouterr().out
    assert cli.main(["silence", "--state-dir", state, "expire", silence_id]) == 0
    assert cli.main(["incidents", "--state-dir", state, "--limit", "1"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("inc-b") and "silenced by " + silence_id in out
    assert cli.main(["deliver", str(tmp_path / "missing.ndjson")]) == 2


async def test_service_loop_delivers_what_is_submitted_while_running(tmp_path, receiver):
    async with httpx.AsyncClient() as http:
        d = _delivery(tmp_path, http, receiver)
        stop = asyncio.Event()
        loop = asyncio.create_task(d.run(stop, idle=5.0))
        for n in _stream()[:3]:
            d.submit(n)
            await asyncio.sleep(0.05)
        stop.set()
        await asyncio.wait_for(loop, 1.0)
    assert receiver.keys == _keys(_stream()[:3])


@pytest.mark.parametrize("module", ["connectors.delivery", "connectors.outbox", "connectors.slack",
                                    "connectors.webhook", "models.silences"])
def test_public_names_exist(module: str):
    mod = __import__(module, fromlist=["__all__"])
    assert all(hasattr(mod, name) for name in mod.__all__)


def test_models_silences_is_pure():
    import models.silences as mod

    source = Path(mod.__file__).read_text()
    assert not any(f"import {lib}" in source for lib in ("httpx", "slack_sdk", "faust", "time", "os"))


CONFIG_YAML = """
routes:
  - {match: {severity: critical}, channel: "#llm-oncall"}
slack: {timeout: 3, retry: {initial: 0.5, cap: 30, max_elapsed: 120}}
webhooks: {timeout: 4, external_url: "https://gatewatch.example"}
inhibit:
  - {name: crit_over_warn, source: ["severity=critical"], target: ["severity=warning"], equal: [provider]}
silences:
  - {matchers: ["app=litellm-gw"], starts_at: "2026-09-14T00:00:00Z", ends_at: "2026-09-15T00:00:00Z"}
"""


def test_delivery_keys_of_the_shared_config_file(tmp_path):
    from gatewatch.commands.deliver import DeliveryConfig, load_raw_config

    path = tmp_path / "gatewatch.yaml"
    path.write_text(CONFIG_YAML)
    cfg = DeliveryConfig.from_mapping(load_raw_config(str(path)))  # accepted by the core's loader too
    assert cfg.slack_routes[0]["channel"] == "#llm-oncall" and cfg.slack_timeout == 3.0
    assert cfg.retry == RetryPolicy(initial=0.5, cap=30, max_elapsed=120)
    assert [r.name for r in cfg.inhibit_rules] == ["crit_over_warn"]
    assert cfg.silences[0].id == "config-0" and cfg.external_url == "https://gatewatch.example"
