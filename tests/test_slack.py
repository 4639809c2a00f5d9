"""Slack sinks against a local fake Slack (real slack-sdk, real sockets)."""

from __future__ import annotations

import asyncio
import logging

import pytest
from slack_sdk.web.async_client import AsyncWebClient

from connectors.outbox import FileStateStore, MemoryStateStore
from connectors.slack import SlackSink, SlackWebhookSink, render_message, route_channel, thread_line
from tests.slack_server import FakeSlack, assert_golden, notification

TOKEN = "xoxb-test-token-not-for-logs"


@pytest.fixture
def slack():
    server = FakeSlack().start()
    yield server
    server.stop()


def _sink(server: FakeSlack, store=None, routes=(), timeout: float = 2.0) -> SlackSink:
    client = AsyncWebClient(token=TOKEN, base_url=server.api_url, timeout=timeout, retry_handlers=[])
    return SlackSink(client, store if store is not None else MemoryStateStore(), "#llm-alerts", routes)


def _anomaly() -> dict:
    return notification("inc-cost-7", category="cost", severity="warning", labels={"team": "support"},
                        title="Spend of team support $41/h above forecast", links=[],
                        alerts=[{"name": "CostAnomaly", "category": "cost", "detector": "anomaly",
                                 "value": 58.2, "baseline": 17.1, "score": 0.97,
                                 "labels": {"team": "support", "model": "gpt-4o"},
                                 "explanation": "support on gpt-4o: +$38/h (92%)"}])


@pytest.mark.parametrize("name, n", [
    ("firing", notification()),
    ("resolved", notification(seq=3, status="resolved", at="2026-09-14T09:20:00.000Z")),
    ("anomaly_cost", _anomaly()),
])
def test_blocks_match_golden(name: str, n: dict) -> None:
    text, blocks = render_message(n)
    assert_golden(f"slack_{name}", {"text": text, "blocks": blocks, "thread_line": thread_line(n)})


def test_blocks_respect_slack_limits() -> None:
    n = notification(title="x" * 400, summary="y" * 5000, links=[{"title": "t" * 200, "url": "u"}] * 9)
    _, blocks = render_message(n)
    assert len(blocks[0]["text"]["text"]) <= 150
    assert all(len(b["text"]["text"]) <= 3000 for b in blocks if b["type"] == "section" and "text" in b)
    actions = [b for b in blocks if b["type"] == "actions"][0]["elements"]
    assert len(actions) == 5 and all(len(a["text"]["text"]) <= 75 for a in actions)


@pytest.mark.parametrize("n, expected", [
    (notification(), "#oncall"),
    (notification(severity="warning", labels={"team": "support"}), "#support"),
    (notification(severity="info", category="traffic"), "#llm-alerts"),
])
def test_routing_table(n: dict, expected: str) -> None:
    routes = [{"match": {"severity": "critical"}, "channel": "#oncall"},
              {"match": {"team": ["support", "sales"]}, "channel": "#support"}]
    assert route_channel(n, routes, "#llm-alerts") == expected


async def test_one_message_per_incident_updates_in_thread(slack: FakeSlack, tmp_path) -> None:
    sink = _sink(slack, FileStateStore(tmp_path))
    for n in (notification(seq=1), notification(seq=2)):
        assert (await sink.send(n, f"k:{n['seq']}")).error is None
    # a new sink over the same state directory (a restart) keeps threading
    sink = _sink(slack, FileStateStore(tmp_path))
    assert (await sink.send(notification(seq=3, status="resolved"), "k:3")).error is None
    parents = [r for r in slack.calls("chat.postMessage") if not r.get("thread_ts")]
    replies = [r for r in slack.calls("chat.postMessage") if r.get("thread_ts")]
    assert len(parents) == 1 and len(slack.calls("chat.update")) == 2 and len(replies) == 2
    assert {r["thread_ts"] for r in replies} == {parents[0]["ts"]}
    assert slack.messages[parents[0]["ts"]]["text"].startswith(":white_check_mark: Resolved")


@pytest.mark.parametrize("step, retryable, retry_after", [
    (("429", 3), True, 3.0),
    (("status", 500), True, None),
    (("error", "ratelimited"), True, None),
    (("error", "channel_not_found"), False, None),
    (("error", "invalid_auth"), False, None),
])
async def test_errors_map_to_outcomes(slack: FakeSlack, step, retryable: bool, retry_after) -> None:
    slack.script(step)
    outcome = await _sink(slack).send(notification(), "k:1")
    assert outcome.error and outcome.retryable is retryable and outcome.retry_after == retry_after


async def test_down_and_slow_are_retryable(slack: FakeSlack) -> None:
    slack.script(("slow", 0.6))
    slow = await _sink(slack, timeout=0.2).send(notification(), "k:1")
    slack.stop()
    down = await _sink(slack).send(notification(), "k:1")
    assert slow.retryable and "timeout" in slow.error
    assert down.retryable and down.error


async def test_incoming_webhook_mode_posts_each_notification(slack: FakeSlack, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    sink = SlackWebhookSink.from_url(slack.url + "/hooks/T0/B0/secret-hook-part", timeout=2)
    for seq in (1, 2):
        assert (await sink.send(notification(seq=seq), f"k:{seq}")).error is None
    slack.script(("status", 503))
    assert (await sink.send(notification(seq=3), "k:3")).retryable
    assert len(slack.calls("webhook")) == 2 and slack.calls("webhook")[0]["blocks"][0]["type"] == "header"
    assert "secret-hook-part" not in caplog.text + repr(sink)


async def test_token_not_in_repr_or_logs(slack: FakeSlack, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    sink = _sink(slack)
    await sink.send(notification(), "k:1")
    assert TOKEN not in repr(sink) + caplog.text


async def test_deleted_parent_starts_a_new_message(slack: FakeSlack) -> None:
    sink = _sink(slack)
    await sink.send(notification(seq=1), "k:1")
    slack.script(("error", "message_not_found"))
    assert (await sink.send(notification(seq=2), "k:2")).error is None
    parents = [r for r in slack.calls("chat.postMessage") if not r.get("thread_ts")]
    assert len(parents) == 2


async def test_a_post_whose_answer_was_lost_is_not_posted_twice(slack: FakeSlack) -> None:
    """Slack processed the post but the answer timed out: the retry finds the parent by its
    metadata in the channel's history instead of posting a second one."""
    store = MemoryStateStore()
    slack.script(("slow", 0.6))
    first = await _sink(slack, store=store, timeout=0.2).send(notification(), "k:1")
    assert first.retryable and "timeout" in first.error
    await asyncio.sleep(0.6)  # the slow answer's request has been processed by now
    retry = await _sink(slack, store=store).send(notification(), "k:1")
    assert retry.error is None
    parents = [r for r in slack.calls("chat.postMessage") if not r.get("thread_ts")]
    assert len(parents) == 1 and slack.calls("conversations.history")
    update = await _sink(slack, store=store).send(notification(seq=2), "k:2")  # threads on the found parent
    assert update.error is None and slack.calls("chat.update")[0]["ts"] == parents[0]["ts"]


async def test_a_thread_line_whose_answer_was_lost_is_not_repeated(slack: FakeSlack) -> None:
    """The update's thread line reached Slack but its answer timed out: the retry (which
    updates the parent again, harmlessly) finds the line by its metadata in the thread."""
    store = MemoryStateStore()
    await _sink(slack, store=store).send(notification(), "k:1")
    slack.script(("as usual", None), ("slow", 0.6))  # chat.update answers; the thread post is slow
    first = await _sink(slack, store=store, timeout=0.2).send(notification(seq=2), "k:2")
    assert first.retryable and "timeout" in first.error
    await asyncio.sleep(0.6)
    assert (await _sink(slack, store=store).send(notification(seq=2), "k:2")).error is None
    lines = [r for r in slack.calls("chat.postMessage") if r.get("thread_ts")]
    assert len(lines) == 1 and len(slack.calls("conversations.replies")) == 1
    # the next update is a new line, posted without a lookup
    assert (await _sink(slack, store=store).send(notification(seq=3), "k:3")).error is None
    assert len([r for r in slack.calls("chat.postMessage") if r.get("thread_ts")]) == 2
    assert len(slack.calls("conversations.replies")) == 1


async def test_a_thread_line_that_never_arrived_is_posted_on_retry(slack: FakeSlack) -> None:
    store = MemoryStateStore()
    await _sink(slack, store=store).send(notification(), "k:1")
    slack.script(("as usual", None), ("status", 500))
    assert (await _sink(slack, store=store).send(notification(seq=2), "k:2")).retryable
    assert (await _sink(slack, store=store).send(notification(seq=2), "k:2")).error is None
    lines = [r for r in slack.calls("chat.postMessage") if r.get("thread_ts")]
    assert len(lines) == 1 and "Update 2" in lines[0]["text"]


async def test_a_post_that_never_arrived_is_made_on_retry(slack: FakeSlack) -> None:
    store = MemoryStateStore()
    slack.script(("status", 500))
    assert (await _sink(slack, store=store).send(notification(), "k:1")).retryable
    assert (await _sink(slack, store=store).send(notification(), "k:1")).error is None
    assert len([r for r in slack.calls("chat.postMessage") if not r.get("thread_ts")]) == 1
