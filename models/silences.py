"""Mute decisions: silences and inhibition rules (the Alertmanager ``mute`` stage).

Pure: no I/O and no wall clock; ``now`` is always an argument (the notification's
event time in replay, so a replay mutes the same way every time). Every decision is a
record with its reason, so that history can say *why* a notification was not sent.

A notification is matched on its *label set*: the incident's ``labels`` plus its
``category``, ``severity`` and ``status`` (so a silence may say ``category=cost``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Iterable, Mapping

__all__ = [
    "Matcher", "Silence", "InhibitRule", "Send", "Suppressed", "Decision", "ActiveIncidents",
    "DEFAULT_INHIBIT_RULES", "parse_matcher", "label_set", "decide_mute", "mute", "parse_time",
]

_OPS = ("=~", "!~", "!=", "=")  # longest first, so "=~" is not read as "="
_MATCHER = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*(.*?)\s*$")


def parse_time(value: str | datetime) -> datetime:
    """ISO-8601 (``Z`` allowed) to an aware datetime; naive input is read as UTC."""
    if isinstance(value, datetime):
        ts = value
    else:
        ts = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return ts if ts.tzinfo else ts.replace(tzinfo=timezone.utc)


@dataclass(frozen=True, slots=True)
class Matcher:
    """One label matcher, Alertmanager semantics: a missing label matches as ``""``;
    regexes are anchored (``provider=~open.*`` does not match ``myopenai``)."""

    name: str
    op: str
    value: str

    def __post_init__(self) -> None:
        if self.op not in _OPS:
            raise ValueError(f"unknown matcher operator {self.op!r}")
        if self.op in ("=~", "!~"):
            try:
                re.compile(self.value)
            except re.error as exc:
                raise ValueError(f"bad regex in matcher {self}: {exc}") from None

    def matches(self, labels: Mapping[str, str]) -> bool:
        actual = str(labels.get(self.name, ""))
        if self.op == "=":
            return actual == self.value
        if self.op == "!=":
            return actual != self.value
        hit = re.fullmatch(self.value, actual) is not None
        return hit if self.op == "=~" else not hit

    def __str__(self) -> str:
        return f"{self.name}{self.op}{self.value}"


def parse_matcher(text: str) -> Matcher:
    """``'provider=openai'``, ``'team!=ops'``, ``'model=~gpt-4.*'``; quotes around the value
    are stripped."""
    found = _MATCHER.match(text)
    if not found:
        raise ValueError(f"not a label matcher: {text!r} (expected name=value, !=, =~ or !~)")
    name, op, value = found.groups()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        value = value[1:-1]
    return Matcher(name, op, value)


def _all_match(matchers: Iterable[Matcher], labels: Mapping[str, str]) -> bool:
    return all(m.matches(labels) for m in matchers)


@dataclass(frozen=True, slots=True)
class Silence:
    id: str
    matchers: tuple[Matcher, ...]
    starts_at: datetime
    ends_at: datetime
    created_by: str = ""
    comment: str = ""

    def active(self, now: datetime) -> bool:
        return self.starts_at <= now < self.ends_at

    def mutes(self, labels: Mapping[str, str], now: datetime) -> bool:
        return self.active(now) and _all_match(self.matchers, labels)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "matchers": [str(m) for m in self.matchers],
                "starts_at": self.starts_at.isoformat(), "ends_at": self.ends_at.isoformat(),
                "created_by": self.created_by, "comment": self.comment}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Silence:
        return cls(id=str(raw["id"]), matchers=tuple(parse_matcher(m) for m in raw["matchers"]),
                   starts_at=parse_time(raw["starts_at"]), ends_at=parse_time(raw["ends_at"]),
                   created_by=str(raw.get("created_by", "")), comment=str(raw.get("comment", "")))


@dataclass(frozen=True, slots=True)
class InhibitRule:
    """While a firing incident matches ``source``, mute notifications matching any one of
    the ``target`` matcher lists whose ``equal`` labels agree with the source's. With
    ``missing_ok`` a target that lacks an ``equal`` label also counts as agreeing (a team
    error-rate alert without a provider label is still muted by a provider outage)."""

    name: str
    source: tuple[Matcher, ...]
    target: tuple[tuple[Matcher, ...], ...]
    equal: tuple[str, ...] = ()
    missing_ok: bool = False

    def inhibits(self, source: Mapping[str, str], target: Mapping[str, str]) -> bool:
        if not _all_match(self.source, source):
            return False
        if not any(_all_match(option, target) for option in self.target):
            return False
        return all(self._agree(name, source, target) for name in self.equal)

    def _agree(self, name: str, source: Mapping[str, str], target: Mapping[str, str]) -> bool:
        if name not in target or target[name] == "":
            return self.missing_ok
        return target[name] == source.get(name)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> InhibitRule:
        target = raw["target"]
        options = target if target and isinstance(target[0], list) else [target]
        return cls(name=str(raw.get("name", "inhibit")),
                   source=tuple(parse_matcher(m) for m in raw["source"]),
                   target=tuple(tuple(parse_matcher(m) for m in opt) for opt in options),
                   equal=tuple(raw.get("equal", ())), missing_ok=bool(raw.get("missing_ok", False)))


def _rule(name: str, source: list[str], target: list[list[str]], equal: tuple[str, ...]) -> InhibitRule:
    return InhibitRule.from_dict({"name": name, "source": source, "target": target,
                                  "equal": list(equal), "missing_ok": True})


# A provider outage explains every team's and model's error rate on that provider: one
# page, not one per team. A crash-looping gateway explains slow calls and missing traces.
DEFAULT_INHIBIT_RULES: tuple[InhibitRule, ...] = (
    _rule("provider_outage", ["category=~error_rate|availability", "provider=~.+"],
          [["category=error_rate", "team=~.+"], ["category=error_rate", "model=~.+"]], ("provider",)),
    _rule("gateway_crash_loop", ["category=availability", "app=~.+"],
          [["category=~latency|tracing"]], ("app",)),
)


def label_set(notification: Mapping[str, Any]) -> dict[str, str]:
    """The labels a notification is matched on (incident labels + category/severity/status)."""
    labels = {str(k): str(v) for k, v in (notification.get("labels") or {}).items()}
    for key in ("category", "severity", "status"):
        if notification.get(key) is not None:
            labels.setdefault(key, str(notification[key]))
    return labels


@dataclass(frozen=True, slots=True)
class Send:
    reason: str = "not muted"


@dataclass(frozen=True, slots=True)
class Suppressed:
    reason: str  # silenced | inhibited | unnotified_resolve | duplicate
    by: str = ""  # silence id, inhibit rule and source incident, ...
    detail: str = ""


Decision = Send | Suppressed


@dataclass(slots=True)
class ActiveIncidents:
    """Firing incidents (the possible inhibition sources) and which incidents were notified.

    Driven in notification order by ``observe``; ``snapshot``/``restore`` make it durable."""

    firing: dict[str, dict[str, Any]] = field(default_factory=dict)  # incident -> labels, started_at
    notified: set[str] = field(default_factory=set)

    def observe(self, notification: Mapping[str, Any]) -> None:
        incident = str(notification.get("incident"))
        if notification.get("status") == "resolved":
            self.firing.pop(incident, None)
            return
        started = notification.get("started_at") or notification.get("at")
        self.firing[incident] = {"labels": label_set(notification), "started_at": started}

    def forget(self, incident: str) -> None:
        self.firing.pop(incident, None)
        self.notified.discard(incident)

    def snapshot(self) -> dict[str, Any]:
        return {"firing": self.firing, "notified": sorted(self.notified)}

    @classmethod
    def restore(cls, raw: Mapping[str, Any] | None) -> ActiveIncidents:
        raw = raw or {}
        return cls(firing=dict(raw.get("firing", {})), notified=set(raw.get("notified", [])))


def _silenced(labels: Mapping[str, str], now: datetime, silences: Iterable[Silence]) -> Decision | None:
    for silence in silences:
        if silence.mutes(labels, now):
            return Suppressed("silenced", by=silence.id, detail=silence.comment)
    return None


def _inhibited(incident: str, labels: Mapping[str, str], now: datetime, rules: Iterable[InhibitRule],
               active: ActiveIncidents) -> Decision | None:
    for source_id, source in active.firing.items():
        if source_id == incident or parse_time(source["started_at"]) > now:
            continue
        for rule in rules:
            if rule.inhibits(source["labels"], labels):
                return Suppressed("inhibited", by=f"{rule.name}:{source_id}")
    return None


def decide_mute(notification: Mapping[str, Any], now: datetime, silences: Iterable[Silence],
                rules: Iterable[InhibitRule], active: ActiveIncidents) -> Decision:
    """Silences first, then inhibition by *other* firing incidents. A ``resolved`` is never
    inhibited (the channel would keep showing a stale "firing"), but a resolved for an
    incident nobody was told about is not news."""
    labels = label_set(notification)
    incident = str(notification.get("incident"))
    resolved = notification.get("status") == "resolved"
    decision = _silenced(labels, now, silences)
    if decision is None and not resolved:
        decision = _inhibited(incident, labels, now, rules, active)
    if decision is None and resolved and incident not in active.notified:
        decision = Suppressed("unnotified_resolve", detail="no firing notification of it was sent")
    return decision or Send()


def mute(notification: Mapping[str, Any], silences: Iterable[Silence], rules: Iterable[InhibitRule],
         active: ActiveIncidents) -> Decision:
    """The mute stage for the next notification in order: decide at its own event time, then
    record it in ``active`` (a possible inhibition source; notified or not; forgotten once
    resolved). The delivery pipeline and the replay report both go through here."""
    now = parse_time(notification.get("at") or notification.get("started_at"))
    decision = decide_mute(notification, now, silences, rules, active)
    active.observe(notification)
    incident = str(notification.get("incident"))
    if isinstance(decision, Send):
        active.notified.add(incident)
    if notification.get("status") == "resolved":
        active.forget(incident)
    return decision
