"""Rendering an incident as the notification of CONTRACT §3.

Every notification says what broke (title, category), where (labels), since when
(``started_at``), how bad (value against threshold) and the baseline, in the fields
and again in ``summary``, a plain-text block the sinks can show as is.
"""

from __future__ import annotations

from datetime import datetime, timezone

from models.redaction import redact_value


def iso(ts: float) -> str:
    """Epoch seconds as ``2026-09-14T09:04:10.000Z`` (millisecond precision, UTC)."""
    d = datetime.fromtimestamp(round(ts, 3), tz=timezone.utc)
    return d.strftime("%Y-%m-%dT%H:%M:%S.") + f"{d.microsecond // 1000:03d}Z"


def where(labels: dict[str, str]) -> str:
    if not labels:
        return "gateway"
    return ", ".join(f"{k} {v}" for k, v in sorted(labels.items()))


def fmt_value(name: str, v: float | None) -> str:
    if v is None:
        return "n/a"
    if name in {"rate", "error_rate", "5xx_rate", "cache_hit_rate", "spend_today_ratio"} or name.endswith("_rate"):
        return f"{v:.1%}"
    if name == "cost_ratio":  # a cost rule's threshold and baseline are in its value's unit: $ per hour
        return f"${v:,.2f}/h"
    if name == "spend_today":
        return f"${v:,.2f}"
    if name == "request_ratio":  # a traffic rule's threshold and baseline: calls per second
        return f"{v:.3g} req/s"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    return f"{v:.3g}"


def _primary(inc) -> object:
    from models.incidents import SEVERITY_RANK

    # The most severe, then the most specific (a team's cost spike says more than the gateway's
    # cost going up with it: "where" is in the title), then the first to start.
    live = inc.firing() or list(inc.alerts.values())
    return max(live, key=lambda a: (SEVERITY_RANK[a.severity], len(a.labels), -a.started_at, a.id))


def common_labels(alerts) -> dict[str, str]:
    """Labels on which the alerts that state them agree (conflicting keys dropped)."""
    seen: dict[str, set[str]] = {}
    for a in alerts:
        for k, v in a.labels.items():
            seen.setdefault(k, set()).add(v)
    return {k: next(iter(vs)) for k, vs in sorted(seen.items()) if len(vs) == 1}


def alert_dict(a) -> dict:
    d = {
        "name": a.name, "category": a.category, "severity": a.severity, "detector": a.detector,
        "value": _round(a.value), "threshold": _round(a.threshold), "labels": dict(sorted(a.labels.items())),
        "started_at": iso(a.started_at), "status": "firing" if a.firing else "resolved",
        "title": a.title,
    }
    if a.baseline is not None:
        d["baseline"] = _round(a.baseline)
    if a.explanation:
        d["explanation"] = a.explanation
    if a.score is not None:
        d["score"] = _round(a.score)
    if a.ended_at is not None:
        d["ended_at"] = iso(a.ended_at)
    if a.worst_value is not None and a.worst_value != a.value:
        d["worst"] = _round(a.worst_value)
    return d


def _round(v: float | None) -> float | None:
    return None if v is None else float(f"{v:.6g}")


def render_notification(inc, status: str, now: float, reason: str) -> dict:
    alerts = sorted(inc.alerts.values(), key=lambda a: (a.started_at, a.id))
    primary = _primary(inc)
    title = primary.title
    if status == "resolved":  # how bad it got, not the calm reading it ended on
        title = f"RESOLVED: {_at_worst(primary)}"
    labels = common_labels(alerts)
    categories = []
    for a in sorted(alerts, key=lambda a: (-{"critical": 2, "warning": 1}.get(a.severity, 0), a.started_at)):
        if a.category not in categories:
            categories.append(a.category)
    return redact_value({  # a key alias or an error text quoted in a title must not carry a secret out
        "incident": inc.id,
        "status": status,
        "category": primary.category,
        "severity": inc.severity(),
        "title": title,
        "at": iso(now),
        "started_at": iso(inc.started_at),
        "labels": labels,
        "alerts": [alert_dict(a) for a in alerts],
        "seq": inc.seq,
        "reason": reason,
        "categories": categories,
        "summary": summary_text(inc, alerts, labels, status, now),
    })  # type: ignore[return-value]


def _was_worse(a) -> bool:
    """Whether the alert's worst reading differs from its last one."""
    return bool(a.worst_title) and a.worst_title != a.title


def _at_worst(a) -> str:
    """The alert's worst reading, when it was worse than its last one; else its last one."""
    return f"{a.worst_title} at worst" if _was_worse(a) else a.title


def _what(a, status: str) -> str:
    return f"{_at_worst(a)}, now {a.title}" if status == "resolved" and _was_worse(a) else a.title


def summary_text(inc, alerts, labels, status: str, now: float) -> str:
    firing = [a for a in alerts if a.firing]
    mins = (now - inc.started_at) / 60
    lines = [
        f"What: {_what(_primary(inc), status)}",
        f"Where: {where(labels)}",
        f"Since: {iso(inc.started_at)} ({mins:.0f} min)" + (" - now resolved" if status == "resolved" else ""),
        f"Alerts: {len(firing)} firing of {len(alerts)}",
    ]
    for a in alerts:
        state = "firing" if a.firing else "resolved"
        line = f"  - [{a.severity}] {a.name} ({state}): {a.title}"
        if not a.firing and _was_worse(a):
            line = f"  - [{a.severity}] {a.name} ({state}): worst {a.worst_title}; last {a.title}"
        if a.explanation:
            line += f"; {a.explanation}"
        lines.append(line)
    return "\n".join(lines)
