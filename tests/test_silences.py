"""Mute decisions: matchers, silences, inhibition (table-driven; pure, no clock)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from models.silences import (DEFAULT_INHIBIT_RULES, ActiveIncidents, InhibitRule, Send, Silence, Suppressed,
                             decide_mute, label_set, parse_matcher)
from tests.slack_server import notification

T0 = datetime(2026, 9, 14, 9, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize("text, labels, expected", [
    ("provider=openai", {"provider": "openai"}, True),
    ("provider=openai", {"provider": "groq"}, False),
    ("provider!=openai", {"provider": "groq"}, True),
    ("provider!=openai", {}, True),
    ("provider=", {}, True),  # Alertmanager: a missing label is the empty string
    ("model=~gpt-4.*", {"model": "gpt-4o"}, True),
    ("model=~gpt-4.*", {"model": "my-gpt-4o"}, False),  # anchored
    ("model!~gpt-4.*", {"model": "claude"}, True),
    ("team=~\"prod_.*\"", {"team": "prod_customer"}, True),
    ("team = support", {"team": "support"}, True),
])
def test_matcher(text: str, labels: dict[str, str], expected: bool) -> None:
    assert parse_matcher(text).matches(labels) is expected


@pytest.mark.parametrize("bad", ["provider", "=x", "1a=b", "model=~(unclosed"])
def test_bad_matchers_are_rejected(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_matcher(bad)


def test_label_set_includes_category_severity_status() -> None:
    assert label_set(notification()) == {"provider": "openai", "category": "error_rate",
                                         "severity": "critical", "status": "firing"}


def _silence(*matchers: str, start: int = 0, minutes: int = 60) -> Silence:
    return Silence("s1", tuple(parse_matcher(m) for m in matchers), T0 + timedelta(minutes=start),
                   T0 + timedelta(minutes=start + minutes), comment="maintenance")


@pytest.mark.parametrize("silence, at_minute, expected", [
    (_silence("provider=openai"), 5, Suppressed("silenced", by="s1", detail="maintenance")),
    (_silence("provider=openai"), 60, Send()),  # ends_at is exclusive
    (_silence("provider=openai", start=10), 5, Send()),  # not started yet
    (_silence("provider=openai", "category=cost"), 5, Send()),  # every matcher must match
    (_silence("severity=~critical|warning"), 5, Suppressed("silenced", by="s1", detail="maintenance")),
])
def test_silences(silence: Silence, at_minute: int, expected: object) -> None:
    now = T0 + timedelta(minutes=at_minute)
    decision = decide_mute(notification(), now, [silence], (), ActiveIncidents())
    assert decision == expected


def test_silence_round_trips_through_dict() -> None:
    silence = _silence("provider=openai", "team!~ops.*")
    assert Silence.from_dict(silence.to_dict()) == silence


def _active(*sources: dict) -> ActiveIncidents:
    active = ActiveIncidents()
    for n in sources:
        active.observe(n)
        active.notified.add(n["incident"])
    return active


OUTAGE = notification("outage", labels={"provider": "openai"}, category="availability")
CRASH = notification("crash", labels={"app": "litellm-gw"}, category="availability")


def _team_err(labels: dict[str, str], category: str = "error_rate") -> dict:
    return notification("team-inc", labels=labels, category=category)


@pytest.mark.parametrize("source, target, reason", [
    (OUTAGE, _team_err({"team": "prod", "provider": "openai"}), "inhibited"),
    (OUTAGE, _team_err({"team": "prod"}), "inhibited"),  # no provider label: still explained
    (OUTAGE, _team_err({"model": "gpt-4o", "provider": "openai"}), "inhibited"),
    (OUTAGE, _team_err({"team": "prod", "provider": "anthropic"}), None),  # other provider
    (OUTAGE, _team_err({"provider": "openai"}), None),  # provider-wide: not a per-team alert
    (OUTAGE, _team_err({"team": "prod"}, category="cost"), None),
    (CRASH, _team_err({"model": "gpt-4o"}, category="latency"), "inhibited"),
    (CRASH, _team_err({}, category="tracing"), "inhibited"),
    (CRASH, _team_err({"app": "other-app"}, category="latency"), None),
    (CRASH, _team_err({"team": "prod"}), None),
])
def test_default_inhibition(source: dict, target: dict, reason: str | None) -> None:
    decision = decide_mute(target, T0 + timedelta(minutes=10), [], DEFAULT_INHIBIT_RULES, _active(source))
    assert (decision.reason if isinstance(decision, Suppressed) else None) == reason


def test_inhibition_names_rule_and_source() -> None:
    decision = decide_mute(_team_err({"team": "prod"}), T0 + timedelta(minutes=10), [],
                           DEFAULT_INHIBIT_RULES, _active(OUTAGE))
    assert decision == Suppressed("inhibited", by="provider_outage:outage")


def test_inhibition_only_while_source_fires() -> None:
    active = _active(OUTAGE)
    early = decide_mute(_team_err({"team": "prod"}), T0, [], DEFAULT_INHIBIT_RULES, active)
    assert early == Send()  # before the outage started
    active.observe({**OUTAGE, "status": "resolved"})
    later = decide_mute(_team_err({"team": "prod"}), T0 + timedelta(hours=1), [],
                        DEFAULT_INHIBIT_RULES, active)
    assert later == Send()


def test_resolved_is_never_inhibited_but_unnotified_resolve_is_dropped() -> None:
    active = _active(OUTAGE, _team_err({"team": "prod"}))
    resolved = {**_team_err({"team": "prod"}), "status": "resolved"}
    assert decide_mute(resolved, T0 + timedelta(minutes=10), [], DEFAULT_INHIBIT_RULES, active) == Send()
    active.notified.discard("team-inc")
    decision = decide_mute(resolved, T0 + timedelta(minutes=10), [], DEFAULT_INHIBIT_RULES, active)
    assert isinstance(decision, Suppressed) and decision.reason == "unnotified_resolve"


def test_custom_rule_from_config_and_snapshot_round_trip() -> None:
    rule = InhibitRule.from_dict({"name": "crit_over_warn", "source": ["severity=critical"],
                                  "target": ["severity=warning"], "equal": ["provider"]})
    warn = notification("w", severity="warning")
    active = _active(notification("c"))
    restored = ActiveIncidents.restore(active.snapshot())
    assert decide_mute(warn, T0 + timedelta(minutes=10), [], [rule], restored).reason == "inhibited"
