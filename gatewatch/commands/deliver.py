"""``gatewatch deliver NOTIFS.ndjson``: push a replay's notifications through the durable
outbox to the configured sinks. Resumable: run it again after a failure and only what
was not acknowledged is sent.

``open_delivery`` is also how the worker builds its ``Delivery`` (same sinks, same state).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator, Iterable, Mapping

import httpx

from connectors.delivery import Delivery, RetryPolicy, Sink
from connectors.outbox import FileOutbox, FileStateStore, HistoryLog, StateStore
from gatewatch.settings import Settings, load_settings
from models.silences import DEFAULT_INHIBIT_RULES, InhibitRule, Silence

HELP = "deliver a notifications file to Slack/webhooks through the durable outbox"
SILENCES_STATE = "silences"


@dataclass(slots=True)
class DeliveryConfig:
    """The delivery keys of the YAML config (CONTRACT §4), every one optional::

        routes:                      # Slack routing table, first match wins
          - {match: {severity: critical}, channel: "#llm-oncall"}
          - {match: {team: [support, sales]}, channel: "#support-alerts"}
        slack: {timeout: 10, retry: {initial: 1, cap: 60, max_elapsed: 300}}
        webhooks: {timeout: 10, external_url: "https://gatewatch.example"}
        inhibit: [...]               # replaces the built-in rules (models.silences)
        silences:                    # static silences, beside `gatewatch silence add`
          - {id: fly-maint, matchers: ["app=litellm-gw"], starts_at: ..., ends_at: ...}
    """

    slack_routes: list[dict[str, Any]] = field(default_factory=list)
    slack_timeout: float = 10.0
    webhook_timeout: float = 10.0
    external_url: str = ""
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    inhibit_rules: tuple[InhibitRule, ...] = DEFAULT_INHIBIT_RULES
    silences: tuple[Silence, ...] = ()

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any] | None) -> DeliveryConfig:
        raw = raw or {}
        slack, webhook = raw.get("slack") or {}, raw.get("webhooks") or {}
        retry = raw.get("retry") or slack.get("retry") or webhook.get("retry") or {}
        silences = [{"id": f"config-{i}", **s} for i, s in enumerate(raw.get("silences") or [])]
        cfg = cls(slack_routes=list(raw.get("routes") or slack.get("routes") or []),
                  slack_timeout=float(slack.get("timeout", 10.0)),
                  webhook_timeout=float(webhook.get("timeout", 10.0)),
                  external_url=str(webhook.get("external_url", "")),
                  retry=RetryPolicy(**retry), silences=tuple(Silence.from_dict(s) for s in silences))
        if "inhibit" in raw:
            cfg.inhibit_rules = tuple(InhibitRule.from_dict(r) for r in raw["inhibit"] or [])
        return cfg


def stored_silences(store: StateStore) -> list[Silence]:
    return [Silence.from_dict(s) for s in store.get(SILENCES_STATE) or []]


def build_sinks(settings: Settings, cfg: DeliveryConfig, store: StateStore,
                http: httpx.AsyncClient) -> list[Sink]:
    from connectors.slack import SlackSink, SlackWebhookSink
    from connectors.webhook import WebhookSink
    from slack_sdk.web.async_client import AsyncWebClient

    sinks: list[Sink] = []
    if settings.webhook_url:
        sinks.append(WebhookSink(settings.webhook_url, http, settings.webhook_secret, settings.webhook_format,
                                 timeout=cfg.webhook_timeout, external_url=cfg.external_url))
    if settings.slack_bot_token is not None:
        client = AsyncWebClient(token=settings.slack_bot_token.get_secret_value(),
                                base_url=settings.slack_api_url,
                                timeout=cfg.slack_timeout, retry_handlers=[])
        sinks.append(SlackSink(client, store, settings.slack_channel, cfg.slack_routes))
    if settings.slack_webhook_url is not None:
        sinks.append(SlackWebhookSink.from_url(settings.slack_webhook_url.get_secret_value(),
                                               timeout=cfg.slack_timeout))
    return sinks


@asynccontextmanager
async def open_delivery(settings: Settings, state_dir: str | None = None,
                        config: Mapping[str, Any] | None = None,
                        policy: RetryPolicy | None = None) -> AsyncIterator[Delivery]:
    """A ``Delivery`` over the state directory with the sinks the settings configure."""
    cfg = DeliveryConfig.from_mapping(config)
    state_dir = state_dir or settings.state_dir
    store = FileStateStore(state_dir)
    async with httpx.AsyncClient() as http:
        sinks = build_sinks(settings, cfg, store, http)
        yield Delivery(sinks, FileOutbox(state_dir), store, HistoryLog(state_dir),
                       silences=lambda: [*cfg.silences, *stored_silences(store)],
                       inhibit_rules=cfg.inhibit_rules, policy=policy or cfg.retry)


def read_notifications(path: Path) -> Iterable[dict[str, Any]]:
    with path.open("r", encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if line.strip():
                try:
                    yield json.loads(line)
                except ValueError as exc:
                    raise ValueError(f"{path}:{number}: not JSON ({exc})") from None


def load_raw_config(path: str | None) -> dict[str, Any]:
    """The whole YAML document, validated by the detection core's loader."""
    from gatewatch.config import load_config

    return dict(load_config(path).raw)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", type=Path, help="notifications NDJSON (replay --out)")
    parser.add_argument("--state-dir",
                        help="outbox/history directory (default GATEWATCH_STATE_DIR or .gatewatch)")
    parser.add_argument("--config", help="YAML config: routes, slack, webhooks, inhibit, silences "
                        "(default GATEWATCH_CONFIG)")
    parser.add_argument("--max-elapsed", type=float, default=None,
                        help="seconds to keep retrying a sink's oldest notification in this run")


async def _deliver(args: argparse.Namespace, settings: Settings, notifications: list[dict[str, Any]]) -> int:
    config = load_raw_config(args.config or settings.config)
    policy = None
    if args.max_elapsed is not None:
        base = DeliveryConfig.from_mapping(config).retry
        policy = RetryPolicy(base.initial, base.multiplier, base.cap, args.max_elapsed)
    async with open_delivery(settings, args.state_dir, config, policy) as delivery:
        if not delivery.sinks:
            print("no sink configured: set GATEWATCH_WEBHOOK_URL, "
                  "SLACK_BOT_TOKEN (+ GATEWATCH_SLACK_CHANNEL) "
                  "or GATEWATCH_SLACK_WEBHOOK_URL", file=sys.stderr)
            return 2
        decisions = delivery.submit_many(notifications)
        report = await delivery.drain()
    print(f"notifications: {len(notifications)}  decisions: {decisions}")
    for sink in sorted(report.pending):
        print(f"{sink}: sent {report.sent[sink]}, failed {report.failed[sink]}, "
              f"pending {report.pending[sink]}")
    if report.pending_total:
        print("some notifications are still pending: run the same command again to resume", file=sys.stderr)
    return 1 if report.pending_total else 0


def run(args: argparse.Namespace) -> int:
    try:
        notifications = list(read_notifications(args.file))
        DeliveryConfig.from_mapping(load_raw_config(args.config))  # a bad config fails before any send
    except (OSError, ValueError, TypeError, KeyError) as exc:
        print(f"gatewatch deliver: {exc}", file=sys.stderr)
        return 2
    return asyncio.run(_deliver(args, load_settings(), notifications))
