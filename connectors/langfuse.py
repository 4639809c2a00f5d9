"""Langfuse observations and traces → ``Event`` (``kind=trace``).

Formats: reference/SOURCES.md §2b (v1 ``ObservationsView``), §2c (v2 observations, same field
names, prices as decimal strings) and §2a (v1 ``TraceWithDetails``). How LiteLLM fills them is in
§1g: ``level == "ERROR"`` on failure with ``statusMessage`` = the error string, ``metadata.cache_hit``,
``name = "litellm:<key alias>"``.

Event time is ``createdAt``, when Langfuse stored the record; ``lag`` is how late that was
(``createdAt − endTime``), the ingestion-delay signal.
"""

from __future__ import annotations

from typing import Any, Final

from connectors.fields import number, real, to_epoch
from connectors.litellm import MESSAGE_CHARS, error_class_in
from models.events import TRACE, Event, Rejected
from models.redaction import redact

__all__ = ["parse_observation", "parse_trace"]

_EMPTY: Final[dict[str, Any]] = {}
_KEY_PREFIX: Final = "litellm:"  # generation name LiteLLM gives: "litellm:<key alias>" (8 characters)


def parse_observation(obj: dict[str, Any]) -> Event:
    """A Langfuse observation (v1 list item or v2 item) → a ``trace`` event."""
    created = to_epoch(obj.get("createdAt"), "createdAt")
    end = to_epoch(obj.get("endTime"), "endTime")
    latency = number(obj.get("latency"))
    start = None
    if latency is None or end is None:  # startTime is needed only then (it costs a parse)
        start = to_epoch(obj.get("startTime"), "startTime")
    meta = _metadata(obj)
    level = obj.get("level") or ""
    failed = level == "ERROR"
    model = obj.get("providedModelName") or obj.get("model") or ""
    team = meta.get("user_api_key_team_alias") or ""
    status_message = redact(obj.get("statusMessage") or "") if failed else ""
    if latency is None:
        latency = _span(start, end)
    cache_hit = meta.get("cache_hit")
    return Event(  # positional, in EVENT_ORDER (connectors/fields.py)
        _first(created, end, start), TRACE, "langfuse", "", model, team, _key_alias(obj.get("name")), "", "", "",
        not failed, 500 if failed else 200, error_class_in(status_message) if failed else "", latency,
        number(obj.get("timeToFirstToken")), _tokens(obj), _cost(obj),
        cache_hit if type(cache_hit) is bool else None, "", None, None,
        obj.get("id") or "", obj.get("traceId") or "", "", level, status_message[:MESSAGE_CHARS],
        _span(end, created),
    )


def parse_trace(obj: dict[str, Any]) -> Event:
    """A Langfuse trace (SOURCES.md §2a) → a ``trace`` event.

    ``latency`` and ``totalCost`` are -1 when the metrics field group was not requested.
    """
    created = to_epoch(obj.get("createdAt"), "createdAt")
    stamp = to_epoch(obj.get("timestamp"), "timestamp")
    latency = _non_negative(number(obj.get("latency")))
    lag = None if created is None or stamp is None else created - stamp - (latency or 0.0)
    return Event(
        ts=_first(created, stamp, None),
        kind=TRACE,
        source="langfuse",
        team=_metadata(obj).get("user_api_key_team_alias") or "",
        latency=latency,
        cost=_non_negative(number(obj.get("totalCost"))) or 0.0,
        trace_id=obj.get("id") or "",
        message=(obj.get("name") or "")[:MESSAGE_CHARS],
        lag=lag,
    )


def _tokens(obj: dict[str, Any]) -> int:
    # usageDetails.total first: the legacy totals sum every key containing "input" (SOURCES.md §2b).
    usage: dict[str, Any] = obj.get("usageDetails") or _EMPTY
    total = usage.get("total")
    if total is None:
        total = obj.get("totalTokens")
    if total is None:
        total = (usage.get("input") or 0) + (usage.get("output") or 0)
    return total if type(total) is int else int(total)


def _cost(obj: dict[str, Any]) -> float:
    costs: dict[str, Any] = obj.get("costDetails") or _EMPTY
    return real(costs.get("total") or obj.get("totalCost") or obj.get("calculatedTotalCost"))


def _metadata(obj: dict[str, Any]) -> dict[str, Any]:
    meta = obj.get("metadata")
    return meta if type(meta) is dict else _EMPTY


def _key_alias(name: object) -> str:
    if type(name) is str and name[:8] == _KEY_PREFIX:
        return name[8:]
    return ""


def _first(a: float | None, b: float | None, c: float | None) -> float:
    for value in (a, b, c):
        if value is not None:
            return value
    raise Rejected("missing_field", "no event time (createdAt/endTime/startTime/timestamp)")


def _span(start: float | None, end: float | None) -> float | None:
    return None if start is None or end is None else end - start


def _non_negative(value: float | None) -> float | None:
    return value if value is not None and value >= 0 else None
