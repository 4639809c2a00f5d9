"""The demo: a simulated day of gateway traffic with incidents, replayed, shown readably.

Which labelled incidents were caught is decided by ``models.scoring`` (the shared
scorer's rule).
"""

from __future__ import annotations


def incidents_of(notifications: list[dict]) -> dict[str, dict]:
    """One entry per incident: first and last message, categories, pages."""
    out: dict[str, dict] = {}
    for n in notifications:
        inc = out.setdefault(n["incident"], {"first": n, "last": n, "peak": n, "cats": set(), "messages": 0})
        inc["last"] = n
        if n["status"] == "firing":
            inc["peak"] = n
        inc["messages"] += 1
        inc["cats"] |= {n["category"], *(a["category"] for a in n["alerts"])}
    return out


def render(notifications: list[dict]) -> str:
    """The incidents as an on-call engineer would like to read them."""
    lines = []
    for inc in incidents_of(notifications).values():
        first, last, peak = inc["first"], inc["last"], inc["peak"]
        if first["severity"] == "info" and last["severity"] == "info":
            continue
        icon = {"critical": "!!", "warning": "! "}.get(peak["severity"], "  ")
        lines.append(f"{icon} [{peak['severity']:8}] {first['at'][:16].replace('T', ' ')}  {peak['title']}")
        where = ", ".join(f"{k}={v}" for k, v in peak["labels"].items()) or "gateway-wide"
        lines.append(f"      where: {where}   since: {last['started_at'][11:16]}   "
                     f"categories: {', '.join(sorted(inc['cats']))}")
        for a in peak["alerts"][:6]:
            lines.append(f"      - {a['name']}: {a.get('title', '')}")
            if a.get("explanation"):
                lines.append(f"          {a['explanation']}")
        if len(peak["alerts"]) > 6:
            lines.append(f"      - ... and {len(peak['alerts']) - 6} more alerts")
        if last["status"] == "resolved":
            lines.append(f"      resolved at {last['at'][11:16]} after {inc['messages']} messages")
        lines.append("")
    return "\n".join(lines)
