"""Scoring notifications against labelled incidents: what ``gatewatch tune`` ranks by.

The same rule as the shared scorer (``../shared/tools/score_scenarios.py``), so a tuning
run reports the figures the acceptance tests see:

* only ``firing`` notifications that are not ``info`` count (info is for the record: it
  neither detects nor is noise);
* a labelled incident is *detected* when a project incident whose categories (its own
  and its alerts') include the label's category sent its first page within
  ``[start - 2 min, end + 10 min]``; its *delay* is that first page minus ``start``;
* a project incident whose first page falls in no label's window is a *false incident*;
* *pages* of a labelled incident: the project incidents that detect it (ideal 1).

Labels come as the scenarios' ``labels.json`` (``{"incidents": [...]}``) or as a list an
operator writes by hand (``start``, ``end``, ``category``, optional ``labels`` and ``id``);
see ``parse_labels``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any, Iterable, Mapping

__all__ = ["Score", "parse_labels", "page_incidents", "score", "EARLY", "LATE"]

EARLY = timedelta(minutes=2)  # a page this long before the labelled start still counts
LATE = timedelta(minutes=10)  # ... and this long after the labelled end


def _time(value: Any) -> datetime:
    """ISO text (``Z`` allowed) or a YAML timestamp to an aware UTC datetime."""
    if isinstance(value, datetime):
        ts = value
    elif isinstance(value, date):
        ts = datetime(value.year, value.month, value.day)
    else:
        ts = datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
    return ts if ts.tzinfo else ts.replace(tzinfo=timezone.utc)


def parse_labels(doc: Any) -> list[dict]:
    """Labelled incidents, normalised: ``id``, ``category``, ``start``/``end`` (aware
    datetimes) and ``labels``. Raises ``ValueError`` saying which entry is wrong."""
    items = doc.get("incidents", []) if isinstance(doc, Mapping) else doc
    if not isinstance(items, list):
        raise ValueError("labels: expected a list of incidents or a mapping with 'incidents'")
    out = []
    for n, item in enumerate(items, 1):
        if not isinstance(item, Mapping) or not {"start", "end", "category"} <= set(item):
            raise ValueError(f"labels: incident {n} needs start, end and category")
        try:
            start, end = _time(item["start"]), _time(item["end"])
        except (TypeError, ValueError) as e:
            raise ValueError(f"labels: incident {n}: bad time: {e}") from None
        if end < start:
            raise ValueError(f"labels: incident {n} ends before it starts")
        out.append({"id": str(item.get("id") or f"inc{n}"), "category": str(item["category"]),
                    "start": start, "end": end, "labels": dict(item.get("labels") or {})})
    return out


def page_incidents(notifications: Iterable[Mapping[str, Any]]) -> dict[str, dict]:
    """Project incidents as pages: first firing (non-info) message time, categories, messages."""
    by_id: dict[str, dict] = {}
    for n in notifications:
        iid = n.get("incident")
        if n.get("status") != "firing" or iid is None or n.get("severity") == "info":
            continue
        cats = {n.get("category")} | {a.get("category") for a in n.get("alerts", [])}
        at = _time(n["at"])
        cur = by_id.setdefault(iid, {"first": at, "cats": set(), "n": 0, "title": n.get("title", "")})
        cur["first"] = min(cur["first"], at)
        cur["cats"] |= {c for c in cats if c}
        cur["n"] += 1
    return by_id


@dataclass
class Score:
    incidents: int
    detected: int
    false_positives: int
    project_incidents: int
    median_delay_s: float | None
    max_delay_s: float | None
    max_pages_per_incident: int
    mean_pages_per_incident: float | None
    rows: list[dict] = field(default_factory=list)
    false_incidents: list[str] = field(default_factory=list)

    @property
    def recall(self) -> float:
        return self.detected / self.incidents if self.incidents else 1.0

    def rank_key(self) -> tuple:
        """Best first: catch everything, then least noise, then one page each, then fastest."""
        delay = self.median_delay_s if self.median_delay_s is not None else float("inf")
        return (-self.recall, self.false_positives, self.max_pages_per_incident, delay)

    def as_dict(self) -> dict:
        return {"incidents": self.incidents, "detected": self.detected, "recall": self.recall,
                "false_positives": self.false_positives, "project_incidents": self.project_incidents,
                "median_delay_s": self.median_delay_s, "max_delay_s": self.max_delay_s,
                "max_pages_per_incident": self.max_pages_per_incident,
                "mean_pages_per_incident": self.mean_pages_per_incident}


def score(labels: Any, notifications: Iterable[Mapping[str, Any]]) -> Score:
    """Score notifications against labels (a ``labels.json`` document or ``parse_labels`` output)."""
    truth = parse_labels(labels)
    pages = page_incidents(notifications)
    used: set[str] = set()
    rows = []
    for t in truth:
        lo, hi = t["start"] - EARLY, t["end"] + LATE
        inside = [iid for iid, p in pages.items() if lo <= p["first"] <= hi]
        used.update(inside)  # anything paging inside a label's window is not noise
        hits = [iid for iid in inside if t["category"] in pages[iid]["cats"]]
        delay = min(((pages[i]["first"] - t["start"]).total_seconds() for i in hits), default=None)
        rows.append({**t, "detected": bool(hits), "delay_s": delay, "pages": len(hits), "matched": hits})
    detected = [r for r in rows if r["detected"]]
    delays = sorted(r["delay_s"] for r in detected)
    return Score(
        incidents=len(truth), detected=len(detected),
        false_positives=sum(1 for iid in pages if iid not in used), project_incidents=len(pages),
        median_delay_s=delays[len(delays) // 2] if delays else None,
        max_delay_s=delays[-1] if delays else None,
        max_pages_per_incident=max((r["pages"] for r in detected), default=0),
        mean_pages_per_incident=sum(r["pages"] for r in detected) / len(detected) if detected else None,
        rows=rows, false_incidents=[iid for iid in pages if iid not in used],
    )
