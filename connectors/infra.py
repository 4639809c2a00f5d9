"""Infrastructure records → ``Event`` (``kind=metric``), and the SQLite ``request_log`` rows.

``gatewatch tail redis|postgres`` emit ``{"gatewatch_metric": name, "value": v, "labels": {..},
"timestamp": iso}``; ``gatewatch tail probe`` emits ``{"gatewatch_probe": url, "ok": bool,
"status": code|null, "latency_ms": x, "timestamp": iso}``. A probe becomes one event whose
``value`` is 1.0 when healthy and whose ``status`` is 0 when the endpoint did not answer at all;
the aggregation turns it into the ``probe_reachable`` and ``probe_healthy`` gauges.

The smaller gateways of our runbooks log requests into a SQLite table ``request_log`` (``id,
timestamp, user_id, model, prompt_tokens, completion_tokens, total_tokens, cost, latency,
status_code``); ``gatewatch tail litellm-db --sqlite`` ships its rows with ``"request_log": true``.
"""

from __future__ import annotations

from typing import Any

from connectors.fields import number, to_epoch
from models.events import METRIC, REQUEST, Event, Rejected

__all__ = ["parse_metric", "parse_probe", "parse_request_log"]


def _ts(obj: dict[str, Any], field: str = "timestamp") -> float:
    ts = to_epoch(obj.get(field), field)
    if ts is None:
        raise Rejected("missing_field", f"no usable {field}")
    return ts


def parse_metric(obj: dict[str, Any]) -> Event:
    value = number(obj.get("value"))
    if value is None:
        raise Rejected("wrong_type", "gatewatch_metric without a numeric value")
    labels = obj.get("labels") or {}
    return Event(ts=_ts(obj), kind=METRIC, source="infra", message=str(obj["gatewatch_metric"]),
                 app=str(labels.get("system") or labels.get("instance") or ""), value=value)


def parse_probe(obj: dict[str, Any]) -> Event:
    status = obj.get("status")
    latency = number(obj.get("latency_ms"))
    return Event(ts=_ts(obj), kind=METRIC, source="probe", message="probe", app=str(obj["gatewatch_probe"]),
                 ok=bool(obj.get("ok")), status=int(status) if status is not None else 0,
                 latency=latency / 1000 if latency is not None else None, value=1.0 if obj.get("ok") else 0.0)


def parse_request_log(obj: dict[str, Any]) -> Event:
    status = int(number(obj.get("status_code")) or 200)
    model = str(obj.get("model") or "")
    latency = number(obj.get("latency"))
    if latency is not None and latency > 600:  # milliseconds, not seconds
        latency /= 1000
    return Event(ts=_ts(obj), kind=REQUEST, source="sqlite", provider=model.split("/", 1)[0] if "/" in model else "",
                 model=model, team=str(obj.get("user_id") or ""), ok=status < 400, status=status,
                 latency=latency, tokens=int(number(obj.get("total_tokens")) or 0),
                 cost=number(obj.get("cost")) or 0.0, request_id=f"request_log:{obj.get('id', '')}")
