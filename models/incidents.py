"""Alerts grouped into incidents, and the notification log that decides what to send.

*Grouping.* A firing alert joins an open incident when their categories can share a
cause (a provider outage raises errors, latency and fallback cost; a crash loop
raises restarts, proxy errors and tracing gaps; a runaway agent raises cost and
budget) and their labels agree wherever both say something. Labels are compared
after enrichment (a model implies its provider, a key its team), so
``{model: gpt-4o}`` joins ``{provider: openai}`` but ``{team: a}`` never joins
``{team: b}``, and two scoped alerts that share no label (``{team: a}`` and
``{model: m}``) have no evidence of a common cause and stay apart. Alerts without
labels (gateway-wide) join any compatible incident. The new alert must be related to
an alert that is firing now, so an incident that lasts all day (a team over its daily
budget) does not absorb every later, unrelated problem by chaining categories, and
that alert must have started within ``join_window`` (1 h) of the new one, unless both
are about the same subject (one team's cost, then its budget). Where one side is
gateway-wide only time links the two: alerts of different kinds must have started within
``SHARED_ONSET`` (10 min) of each other, unless the later one is what the other brings late
(``_DOWNSTREAM``: a traffic surge's cost, whichever team's alert opened the incident); a scoped
alert joins an incident about another subject of the same kind (team a's runaway, then team
b's) only within ``SHARED_ONSET`` of that subject's onset: else the gateway's cost is team a's
doing, and team b pages on its own; and a critical gateway-wide alert of a new kind does not
join a warning about one subject.

*Notification log*, in the spirit of Alertmanager's ``nflog``: an incident is sent
when it opens, when its set of alerts or its severity changes (at most once per
``group_interval`` unless it escalates), every ``repeat_interval`` while it fires,
and once when it resolves (after ``resolve_wait`` without any firing alert). Each
decision carries its reason. An alert that fires again within ``reopen_grace`` of
its incident's resolution reopens the same incident instead of paging anew; a new kind of
trouble, or trouble about another subject, pages anew (``_back_again``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from models.notifications import render_notification

ROOT_KEYS = ("provider", "team", "app")  # a cause lives here ...
LEAF_KEYS = ("model", "key")  # ... and shows here
SEVERITY_RANK = {"info": 0, "warning": 1, "critical": 2}
SIBLING_WINDOW = 120.0  # seconds: two siblings starting this close together share a cause ...
SIBLING_CATEGORIES = frozenset({"traffic", "error_rate", "latency"})  # ... where one usually sits upstream
# A gateway-wide alert ties a new scoped alert to an incident about another subject (team a's
# runaway, then team b's) only if the two started this close together: one onset, one cause.
SHARED_ONSET = 600.0
# (clients, a provider). Not money: two teams' spend is two owners' business.

# Categories that can share one cause. Symmetric; every category is compatible with itself.
_RELATED = {
    ("error_rate", "latency"), ("error_rate", "cost"), ("error_rate", "availability"),
    ("error_rate", "rate_limit"), ("error_rate", "traffic"), ("error_rate", "cache"),
    ("latency", "availability"), ("latency", "traffic"), ("latency", "cost"),
    ("availability", "tracing"), ("availability", "traffic"), ("availability", "resource"),
    ("cost", "budget"), ("cost", "traffic"), ("cost", "cache"), ("budget", "traffic"),
    ("rate_limit", "traffic"), ("cache", "latency"), ("tracing", "resource"),
}


# Of those, (cause, effect) pairs where the effect shows late, in a slower window: a traffic
# surge is more spend, and the cost per hour and the day's budget follow within the hour.
_DOWNSTREAM = {("traffic", "cost"), ("traffic", "budget")}


def related(a: str, b: str) -> bool:
    return a == b or (a, b) in _RELATED or (b, a) in _RELATED


def _name_one(a: dict[str, str], b: dict[str, str]) -> bool:
    """Two alerts' (enriched) labels name one subject in common: the same team, model, app ..."""
    return any(a.get(k) == v for k, v in b.items())


@dataclass(slots=True)
class Alert:
    id: str  # rule name + series: stable for the life of the condition
    name: str
    category: str
    severity: str
    detector: str  # rule | anomaly
    labels: dict[str, str]
    value: float
    threshold: float | None
    started_at: float
    title: str  # "provider openai error rate 45.2%"
    baseline: float | None = None
    explanation: str = ""
    score: float | None = None
    firing: bool = True
    ended_at: float | None = None
    worst_value: float | None = None  # the reading furthest past the threshold while firing ...
    worst_title: str = ""  # ... and its title: a resolved message says how bad it got

    def note_reading(self, value: float, title: str) -> None:
        """Keep the worst reading: furthest from the threshold on the side the alert fired."""
        if self.worst_value is None:
            self.worst_value, self.worst_title = value, title
            return
        up = self.threshold is None or self.worst_value >= self.threshold
        if (value > self.worst_value) if up else (value < self.worst_value):
            self.worst_value, self.worst_title = value, title


@dataclass(slots=True)
class Incident:
    id: str
    started_at: float
    anchor: dict[str, str]  # enriched labels all its alerts share (at first: the one that opened it)
    alerts: dict[str, Alert] = field(default_factory=dict)
    seq: int = 0  # notifications sent so far
    last_sent_at: float | None = None
    last_signature: frozenset = frozenset()
    last_severity: str = "info"
    quiet_since: float | None = None  # when its last firing alert resolved
    resolved_at: float | None = None

    def firing(self) -> list[Alert]:
        return [a for a in self.alerts.values() if a.firing]

    def severity(self) -> str:
        live = self.firing() or list(self.alerts.values())
        return max((a.severity for a in live), key=SEVERITY_RANK.__getitem__)

    def signature(self) -> frozenset:
        return frozenset((a.id, a.severity) for a in self.firing())


@dataclass(slots=True, frozen=True)
class Timing:
    group_interval: float = 300.0
    repeat_interval: float = 4 * 3600.0
    resolve_wait: float = 300.0
    reopen_grace: float = 1200.0
    join_window: float = 3600.0  # a new alert joins only live alerts that started this recently


class IncidentManager:
    def __init__(self, timing: Timing | None = None) -> None:
        self.timing = timing or Timing()
        self.open: list[Incident] = []
        self.closed_recently: list[Incident] = []
        self.by_alert: dict[str, Incident] = {}
        self.implied: dict[tuple[str, str], dict[str, str]] = {}  # (dim, value) -> implied labels
        self.total = 0

    # --- what the engine tells us -------------------------------------------------
    def imply(self, dim: str, value: str, labels: dict[str, str]) -> None:
        """Record that ``dim=value`` implies ``labels`` (model → provider, key → team)."""
        self.implied[(dim, value)] = labels

    def fire(self, alert: Alert, now: float) -> None:
        inc = self.by_alert.get(alert.id)
        if inc not in self.open or self._back_after_a_while(inc, alert, now):
            inc = self._home_for(alert, now)
        alert.note_reading(alert.value, alert.title)
        inc.anchor = self._common(inc.anchor, self.enrich(alert.labels))
        inc.alerts[alert.id] = alert
        inc.quiet_since = None
        self.by_alert[alert.id] = inc

    def _back_after_a_while(self, inc: Incident, alert: Alert, now: float) -> bool:
        """The same condition back after ``reopen_grace`` is judged afresh, like any new alert."""
        before = inc.alerts.get(alert.id)
        return (before is not None and not before.firing and before.ended_at is not None
                and now - before.ended_at > self.timing.reopen_grace and not self._compatible(inc, alert))

    def update(self, fresh: Alert) -> None:
        """New readings of a firing alert: value, title, baseline, explanation (not its identity)."""
        inc = self.by_alert.get(fresh.id)
        if inc is not None and fresh.id in inc.alerts:
            a = inc.alerts[fresh.id]
            a.value, a.title, a.threshold = fresh.value, fresh.title, fresh.threshold
            if a.firing:
                a.note_reading(fresh.value, fresh.title)
            a.baseline = fresh.baseline if fresh.baseline is not None else a.baseline
            a.explanation = fresh.explanation or a.explanation
            a.score = fresh.score if fresh.score is not None else a.score

    def resolve(self, alert_id: str, now: float) -> None:
        inc = self.by_alert.get(alert_id)
        if inc is None or alert_id not in inc.alerts:
            return
        a = inc.alerts[alert_id]
        a.firing, a.ended_at = False, now
        if not inc.firing():
            inc.quiet_since = now

    # --- grouping -----------------------------------------------------------------
    def enrich(self, labels: dict[str, str]) -> dict[str, str]:
        out = dict(labels)
        for dim, value in labels.items():
            for k, v in self.implied.get((dim, value), {}).items():
                out.setdefault(k, v)
        return out

    @staticmethod
    def _agree(a: dict[str, str], b: dict[str, str]) -> bool:
        """Labels agree where both state them, judged on the most general keys they share:
        two models of one provider agree, two teams do not. A gateway-wide side (no labels)
        agrees with anything; two scoped sides that share no key have nothing in common and
        do not agree (a team's budget says nothing about a model's latency)."""
        if not a or not b:
            return True
        for keys in (ROOT_KEYS, LEAF_KEYS):
            shared = [k for k in keys if k in a and k in b]
            if shared:
                return all(a[k] == b[k] for k in shared)
        return False

    @staticmethod
    def _common(anchor: dict[str, str], labels: dict[str, str]) -> dict[str, str]:
        """What an incident's alerts all say: once the whole gateway's error rate joins one
        team's, the incident is no longer that team's, and the provider's alerts of the same
        outage belong to it too (they would otherwise open a second page in the same minute)."""
        return {k: v for k, v in anchor.items() if labels.get(k) == v}

    def _compatible(self, inc: Incident, alert: Alert) -> bool:
        # Record-only (info) alerts never absorb pages, nor join them.
        if (alert.severity == "info") != all(a.severity == "info" for a in inc.alerts.values()):
            return False
        labels = self.enrich(alert.labels)
        if self._sibling(inc, alert):
            return True
        if not self._agree(inc.anchor, labels):
            return False
        if self._bigger_trouble(inc, alert, labels):
            return False
        # Share a cause with an alert that is live now: an incident does not grow by chaining
        # (cost -> latency -> cache -> availability) through alerts that are long over.
        # It must also overlap in time: a team over its daily budget since the morning says
        # nothing about a gateway-wide surge in the evening.
        # Alerts about the same subject (the same team, provider, app ...) may be an hour
        # apart: a runaway agent's cost, then its budget.
        # "Live" includes alerts that ended within the reopen grace: a team's cost spike that just
        # settled (its baseline caught up) is still the cause of that team's budget forecast.
        live = self._live_at(inc, alert.started_at)
        horizon = alert.started_at - self.timing.join_window
        elsewhere = self._about_another(live, labels)
        for a in live:
            if not related(a.category, alert.category):
                continue
            other = self.enrich(a.labels)
            if not self._agree(other, labels):
                continue
            if not (labels and other) and not self._near_onset(a, alert, elsewhere):
                continue  # a gateway-wide side: only time ties them
            if a.started_at >= horizon or _name_one(other, labels):
                return True
        return False

    @staticmethod
    def _bigger_trouble(inc: Incident, alert: Alert, labels: dict[str, str]) -> bool:
        """A critical alert about the whole gateway, of a kind the incident does not have, while
        the incident is a warning about one subject (a model's latency, a team's cost): the gateway
        going silent or failing is news of its own, not an update in that thread."""
        if alert.severity != "critical" or labels or not inc.anchor or inc.severity() == "critical":
            return False
        return all(a.category != alert.category for a in inc.alerts.values())

    @staticmethod
    def _near_onset(live: Alert, alert: Alert, elsewhere: float | None) -> bool:
        """May ``live`` tie ``alert`` to its incident when one of them is gateway-wide? No label
        says they share a cause, only time does. When the incident is about another subject of the same
        kind (``elsewhere``: the onset of that subject's trouble), the new alert must have started
        within ``SHARED_ONSET`` of it: team b's runaway 40 minutes into team a's is team b's own,
        even though the gateway's cost jumped with it. Otherwise a trouble of the gateway-wide
        alert's own kind, or one it brings later (``_DOWNSTREAM``: a team's cost per hour doubling
        20 minutes into the gateway's traffic surge), may join it for the whole ``join_window``;
        another kind only within ``SHARED_ONSET`` of it: a model's latency half an hour into a
        gateway-wide cost alert is not that cost's doing, nor is the gateway's crash loop an hour
        into its slow spell, nor its 429s 17 minutes into a provider's outage. What a traffic
        alert brings late joins it first, whichever subject opened the incident: with the models,
        one team's cost anomaly often pages a surge before the gateway's ``TrafficSurge`` does."""
        if (live.category, alert.category) in _DOWNSTREAM:
            return True
        if elsewhere is not None:
            return alert.started_at - elsewhere <= SHARED_ONSET
        if live.category == alert.category:
            return True
        return abs(alert.started_at - live.started_at) <= SHARED_ONSET

    def _about_another(self, live: list[Alert], labels: dict[str, str]) -> float | None:
        """When the incident's live scoped alerts name another value of a dimension ``labels``
        names (team support, where the new alert is team analytics's), and none names the same
        one: the earliest start of those alerts (the other subject's onset). Else None."""
        if not labels:
            return None
        onset: float | None = None
        same = False
        for a in live:
            for k, v in self.enrich(a.labels).items():
                if k in labels:
                    same |= labels[k] == v
                    if labels[k] != v:
                        onset = a.started_at if onset is None else min(onset, a.started_at)
        return None if same else onset

    def _sibling(self, inc: Incident, alert: Alert) -> bool:
        """The same detector on two values of one dimension within ``SIBLING_WINDOW`` (two
        teams' traffic jumping in the same two minutes): one cause above both, not two pages."""
        if alert.category not in SIBLING_CATEGORIES:
            return False
        for a in inc.firing():
            if (a.name == alert.name and a.labels.keys() == alert.labels.keys() and a.labels != alert.labels
                    and abs(a.started_at - alert.started_at) <= SIBLING_WINDOW):
                return True
        return False

    def _home_for(self, alert: Alert, now: float) -> Incident:
        homes = [inc for inc in self.open if self._compatible(inc, alert)]
        if homes:  # the closest cause: same category live, then shared labels, then the oldest
            return max(homes, key=lambda inc: self._closeness(inc, alert))
        for inc in reversed(self.closed_recently):
            if (now - inc.resolved_at <= self.timing.reopen_grace and self._back_again(inc, alert)
                    and self._compatible(inc, alert)):
                return self._reopen(inc)
        digest = hashlib.sha1(f"{alert.id}@{alert.started_at:.0f}".encode()).hexdigest()[:12]
        inc = Incident(id=f"gw-{digest}", started_at=alert.started_at, anchor=self.enrich(alert.labels))
        self.open.append(inc)
        self.total += 1
        return inc

    def _reopen(self, inc: Incident) -> Incident:
        self.closed_recently.remove(inc)
        inc.resolved_at = None
        self.open.append(inc)
        return inc

    def _back_again(self, inc: Incident, alert: Alert) -> bool:
        """A resolved incident is reopened only by its own trouble coming back: an alert of the
        same or a related category about a subject it named (a label value in common: team a's
        cost, then team a's budget), or a gateway-wide alert of a kind it had (the gateway's
        cache collapse flapping; not the gateway's 429s after its error rate), or what a
        gateway-wide alert of it brings late (``_DOWNSTREAM``: a team's cost per hour doubled by
        the gateway's traffic surge, once its hour fills up). Any other alert is a new problem
        and pages on its own, even minutes after the resolved message: a crash loop after a
        model's slow spell, a team's runaway agent after a gateway-wide cache collapse (whose
        cost alert was gateway-wide, not that team's). An open incident is joined on looser
        evidence (``_compatible``): symptoms that fire together."""
        labels = self.enrich(alert.labels)
        for a in inc.alerts.values():
            if not related(a.category, alert.category):
                continue
            other = self.enrich(a.labels)
            if _name_one(other, labels):
                return True
            if a.category == alert.category and other == labels:  # gateway-wide: only the same kind ...
                return True
            if not other and (a.category, alert.category) in _DOWNSTREAM:  # ... or what it brings later
                return True
        return False

    def _live_at(self, inc: Incident, t: float) -> list[Alert]:
        grace = self.timing.reopen_grace
        live = [a for a in inc.alerts.values() if a.firing or (a.ended_at is not None and t - a.ended_at <= grace)]
        return live or list(inc.alerts.values())

    def _closeness(self, inc: Incident, alert: Alert) -> tuple[bool, int, float]:
        """How near ``inc`` is to ``alert`` among the incidents it may join: a gateway-wide
        traffic surge belongs with a team's traffic surge more than with a latency incident
        that is open at the same time."""
        labels = self.enrich(alert.labels).items()
        live = self._live_at(inc, alert.started_at)
        same = any(a.category == alert.category for a in live)
        shared = max((len(labels & self.enrich(a.labels).items()) for a in live), default=0)
        return same, shared, -inc.started_at

    # --- the notification log -----------------------------------------------------
    def flush(self, now: float) -> list[dict]:
        out = []
        for inc in list(self.open):
            reason = self._decide(inc, now)
            if reason is None:
                continue
            status = "resolved" if reason == "resolved" else "firing"
            inc.seq += 1
            out.append(render_notification(inc, status, now, reason))
            inc.last_sent_at, inc.last_signature = now, inc.signature()
            inc.last_severity = inc.severity()
            if status == "resolved":
                self._close(inc, now)
        self.closed_recently = [i for i in self.closed_recently if now - i.resolved_at <= self.timing.reopen_grace]
        return out

    def _decide(self, inc: Incident, now: float) -> str | None:
        t = self.timing
        if not inc.firing():
            if inc.seq == 0:  # opened and closed before ever being sent: drop silently
                self._close(inc, now, silent=True)
                return None
            return "resolved" if now - inc.quiet_since >= t.resolve_wait else None
        if inc.seq == 0 or inc.last_sent_at is None:
            return "new"
        if SEVERITY_RANK[inc.severity()] > SEVERITY_RANK[inc.last_severity]:
            return "escalated"
        if inc.signature() != inc.last_signature and now - inc.last_sent_at >= t.group_interval:
            if {a for a, _ in inc.signature()} - {a for a, _ in inc.last_signature}:
                return "alerts_changed"
        if now - inc.last_sent_at >= t.repeat_interval:
            return "repeat"
        return None

    def _close(self, inc: Incident, now: float, silent: bool = False) -> None:
        self.open.remove(inc)
        inc.resolved_at = now
        for alert_id in inc.alerts:
            if self.by_alert.get(alert_id) is inc:
                del self.by_alert[alert_id]
        if not silent:
            self.closed_recently.append(inc)
