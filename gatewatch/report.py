"""``gatewatch replay --report report.html``: one self-contained HTML page about a replay.

What an operator tuning gatewatch wants to see instead of reading logs: a timeline of
every incident and every notification (sent, updated, suppressed with the reason,
resolved); per incident its messages, its alerts (value, threshold, baseline, anomaly
score), the dimensions that drive it and the metric around it (value, the baseline band,
thresholds, anomaly score); the busiest series; a summary table; and with labels, which
labelled incident each page caught.

Figures are matplotlib SVG inlined in the page; the little JavaScript (sortable tables,
hiding record-only incidents) is inline too: the file opens offline. Suppression is what
the delivery pipeline's mute stage (``models.silences.mute``: config silences and
inhibition) would decide for each notification.
"""

from __future__ import annotations

import html
from pathlib import Path

from gatewatch import report_plots as plots
from models.explain import alert_evidence, contributors
from models.scoring import score

__all__ = ["incident_views", "render_report", "mute_decisions"]

MAX_TIMELINE = 150  # rows of the timeline (pages first)
MAX_CHARTED = 60  # incidents with figures; the rest are in the tables only
SEGMENTS_PER_INCIDENT = 3
_DIM_ORDER = {"gateway": 0, "provider": 1, "team": 1, "app": 1, "tracing": 1, "model": 2, "key": 2}
_ASSETS = Path(__file__).with_name("report_assets")


def _esc(v) -> str:
    return html.escape(str(v), quote=True)


def mute_decisions(notifications: list[dict], raw_config: dict) -> list[tuple[str, str]]:
    """(decision, why) per notification: ``sent`` or the mute stage's suppression reason."""
    from gatewatch.commands.deliver import DeliveryConfig
    from models.silences import ActiveIncidents, Suppressed, mute

    cfg = DeliveryConfig.from_mapping(raw_config)
    active, out = ActiveIncidents(), []
    for n in notifications:
        d = mute(n, cfg.silences, cfg.inhibit_rules, active)
        out.append((d.reason, d.by) if isinstance(d, Suppressed) else ("sent", ""))
    return out


def incident_views(notifications: list[dict], decisions: list[tuple[str, str]]) -> list[dict]:
    """One record per incident, in order of start: its messages and what happened to each."""
    views: dict[str, dict] = {}
    for n, (decision, by) in zip(notifications, decisions):
        v = views.setdefault(n["incident"], {"id": n["incident"], "notes": [], "all": [], "resolved_at": None,
                                             "started_at": n["started_at"], "peak": n})
        v["all"].append(n)
        v["notes"].append({"at": n["at"], "reason": n.get("reason", ""), "status": n["status"],
                           "severity": n["severity"], "decision": decision, "by": by, "title": n["title"]})
        if n["status"] == "resolved":
            v["resolved_at"] = n["at"]
        else:  # firing (again, if the incident reopened)
            v["peak"] = n if _rank(n) >= _rank(v["peak"]) else v["peak"]
            v["resolved_at"] = None
    for v in views.values():
        v.update(severity=v["peak"]["severity"], title=v["peak"]["title"], category=v["peak"]["category"],
                 labels=v["peak"].get("labels", {}), alerts=alert_evidence(v.pop("all")),
                 info=all(x["severity"] == "info" for x in v["notes"]))
    return sorted(views.values(), key=lambda v: (v["started_at"], v["id"]))


def _rank(n: dict) -> int:
    return {"critical": 2, "warning": 1}.get(n["severity"], 0)


def render_report(notifications: list[dict], recorded: dict, summary_lines: list[str], files: list[str],
                  raw_config: dict | None = None, labels: list[dict] | None = None,
                  fire_score: float | None = 0.4) -> str:
    decisions = mute_decisions(notifications, raw_config or {})
    views = incident_views(notifications, decisions)
    scored = score(labels, notifications) if labels is not None else None
    ends = [plots.when(n["at"]) for n in notifications] + [t["end"] for t in (scored.rows if scored else [])]
    end = max(ends, default=None)
    parts = [_head(files), _cards(views, decisions, scored, summary_lines)]
    if views or labels:
        parts.append(_timeline(views, scored, end))
    if scored is not None:
        parts.append(_labels_table(scored))
    parts.append(_summary_table(views, scored))
    charted = {v["id"] for v in [v for v in views if not v["info"]][:MAX_CHARTED]}
    segments = recorded.get("segments", [])
    parts += [_incident(v, segments, end, fire_score, v["id"] in charted) for v in views]
    if recorded.get("busiest"):
        parts.append(_busiest(recorded["busiest"], views, end))
    parts.append(_foot())
    return "\n".join(parts)


def _timeline(views: list[dict], scored, end) -> str:
    order = {v["id"]: i for i, v in enumerate(views)}
    shown = sorted(sorted(views, key=lambda v: v["info"])[:MAX_TIMELINE], key=lambda v: order[v["id"]])
    more = f" ({len(views) - len(shown)} record-only incidents left out)" if len(shown) < len(views) else ""
    return _section("Timeline", "Every incident and every notification: ▲ sent, ● updated, "
                    f"✖ suppressed (reason in the incident's log), ■ resolved.{more}",
                    plots.timeline_svg(shown, scored.rows if scored else [], end))


def _busiest(busiest: list[dict], views: list[dict], end) -> str:
    spans = [(plots.when(v["started_at"]), plots.when(v["resolved_at"]) if v["resolved_at"] else end,
              v["severity"]) for v in views if not v["info"]]
    return _section("Busiest series", "Requests per minute and error rate of the series with the most calls; "
                    "incidents shaded.", plots.busiest_svg(busiest, spans))


def _head(files: list[str]) -> str:
    css = (_ASSETS / "report.css").read_text()
    guard = (_ASSETS / "errors.js").read_text()
    names = ", ".join(_esc(Path(f).name) for f in files)
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>gatewatch replay report</title>"
            f"<style>{css}</style><script>{guard}</script></head><body>"
            f"<header><h1>gatewatch replay report</h1><p class=files>{names}</p>"
            f"<div id=gw-errors hidden></div></header>")


def _foot() -> str:
    return f"<script>{(_ASSETS / 'report.js').read_text()}</script></body></html>"


def _section(title: str, caption: str, body: str, ident: str = "") -> str:
    anchor = f" id={_esc(ident)}" if ident else ""
    return f"<section{anchor}><h2>{_esc(title)}</h2><p class=caption>{_esc(caption)}</p>{body}</section>"


def _cards(views, decisions, scored, summary_lines) -> str:
    pages = [v for v in views if not v["info"]]
    suppressed = sum(1 for d, _ in decisions if d != "sent")
    cards = [("incidents that page", len(pages)), ("record-only (info)", len(views) - len(pages)),
             ("notifications sent", len(decisions) - suppressed), ("suppressed", suppressed)]
    if scored is not None:
        cards += [("labelled incidents caught", f"{scored.detected}/{scored.incidents}"),
                  ("false incidents", scored.false_positives)]
    body = "".join(f"<div class=card><b>{_esc(v)}</b><span>{_esc(k)}</span></div>" for k, v in cards)
    lines = "".join(f"<li>{_esc(x)}</li>" for x in summary_lines)
    return f"<section class=cards>{body}</section><details><summary>replay summary</summary><ul>{lines}</ul></details>"


def _table(head: list[str], rows: list[str], ident: str) -> str:
    th = "".join(f"<th>{_esc(h)}</th>" for h in head)
    return f"<table class=sortable id={ident}><thead><tr>{th}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _td(*cells) -> str:
    return "".join(f"<td>{c}</td>" for c in cells)


def _labels_table(scored) -> str:
    rows = []
    for r in scored.rows:
        found = " ".join(f"<a href=#{_esc(i)}>{_esc(i)}</a>" for i in r["matched"]) or "—"
        delay = "—" if r["delay_s"] is None else f"{r['delay_s'] / 60:.1f} min"
        state = "caught" if r["detected"] else "MISSED"
        rows.append(f"<tr class='label {state.lower()}' data-label='{_esc(r['id'])}'>" + _td(
            _esc(r["id"]), _esc(r["category"]), f"{r['start']:%Y-%m-%d %H:%M}–{r['end']:%H:%M}",
            _esc(", ".join(f"{k}={v}" for k, v in r["labels"].items()) or "—"), state, delay, found) + "</tr>")
    s = scored
    caption = (f"recall {s.detected}/{s.incidents}, {s.false_positives} false incidents, at most "
               f"{s.max_pages_per_incident} pages per incident (the shared scorer's rule).")
    return _section("Labelled incidents", caption, _table(
        ["label", "category", "window (UTC)", "labels", "caught", "delay", "incidents"], rows, "labels"), "labelled")


def _summary_table(views, scored) -> str:
    false = set(scored.false_incidents) if scored is not None else set()
    rows = []
    for v in views:
        sent = sum(1 for n in v["notes"] if n["decision"] == "sent")
        muted = len(v["notes"]) - sent
        flag = " <em class=false>false?</em>" if v["id"] in false else ""
        rows.append(f"<tr class='{'info' if v['info'] else 'page'} {v['severity']}'>" + _td(
            f"<a href=#{_esc(v['id'])}>{_esc(v['id'])}</a>{flag}", _esc(v["severity"]), _esc(v["category"]),
            _esc(v["title"]), _esc(_where(v["labels"])), _esc(v["started_at"][:16].replace("T", " ")),
            _esc((v["resolved_at"] or "open")[:16].replace("T", " ")), len(v["alerts"]), sent, muted) + "</tr>")
    toggle = "<label><input type=checkbox id=show-info> show record-only (info) incidents</label>"
    return _section("Incidents", "Click a column to sort; click an incident for its details.",
                    toggle + _table(["incident", "severity", "category", "title", "where", "started (UTC)",
                                     "resolved", "alerts", "sent", "suppressed"], rows, "incidents"))


def _where(labels: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(labels.items())) or "gateway-wide"


def _incident(v: dict, segments: list[dict], end, fire_score, charted: bool) -> str:
    figs = _figures(v, segments, end, fire_score) if charted else ""
    cls = "incident info" if v["info"] else "incident"
    return (f"<section class='{cls}' id={_esc(v['id'])}><h2><span class='sev {v['severity']}'>"
            f"{_esc(v['severity'])}</span> {_esc(v['title'])}</h2><p class=caption>{_esc(v['id'])} · "
            f"{_esc(v['category'])} · {_esc(_where(v['labels']))} · since "
            f"{_esc(v['started_at'][:16].replace('T', ' '))} UTC</p>"
            f"<h3>Notifications</h3>{_log_table(v)}<h3>Alerts and evidence</h3>{_alerts_table(v)}"
            f"<h3>Top contributing dimensions</h3>{_drivers(v)}{figs}</section>")


def _log_table(v: dict) -> str:
    rows = [f"<tr class={_esc(n['decision'])}>" + _td(
        _esc(n["at"][:19].replace("T", " ")), _esc(n["reason"]), _esc(n["status"]), _esc(n["severity"]),
        _esc(n["decision"] + (f" by {n['by']}" if n["by"] else "")), _esc(n["title"])) + "</tr>"
        for n in v["notes"]]
    return _table(["at (UTC)", "reason", "status", "severity", "delivery", "title"], rows, "log-" + v["id"])


def _alerts_table(v: dict) -> str:
    rows = ["<tr>" + _td(
        _esc(a["name"]), _esc(_where(a.get("labels", {}))), _esc(a.get("detector", "")), _esc(a.get("status", "")),
        _num(a.get("value")), _num(a.get("threshold")), _num(a.get("baseline")), _num(a.get("score")),
        _esc(a.get("started_at", "")[11:16]), _esc(a.get("explanation") or a.get("title", ""))) + "</tr>"
        for a in v["alerts"]]
    head = ["alert", "where", "detector", "status", "value", "threshold", "baseline", "score", "since", "explanation"]
    return _table(head, rows, "alerts-" + v["id"])


def _drivers(v: dict) -> str:
    items = "".join(f"<li><b>{_esc(w)}</b> <span>named by {_esc(', '.join(names))}</span></li>"
                    for w, names in contributors(v["alerts"]))
    return f"<ul class=drivers>{items or '<li>none named</li>'}</ul>"


def _figures(v: dict, segments: list[dict], end, fire_score) -> str:
    span = (plots.when(v["started_at"]), plots.when(v["resolved_at"]) if v["resolved_at"] else end)
    mine = sorted((s for s in segments if v["id"] in s["incidents"]),
                  key=lambda s: (-len(s["alerts"]), _DIM_ORDER.get(s["dim"], 3)))[:SEGMENTS_PER_INCIDENT]
    return "".join(f"<figure><figcaption>{_esc(s['dim'])} {_esc(s['value'])} · {_esc(s['signal'])}</figcaption>"
                   f"{plots.segment_svg(s, span, v['notes'], fire_score)}</figure>" for s in mine)


def _num(v) -> str:
    if v is None:
        return "—"
    return f"{v:.4g}" if isinstance(v, float) else _esc(v)
