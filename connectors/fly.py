"""Fly.io log lines → ``Event`` (``kind=log``) with the ``signal`` that alerting reads.

Two envelopes, specified in reference/SOURCES.md:

* §3a the NATS log stream (what fly-log-shipper consumes): one-line JSON with ``event.provider``,
  ``fly.app.name``, ``fly.app.instance``, ``fly.region``, ``log.level``, ``message`` and an RFC 3339
  ``timestamp`` with nanoseconds;
* §3b ``flyctl logs --json``: ``level``, ``instance``, ``message``, ``region``, ``timestamp`` and a
  Go-cased ``meta`` (``meta.Event.Provider``); no app name.

When ``message`` is itself a LiteLLM JSON log line (it starts with ``{``), it is decoded and
classified by ``connectors.litellm.parse_json_log``; the envelope's timestamp wins.
Other lines are classified by their text: the runner's OOM kills, exits and starts, the Fly
proxy's "could not find a good candidate", the Langfuse worker's ClickHouse errors and batches.
"""

from __future__ import annotations

import re
from typing import Any, Final

import orjson

from connectors.fields import to_epoch
from connectors.litellm import MESSAGE_CHARS, log_event, parse_json_log
from models.redaction import redact
from models.events import (
    SIG_APP_ERROR,
    SIG_CLEAN_EXIT,
    SIG_CLICKHOUSE_ERROR,
    SIG_CRASH,
    SIG_INGEST_BATCH,
    SIG_OOM,
    SIG_OTHER,
    SIG_PROXY_ERROR,
    SIG_START,
    Event,
    Rejected,
)

__all__ = ["classify_line", "parse_flyctl", "parse_nats", "text_signal"]

_EMPTY: Final[dict[str, Any]] = {}
_ERROR_LEVELS: Final = frozenset({"error", "critical", "fatal"})
_EXIT_CODE: Final = re.compile(r"exited with exit code (-?\d+)")
# Signals that mean something is wrong; the rest (access lines aside) are ok.
_BAD_SIGNALS: Final = frozenset({SIG_OOM, SIG_CRASH, SIG_PROXY_ERROR, SIG_CLICKHOUSE_ERROR, SIG_APP_ERROR})


def parse_nats(obj: dict[str, Any]) -> Event:
    """A Fly NATS log-stream message (SOURCES.md §3a) → a ``log`` event."""
    # Typed, so that compiled (setup.py) their lookups are dict lookups, not method calls.
    fly: dict[str, Any] = obj.get("fly") or _EMPTY
    app: dict[str, Any] = fly.get("app") or _EMPTY
    event: dict[str, Any] = obj.get("event") or _EMPTY
    log: dict[str, Any] = obj.get("log") or _EMPTY
    return classify_line(
        obj.get("message") or "",
        event.get("provider") or "",
        log.get("level") or "",
        _timestamp(obj),
        "fly",
        app.get("name") or "",
        app.get("instance") or "",
        fly.get("region") or "",
    )


def parse_flyctl(obj: dict[str, Any]) -> Event:
    """One ``flyctl logs --json`` object (SOURCES.md §3b) → a ``log`` event (``app`` is unknown)."""
    meta: dict[str, Any] = obj.get("meta") or _EMPTY
    event: dict[str, Any] = meta.get("Event") or _EMPTY
    return classify_line(
        obj.get("message") or "",
        event.get("Provider") or "",
        obj.get("level") or "",
        _timestamp(obj),
        "flyctl",
        "",
        obj.get("instance") or meta.get("Instance") or "",
        obj.get("region") or meta.get("Region") or "",
    )


def classify_line(
    message: str, provider: str, level: str, ts: float, source: str, app: str, instance: str, region: str
) -> Event:
    """One Fly log line out of its envelope → an event with its signal.

    ``provider`` is the envelope's event provider (``app``, ``runner``, ``proxy``), ``level`` its level.
    """
    if message[:1] == "{":
        inner = _inner_json(message)
        if inner is not None:
            return parse_json_log(inner, ts, source, app, instance, region, level)
    event = log_event(ts, source, app, instance, region, level.upper())
    event.signal = signal = text_signal(message, provider, level.lower())
    event.ok = signal not in _BAD_SIGNALS
    event.message = redact(message)[:MESSAGE_CHARS]
    return event


def text_signal(message: str, provider: str, level: str) -> str:
    """What a plain-text Fly line means. ``provider`` is ``event.provider``; ``level`` lower-case.

    The runner's lines are matched only when the provider is the runner or unknown, so that an
    application that happens to print "Starting machine…" is not a machine start.
    """
    if provider in ("runner", ""):
        signal = _runner_signal(message)
        if signal:
            return signal
    if "could not find a good candidate" in message or (provider == "proxy" and level in _ERROR_LEVELS):
        return SIG_PROXY_ERROR
    if "ClickHouse INSERT error" in message:
        return SIG_CLICKHOUSE_ERROR
    if "Starting LiteLLM Proxy Server" in message:  # the same line without json_logs
        return SIG_START
    if "Processed ingestion queue batch" in message:
        return SIG_INGEST_BATCH
    if level in _ERROR_LEVELS or _looks_like_error(message):
        return SIG_APP_ERROR
    return SIG_OTHER


def _runner_signal(message: str) -> str:
    if "Out of memory: Killed process" in message:
        return SIG_OOM
    exit_code = _EXIT_CODE.search(message)
    if exit_code is not None:
        return SIG_CLEAN_EXIT if exit_code[1] == "0" else SIG_CRASH
    if "Main child exited normally" in message:
        return SIG_CLEAN_EXIT
    if message.startswith("Sending signal SIG"):
        return SIG_OTHER
    if message.startswith("Starting machine"):
        return SIG_START
    return ""


def _looks_like_error(message: str) -> bool:
    # Fly tags every app stdout line "info" (SOURCES.md §3a), so the text has to say it.
    return "ERROR" in message or "Exception" in message or "Traceback" in message


def _inner_json(message: str) -> dict[str, Any] | None:
    try:
        inner = orjson.loads(message)
    except orjson.JSONDecodeError:
        return None  # a text line that merely starts with "{"
    return inner if type(inner) is dict else None


def _timestamp(obj: dict[str, Any]) -> float:
    ts = to_epoch(obj.get("timestamp"), "timestamp")
    if ts is None:
        raise Rejected("missing_field", "timestamp")
    return ts
