"""The report's figures, drawn with matplotlib and inlined as SVG (no JavaScript, no CDN).

Each function takes plain data (notifications, the recorder's export) and returns the
``<svg>`` text. Figures are deterministic: fixed hash salt per figure (unique, so that two
figures inlined in one page never share an element id) and no date in the metadata.
"""

from __future__ import annotations

import io
import itertools
from datetime import datetime, timezone

import matplotlib

matplotlib.use("Agg")
import matplotlib.dates as mdates  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402

from models.signals import BY_NAME  # noqa: E402

__all__ = ["timeline_svg", "segment_svg", "busiest_svg", "when"]

SEVERITY_COLOR = {"critical": "#c0392b", "warning": "#e67e22", "info": "#95a5a6"}
MARKERS = {"new": ("^", "sent"), "update": ("o", "updated"), "suppressed": ("X", "suppressed"),
           "resolved": ("s", "resolved")}
_ids = itertools.count(1)

plt.rcParams.update({"svg.fonttype": "none", "font.size": 9, "axes.spines.top": False,
                     "axes.spines.right": False, "axes.grid": True, "grid.alpha": 0.25})


def when(ts: str | float) -> datetime:
    if isinstance(ts, (int, float)):
        return datetime.fromtimestamp(ts, tz=timezone.utc)
    return datetime.fromisoformat(ts.replace("Z", "+00:00"))


def _minute(m: int) -> datetime:
    """The end of the window a point of minute ``m`` describes."""
    return when((m + 1) * 60.0)


def _svg(fig) -> str:
    plt.rcParams["svg.hashsalt"] = f"gw-fig-{next(_ids)}"
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None, "Creator": None})
    plt.close(fig)
    text = buf.getvalue()
    return text[text.index("<svg"):]


def _time_axis(ax) -> None:
    loc = mdates.AutoDateLocator(minticks=4, maxticks=10)
    ax.xaxis.set_major_locator(loc)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(loc))


def _kind(reason: str, decision: str) -> str:
    if decision != "sent":
        return "suppressed"
    return {"new": "new", "resolved": "resolved"}.get(reason, "update")


def timeline_svg(incidents: list[dict], labels: list[dict], end: datetime) -> str:
    """One row per incident: a bar from its start to its resolution, a marker per message."""
    rows = len(incidents) + (1 if labels else 0)
    fig, ax = plt.subplots(figsize=(11, 1.2 + 0.32 * max(rows, 1)))
    for t in labels:
        ax.axvspan(t["start"], t["end"], color="#3498db", alpha=0.08, lw=0)
        ax.barh(-1, t["end"] - t["start"], left=t["start"], height=0.5, color="#3498db", alpha=0.6)
        ax.text(t["start"], -1.45, t["id"], fontsize=7, color="#2471a3")
    for y, inc in enumerate(incidents):
        start, stop = when(inc["started_at"]), when(inc["resolved_at"]) if inc["resolved_at"] else end
        ax.barh(y, stop - start, left=start, height=0.45, color=SEVERITY_COLOR[inc["severity"]], alpha=0.35)
        for note in inc["notes"]:
            kind = _kind(note["reason"], note["decision"])
            ax.plot(when(note["at"]), y, MARKERS[kind][0], ms=6 if kind != "suppressed" else 7,
                    color="black" if kind == "suppressed" else SEVERITY_COLOR[note["severity"]],
                    mec="black", mew=0.5)
    ax.set_yticks([-1] * bool(labels) + list(range(len(incidents))))
    ax.set_yticklabels(["labelled"] * bool(labels) + [_short(i["title"], 48) for i in incidents], fontsize=8)
    ax.invert_yaxis()
    ax.set_ylim(len(incidents) - 0.4, -1.8 if labels else -0.6)
    handles = [plt.Line2D([], [], ls="", marker=m, color="grey", mec="black", label=text)
               for m, text in MARKERS.values()]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)
    _time_axis(ax)
    return _svg(fig)


def _short(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _fmt(signal: str):
    sig = BY_NAME.get(signal)
    if signal == "spend_today_ratio":
        return FuncFormatter(lambda v, _: f"{v:.0%}")
    return FuncFormatter(lambda v, _: sig.fmt(v) if sig else f"{v:g}")


def segment_svg(seg: dict, span: tuple[datetime, datetime], notes: list[dict], fire_score: float | None) -> str:
    """A metric around an incident: value, baseline band, thresholds, and the anomaly score."""
    pts = seg["points"]
    xs = [_minute(p[0]) for p in pts]
    scored = any(p[4] is not None for p in pts)
    fig, axes = plt.subplots(2 if scored else 1, 1, figsize=(10, 3.6 if scored else 2.8), sharex=True,
                             squeeze=False, gridspec_kw={"height_ratios": [3, 1] if scored else [1]})
    _value_panel(axes[0][0], seg, xs, span, notes)
    if scored:
        _score_panel(axes[1][0], xs, pts, fire_score)
    _time_axis(axes[-1][0])
    return _svg(fig)


def _nan(v: float | None) -> float:
    return float("nan") if v is None else v


def _value_panel(ax, seg: dict, xs: list, span, notes: list[dict]) -> None:
    pts = seg["points"]
    ax.axvspan(*span, color="#f5b7b1", alpha=0.35, lw=0, label="incident")
    if any(p[2] is not None for p in pts):
        banded = [p[2] is not None and p[3] is not None for p in pts]
        ax.fill_between(xs, [_nan(p[2]) for p in pts], [_nan(p[3]) for p in pts], where=banded,
                        color="#5dade2", alpha=0.2, lw=0, label="normal band (last hour → material change)")
        ax.plot(xs, [_nan(p[2]) for p in pts], "--", color="#2e86c1", lw=1, label="baseline")
    ax.plot(xs, [_nan(p[1]) for p in pts], color="#1c2833", lw=1.4, label="value")
    for i, (name, values) in enumerate(sorted(seg["alerts"].items())):
        thr = [(_minute(m), t) for m, _, t in values if t is not None]
        if thr:
            ax.step([x for x, _ in thr], [t for _, t in thr], where="post", ls=":", lw=1.6,
                    color=f"C{(i + 3) % 10}", label=f"{name} threshold")
    for note in notes:
        ax.axvline(when(note["at"]), color=SEVERITY_COLOR[note["severity"]], lw=0.8, alpha=0.7)
    ax.yaxis.set_major_formatter(_fmt(seg["signal"]))
    ax.legend(loc="upper left", fontsize=7, frameon=False, ncol=3)


def _score_panel(ax, xs: list, pts: list, fire_score: float | None) -> None:
    ax.fill_between(xs, [p[4] or 0.0 for p in pts], color="#8e44ad", alpha=0.5, lw=0, step="post")
    if fire_score is not None:
        ax.axhline(fire_score, color="#6c3483", ls="--", lw=0.8)
    ax.set_ylim(0, 1)
    ax.set_ylabel("anomaly\nscore", fontsize=8)


def busiest_svg(series: list[dict], spans: list[tuple[datetime, datetime, str]]) -> str:
    """Requests per minute and error rate of the busiest series, incidents shaded."""
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(11, 4.2), sharex=True, gridspec_kw={"height_ratios": [2, 1]})
    for start, stop, severity in spans:
        for ax in (top, bottom):
            ax.axvspan(start, stop, color=SEVERITY_COLOR[severity], alpha=0.12, lw=0)
    for s in series:
        xs = [_minute(b[0]) for b in s["bins"]]
        name = f"{s['dim']} {s['value']}".strip()
        top.plot(xs, [b[1] for b in s["bins"]], lw=1, label=name)
        bottom.plot(xs, [b[2] for b in s["bins"]], lw=1)
    top.set_ylabel("requests/min", fontsize=8)
    bottom.set_ylabel("error rate", fontsize=8)
    bottom.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.0%}"))
    top.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)
    _time_axis(bottom)
    return _svg(fig)
