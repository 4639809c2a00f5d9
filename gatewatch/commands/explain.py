"""``gatewatch explain INCIDENT``: one incident as text: its messages, its alerts with the
evidence (value against threshold and baseline, anomaly score), and the dimensions that
drive it. Reads a replay's notifications (``--notifications``) or the service's delivery
history (``history.jsonl`` in the state directory: every send and suppression keeps the
notification's alerts)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import orjson

HELP = "explain one incident: its messages, alerts, evidence against the baseline, and contributors"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("incident", metavar="INCIDENT", help="incident id, or an unambiguous prefix of it")
    p.add_argument("--notifications", metavar="NOTIFS.ndjson",
                   help="a replay's output (default: the delivery history in the state directory)")
    p.add_argument("--state-dir", help="state directory (default GATEWATCH_STATE_DIR or .gatewatch)")


def from_notifications(path: str) -> list[dict]:
    out = []
    with open(path, "rb") as f:
        for line in f:
            try:
                out.append(orjson.loads(line))
            except orjson.JSONDecodeError:
                continue  # a torn or foreign line is not an incident
    return [n for n in out if isinstance(n, dict) and n.get("incident")]


def from_history(state_dir: str | None) -> list[dict]:
    """Notifications as the delivery history recorded them, one per (incident, seq), with
    what happened to each (sent to which sinks, or suppressed and why)."""
    from connectors.outbox import HistoryLog
    from gatewatch.settings import load_settings

    notes: dict[str, dict] = {}
    for r in HistoryLog(state_dir or load_settings().state_dir).read():
        if r.get("event") not in ("sent", "suppressed", "failed") or not r.get("incident"):
            continue
        n = notes.setdefault(r["key"], {**r, "reason": r.get("notification_reason", ""), "delivery": []})
        if r.get("alerts") is not None:
            n.update(alerts=r["alerts"], labels=r.get("labels") or {}, started_at=r.get("started_at"))
        outcome = r["event"] + (f" {r['sink']}" if r.get("sink") else "")
        n["delivery"].append(outcome + (f" ({r.get('reason')})" if r["event"] == "suppressed" else ""))
    return list(notes.values())


def pick(notes: list[dict], wanted: str) -> tuple[str | None, list[str]]:
    ids = list(dict.fromkeys(n["incident"] for n in notes))
    if wanted in ids:
        return wanted, []
    found = [i for i in ids if i.startswith(wanted)]
    return (found[0], []) if len(found) == 1 else (None, found or ids[-10:])


def _pct(category: str, v: Any) -> str:
    """Shares as percentages (a rate-limit rule counts calls, its anomaly model a share)."""
    if v is None:
        return "n/a"
    if category in ("error_rate", "cache", "tracing", "budget", "rate_share") and abs(v) <= 1.5:
        return f"{v:.1%}"
    if category == "latency":
        return f"{v:.2f} s"
    return f"{v:,.4g}"


def render(notes: list[dict]) -> list[str]:
    from models.explain import alert_evidence, contributors

    first, last = notes[0], notes[-1]
    firing = [n for n in notes if n.get("status") == "firing"] or notes
    peak = max(firing, key=lambda n: {"critical": 2, "warning": 1}.get(n.get("severity"), 0))
    where = ", ".join(f"{k}={v}" for k, v in sorted((peak.get("labels") or {}).items())) or "gateway-wide"
    ended = f", resolved {last['at'][:16].replace('T', ' ')}" if last.get("status") == "resolved" else ", still open"
    lines = [f"{first['incident']}  {peak.get('severity')}  {peak.get('category')}  {where}",
             f"What:   {peak.get('title')}",
             f"Since:  {(first.get('started_at') or first['at'])[:16].replace('T', ' ')} UTC{ended}", "", "Messages:"]
    for n in notes:
        how = "; ".join(n.get("delivery", [])) or ""
        lines.append(f"  {n['at'][:16].replace('T', ' ')}  {n.get('reason', ''):<14} {n.get('status', ''):<9}"
                     f"{n.get('severity', ''):<9} {n.get('title', '')}{('  [' + how + ']') if how else ''}")
    alerts = alert_evidence(notes)
    lines += ["", f"Alerts ({len(alerts)}), each at its last firing reading:"]
    for a in alerts:
        lines += _alert_lines(a)
    who = contributors(alerts)
    lines += ["", "Contributors:"] + ([f"  {w}  (named by {', '.join(names)})" for w, names in who]
                                      or ["  none named in the explanations"])
    return lines


def _alert_lines(a: dict) -> list[str]:
    cat = a.get("category", "")
    if cat == "rate_limit" and a.get("detector") == "anomaly":
        cat = "rate_share"
    where = ", ".join(f"{k}={v}" for k, v in sorted((a.get("labels") or {}).items())) or "gateway"
    score = f", anomaly score {a['score']:.2f}" if a.get("score") is not None else ""
    ended = f" until {a['ended_at'][11:16]}" if a.get("ended_at") else ""
    out = [f"  - {a.get('name')} [{a.get('severity', '')} {a.get('detector', '')}] {where}, "
           f"{a.get('status', 'firing')} since {str(a.get('started_at', ''))[11:16]}{ended}",
           f"      evidence: value {_pct(cat, a.get('value'))} against threshold {_pct(cat, a.get('threshold'))}"
           f", baseline {_pct(cat, a.get('baseline'))}{score}"]
    if a.get("explanation"):
        out.append(f"      {a['explanation']}")
    return out


def run(args: argparse.Namespace) -> int:
    try:
        notes = from_notifications(args.notifications) if args.notifications else from_history(args.state_dir)
    except OSError as e:
        print(f"gatewatch explain: {e.filename}: {e.strerror}", file=sys.stderr)
        return 2
    incident, candidates = pick(notes, args.incident)
    if incident is None:
        what = "matches several incidents" if candidates and any(c.startswith(args.incident) for c in candidates) \
            else "no such incident"
        print(f"gatewatch explain: {args.incident}: {what}; known: {', '.join(candidates) or 'none'}",
              file=sys.stderr)
        return 1
    print("\n".join(render([n for n in notes if n["incident"] == incident])))
    return 0
