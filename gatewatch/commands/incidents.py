"""``gatewatch incidents``: recent incidents and their notification timeline, read from
the delivery history (every send, retry, failure and suppression with its reason)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from connectors.outbox import HistoryLog
from gatewatch.settings import load_settings

HELP = "list recent incidents and their notification timeline (from the delivery history)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--state-dir", help="state directory (default GATEWATCH_STATE_DIR or .gatewatch)")
    parser.add_argument("--limit", type=int, default=20, help="most recent incidents to show (default 20)")
    parser.add_argument("--json", action="store_true", help="one JSON object per incident")
    parser.add_argument("--all", action="store_true", help="also list each duplicate submission")


def group_by_incident(records: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Incidents in order of their latest history record, oldest first."""
    incidents: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        incident = str(record.get("incident"))
        incidents.setdefault(incident, []).append(record)
        incidents[incident] = incidents.pop(incident)  # move to the end: most recent last
    return incidents


def timeline(records: list[dict[str, Any]], show_duplicates: bool = False) -> list[str]:
    """One line per (key, sink) outcome in notification order; retries folded into a count
    on that line; duplicate submissions (a re-run ``deliver``) folded into one line."""
    lines: list[str] = []
    retries: dict[tuple[Any, Any], int] = {}
    duplicates = [r for r in records if r.get("reason") == "duplicate"]
    if not show_duplicates:
        records = [r for r in records if r.get("reason") != "duplicate"]
    for r in sorted(records, key=lambda r: (r.get("seq") is None, r.get("seq") or 0, r.get("sink") or "")):
        slot = (r.get("key"), r.get("sink"))
        if r["event"] == "retry":
            retries[slot] = retries.get(slot, 0) + 1
            continue
        why = r.get("reason") or r.get("error") or ""
        by = f" by {r['by']}" if r.get("by") else ""
        tries = f" after {retries.pop(slot)} retries" if slot in retries else ""
        lines.append(f"  {r.get('at')}  #{r.get('seq')} {r.get('status'):<8} {r['event']:<10} "
                     f"{r.get('sink') or '-':<14} {why}{by}{tries}".rstrip())
    lines += [f"  {key} {sink}: retrying ({n} failed attempts so far)" for (key, sink), n in retries.items()]
    if duplicates and not show_duplicates:
        lines.append(f"  ({len(duplicates)} duplicate submissions skipped)")
    return lines


def run(args: argparse.Namespace) -> int:
    records = HistoryLog(args.state_dir or load_settings().state_dir).read()
    incidents = list(group_by_incident(records).items())[-args.limit:]
    for incident, recs in reversed(incidents):
        last = recs[-1]
        if args.json:
            print(json.dumps({"incident": incident, "title": last.get("title"), "history": recs}))
            continue
        print(f"{incident}  {last.get('severity')} {last.get('category')}  {last.get('title')}")
        print("\n".join(timeline(recs, args.all)))
    if not records:
        print("no delivery history yet")
    return 0
