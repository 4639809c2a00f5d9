"""Slack sinks: one threaded message per incident (Web API), or one post per notification
(incoming webhook, for teams without a bot).

Web API: the first notification of an incident posts the parent message (Block Kit) in
the routed channel; later ones ``chat.update`` the parent and post a short line in its
thread; the resolved one turns the parent into "Resolved". incident → (channel, ts) is
kept in the delivery state store, so a restart keeps threading. slack-sdk's own retry
handlers are switched off: backoff lives in ``connectors.delivery``.
"""

from __future__ import annotations

import logging
from typing import Any, Mapping, Sequence

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from connectors.delivery import Outcome
from connectors.outbox import StateStore
from models.silences import label_set

__all__ = ["SlackSink", "SlackWebhookSink", "render_message", "thread_line", "route_channel"]

THREADS_STATE = "slack_threads"
PENDING_STATE = "slack_pending_posts"  # incident → channel of a parent post whose answer never came
PENDING_REPLIES_STATE = "slack_pending_replies"  # delivery key → thread of a reply whose answer never came
CHANNEL_IDS_STATE = "slack_channel_ids"  # "#name" → the ID Slack answered with (history needs an ID)
EVENT_TYPE = "gatewatch_incident"  # message metadata: how a retry finds a parent that did get posted
MAX_THREADS = 5000  # incident → ts entries kept; old incidents no longer get updates anyway
_EMOJI = {"critical": ":red_circle:", "warning": ":warning:", "info": ":information_source:"}
_RESOLVED = ":white_check_mark:"
_RATIO_CATEGORIES = ("error_rate", "rate_limit", "cache")
_RETRYABLE_ERRORS = {"ratelimited", "rate_limited", "internal_error", "fatal_error", "service_unavailable",
                     "request_timeout"}
# slack-sdk logs request URLs at DEBUG; an incoming-webhook URL *is* a secret.
_QUIET = logging.getLogger("gatewatch.slack.quiet")
_QUIET.setLevel(logging.WARNING)


def _fmt(value: Any, category: str) -> str:
    if not isinstance(value, (int, float)):
        return str(value)
    if category in _RATIO_CATEGORIES and abs(value) <= 1:
        return f"{value * 100:.3g}%"
    if category in ("cost", "budget"):
        return f"${value:,.2f}"
    return f"{value:.4g}"


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _how_bad(alert: Mapping[str, Any], category: str) -> str:
    cat = str(alert.get("category", category))
    parts = [f"{alert.get('name', cat)}: {_fmt(alert.get('value'), cat)}"]
    if alert.get("threshold") is not None:
        parts.append(f"vs {_fmt(alert['threshold'], cat)}")
    if alert.get("baseline") is not None:
        parts.append(f"(baseline {_fmt(alert['baseline'], cat)})")
    if alert.get("score") is not None:
        parts.append(f"score {float(alert['score']):.2f}")
    return " ".join(parts)


def _fields(n: Mapping[str, Any]) -> list[dict[str, str]]:
    alerts = list(n.get("alerts") or [])
    category = str(n.get("category", ""))
    where = ", ".join(f"{k}={v}" for k, v in sorted((n.get("labels") or {}).items())) or "everywhere"
    since = str(n.get("started_at", "?")) + (f" → {n.get('at')}" if n.get("status") == "resolved" else "")
    bad = "\n".join(_how_bad(a, category) for a in alerts[:3]) or "n/a"
    why = "\n".join(f"• {a['explanation']}" for a in alerts if a.get("explanation"))
    rows = [("What", f"{category} · {n.get('severity', '?')} · {len(alerts)} alert(s)"), ("Where", where),
            ("Since", since), ("How bad", bad)]
    if why:
        rows.append(("Top contributors", why))
    return [{"type": "mrkdwn", "text": f"*{k}*\n{_escape(v)}"[:2000]} for k, v in rows]


def _header(n: Mapping[str, Any]) -> str:
    if n.get("status") == "resolved":
        return f"{_RESOLVED} Resolved: {_bare_title(n)}"[:150]
    return f"{_EMOJI.get(str(n.get('severity')), ':bell:')} {n.get('title', '')}"[:150]


def _bare_title(n: Mapping[str, Any]) -> str:
    title = str(n.get("title", ""))
    return title[len("RESOLVED: "):] if title.upper().startswith("RESOLVED: ") else title


def render_message(n: Mapping[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    """Fallback text and Block Kit blocks of the parent message."""
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": _header(n), "emoji": True}},
        {"type": "section", "fields": _fields(n)},
    ]
    if n.get("summary"):
        summary = _escape(str(n["summary"]))[:3000]
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": summary}})
    links = [link for link in n.get("links") or [] if link.get("url")][:5]
    if links:
        blocks.append({"type": "actions", "elements": [
            {"type": "button", "text": {"type": "plain_text", "text": str(link.get("title") or "link")[:75]},
             "url": str(link["url"])} for link in links]})
    context = f"incident `{n.get('incident')}` · update {n.get('seq', '?')} · {n.get('at')}"
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": context}]})
    return _header(n), blocks


def thread_line(n: Mapping[str, Any]) -> str:
    if n.get("status") == "resolved":
        return f"{_RESOLVED} Resolved at {n.get('at')}: {_bare_title(n)}"
    alerts = len(n.get("alerts") or [])
    return f"{_EMOJI.get(str(n.get('severity')), ':bell:')} Update {n.get('seq', '?')} at {n.get('at')}: " \
           f"{n.get('title', '')} ({alerts} alert(s))"


def route_channel(n: Mapping[str, Any], routes: Sequence[Mapping[str, Any]],
                  default: str | None) -> str | None:
    """First route whose every ``match`` entry equals (or, for a list, contains) the
    notification's label; labels include category, severity and status."""
    labels = label_set(n)
    for route in routes:
        match = route.get("match") or {}
        if all(labels.get(k) in (v if isinstance(v, list) else [v]) for k, v in match.items()):
            return str(route["channel"])
    return default


def _api_error(exc: SlackApiError) -> Outcome:
    status = exc.response.status_code
    data = exc.response.data if isinstance(exc.response.data, dict) else {}
    error = str(data.get("error") or f"HTTP {status}")
    retry_after = exc.response.headers.get("Retry-After") or exc.response.headers.get("retry-after")
    retryable = status in (408, 429) or status >= 500 or error in _RETRYABLE_ERRORS
    return Outcome(retryable, f"slack {error} (HTTP {status})", float(retry_after) if retry_after else None)


async def _guard(call: Any) -> Any:
    """Await a slack-sdk call; failures come back as an ``Outcome`` instead of raising."""
    try:
        return await call
    except SlackApiError as exc:
        return _api_error(exc)
    except TimeoutError:
        return Outcome(True, "slack timeout")
    except aiohttp.ClientError as exc:
        return Outcome(True, f"slack {type(exc).__name__}")


class SlackSink:
    def __init__(self, client: AsyncWebClient, store: StateStore, default_channel: str | None,
                 routes: Sequence[Mapping[str, Any]] = (), name: str = "slack") -> None:
        self.client, self.store, self.name = client, store, name
        self.default_channel, self.routes = default_channel, list(routes)

    def __repr__(self) -> str:
        return f"SlackSink(name={self.name!r}, default_channel={self.default_channel!r})"

    def _threads(self) -> dict[str, dict[str, str]]:
        return self.store.get(THREADS_STATE) or {}

    def _remember(self, incident: str, channel: str, ts: str) -> None:
        threads = self._threads()
        threads[incident] = {"channel": channel, "ts": ts}
        self.store.put(THREADS_STATE, dict(list(threads.items())[-MAX_THREADS:]))

    async def send(self, n: Mapping[str, Any], key: str) -> Outcome:
        parent = self._threads().get(str(n.get("incident")))
        return await (self._update(n, key, parent) if parent else self._post(n))

    async def _post(self, n: Mapping[str, Any]) -> Outcome:
        channel = route_channel(n, self.routes, self.default_channel)
        if not channel:
            return Outcome(False, "no Slack channel routed (set GATEWATCH_SLACK_CHANNEL)")
        incident = str(n.get("incident"))
        pending = self.store.get(PENDING_STATE) or {}
        if incident in pending and await self._already_posted(incident, pending[incident]):
            return Outcome(False, None)  # the earlier attempt did post: no second parent
        self._mark(PENDING_STATE, incident, channel)
        text, blocks = render_message(n)
        metadata = {"event_type": EVENT_TYPE, "event_payload": {"incident": incident}}
        resp = await _guard(self.client.chat_postMessage(channel=channel, text=text, blocks=blocks, metadata=metadata))
        if isinstance(resp, Outcome):
            return resp
        # remember at once: a retry of a later step must not post a second parent
        self._remember(incident, str(resp.get("channel") or channel), str(resp["ts"]))
        self._mark(PENDING_STATE, incident, None)
        if resp.get("channel") and resp["channel"] != channel:
            ids = self.store.get(CHANNEL_IDS_STATE) or {}
            if ids.get(channel) != resp["channel"]:
                self.store.put(CHANNEL_IDS_STATE, {**ids, channel: str(resp["channel"])})
        return Outcome(False, None)

    def _mark(self, state: str, key: str, where: str | None) -> None:
        """Note in ``state`` that ``key``'s post is under way to ``where`` (None: it is done)."""
        pending = self.store.get(state) or {}
        if where is None:
            if key not in pending:
                return
            del pending[key]
        else:
            pending[key] = where
        self.store.put(state, dict(list(pending.items())[-MAX_THREADS:]))

    async def _already_posted(self, incident: str, channel: str) -> bool:
        """Slack's postMessage has no idempotency key: after an attempt whose answer was lost
        (a timeout), look for our parent in the channel's recent history by its metadata.
        Needs ``channels:history`` and a channel ID: a ``#name`` is looked up among the IDs
        Slack answered earlier posts with. When the lookup fails, the post is made (a
        duplicate is better than silence)."""
        channel = (self.store.get(CHANNEL_IDS_STATE) or {}).get(channel, channel)
        resp = await _guard(self.client.conversations_history(channel=channel, limit=100, include_all_metadata=True))
        if isinstance(resp, Outcome):
            return False
        for message in resp.get("messages") or ():
            if _carries(message, {"incident": incident}):
                self._remember(incident, str(resp.get("channel") or channel), str(message["ts"]))
                self._mark(PENDING_STATE, incident, None)
                return True
        return False

    async def _update(self, n: Mapping[str, Any], key: str, parent: Mapping[str, str]) -> Outcome:
        text, blocks = render_message(n)
        channel, ts = parent["channel"], parent["ts"]
        resp = await _guard(self.client.chat_update(channel=channel, ts=ts, text=text, blocks=blocks))
        if isinstance(resp, Outcome) and "message_not_found" in str(resp.error):
            return await self._post(n)  # someone deleted the parent: start a new one
        if isinstance(resp, Outcome):
            return resp
        return await self._reply(n, key, channel, ts)

    async def _reply(self, n: Mapping[str, Any], key: str, channel: str, ts: str) -> Outcome:
        """The update's line in the parent's thread, once: a retry after an answer that was lost
        looks for the line (by its metadata) among the thread's replies before posting again."""
        replies = self.store.get(PENDING_REPLIES_STATE) or {}
        payload = {"incident": str(n.get("incident")), "update": key}
        if key in replies and await self._already_replied(channel, ts, payload):
            self._mark(PENDING_REPLIES_STATE, key, None)
            return Outcome(False, None)
        self._mark(PENDING_REPLIES_STATE, key, ts)
        metadata = {"event_type": EVENT_TYPE, "event_payload": payload}
        resp = await _guard(self.client.chat_postMessage(channel=channel, thread_ts=ts, text=thread_line(n),
                                                         metadata=metadata))
        if isinstance(resp, Outcome):
            return resp
        self._mark(PENDING_REPLIES_STATE, key, None)
        return Outcome(False, None)

    async def _already_replied(self, channel: str, ts: str, payload: Mapping[str, str]) -> bool:
        resp = await _guard(self.client.conversations_replies(channel=channel, ts=ts, limit=200,
                                                              include_all_metadata=True))
        if isinstance(resp, Outcome):
            return False  # cannot tell: post (a repeated line is better than a missing one)
        return any(_carries(m, payload) for m in resp.get("messages") or ())


def _carries(message: Mapping[str, Any], payload: Mapping[str, str]) -> bool:
    """Whether a listed message is ours (metadata ``EVENT_TYPE``) about ``payload``."""
    meta = message.get("metadata") or {}
    ours = meta.get("event_payload") or {}
    return meta.get("event_type") == EVENT_TYPE and all(ours.get(k) == v for k, v in payload.items())


class SlackWebhookSink:
    """Incoming-webhook mode: one full message per notification, no threads."""

    def __init__(self, client: AsyncWebhookClient, name: str = "slack_webhook") -> None:
        self.client, self.name = client, name
        client.logger = _QUIET

    @classmethod
    def from_url(cls, url: str, timeout: float = 10.0, name: str = "slack_webhook") -> SlackWebhookSink:
        return cls(AsyncWebhookClient(url, timeout=timeout, logger=_QUIET, retry_handlers=[]), name)

    def __repr__(self) -> str:
        return f"SlackWebhookSink(name={self.name!r})"

    async def send(self, n: Mapping[str, Any], key: str) -> Outcome:
        text, blocks = render_message(n)
        resp = await _guard(self.client.send(text=text, blocks=blocks))
        if isinstance(resp, Outcome):
            return resp
        if 200 <= resp.status_code < 300:
            return Outcome(False, None)
        retry_after = resp.headers.get("Retry-After") or resp.headers.get("retry-after")
        retryable = resp.status_code in (408, 429) or resp.status_code >= 500
        return Outcome(retryable, f"slack webhook HTTP {resp.status_code} {str(resp.body)[:80]}",
                       float(retry_after) if retry_after else None)
