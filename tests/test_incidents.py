"""Grouping alerts into incidents: shared cause, live overlap, label evidence."""

from __future__ import annotations

from models.incidents import Alert, IncidentManager

T0 = 1_789_372_800.0


def alert(name: str, category: str, labels: dict, at: float, severity: str = "warning") -> Alert:
    return Alert(id=f"{name}:{sorted(labels.items())}", name=name, category=category, severity=severity,
                 detector="rule", labels=labels, value=1.0, threshold=0.5, started_at=at, title=name)


def test_a_day_long_budget_incident_does_not_absorb_later_problems():
    im = IncidentManager()
    im.imply("key", "support-bot", {"team": "support"})
    im.imply("model", "claude-sonnet", {"provider": "anthropic"})
    cost = alert("CostSpike", "cost", {"team": "support", "key": "support-bot"}, T0)
    budget = alert("TeamBudgetBurn", "budget", {"team": "support"}, T0 + 600)
    for a in (cost, budget):
        im.fire(a, a.started_at)
    im.resolve(cost.id, T0 + 3600)  # the spike is over; the team stays over budget all day
    home = im.by_alert[budget.id]

    latency = alert("LatencyP95Doubled", "latency", {"model": "claude-sonnet"}, T0 + 7 * 3600)
    crash = alert("GatewayCrashLoop", "availability", {"app": "llm-gateway"}, T0 + 10 * 3600, "critical")
    gateway_cost = alert("CostPerHourDoubled", "cost", {}, T0 + 1200)
    other_team = alert("TeamBudgetBurn", "budget", {"team": "analytics"}, T0 + 12 * 3600)
    for a in (latency, crash, gateway_cost, other_team):
        im.fire(a, a.started_at)

    assert im.by_alert[latency.id] is not home  # a model's latency has no label in common with a team
    assert im.by_alert[crash.id] is not home  # a crash loop is not caused by a budget
    assert im.by_alert[crash.id] is not im.by_alert[latency.id]
    assert im.by_alert[gateway_cost.id] is home  # gateway-wide cost, soon after: may be the team's overspend
    assert im.by_alert[other_team.id] is not home
    assert len(im.open) == 4


def test_related_alerts_of_one_cause_share_an_incident():
    im = IncidentManager()
    im.imply("model", "gpt-4o", {"provider": "openai"})
    provider = alert("ProviderErrorRateCritical", "error_rate", {"provider": "openai"}, T0, "critical")
    model = alert("ModelErrorRateHigh", "error_rate", {"model": "gpt-4o"}, T0 + 60)
    gateway = alert("GatewayHigh5xxRate", "error_rate", {}, T0 + 120, "critical")
    latency = alert("LatencyP95Doubled", "latency", {"provider": "openai"}, T0 + 180)
    for a in (provider, model, gateway, latency):
        im.fire(a, a.started_at)
    assert len(im.open) == 1 and len(im.open[0].alerts) == 4


def test_an_incident_does_not_grow_by_chaining_through_alerts_that_are_over():
    im = IncidentManager()
    cost = alert("CostPerHourDoubled", "cost", {}, T0)
    latency = alert("LatencyP95High", "latency", {}, T0 + 300)  # cost <-> latency: related
    for a in (cost, latency):
        im.fire(a, a.started_at)
    assert im.by_alert[latency.id] is im.by_alert[cost.id]
    im.resolve(latency.id, T0 + 1800)
    # availability relates to latency (over) but not to cost (the live alert): a new incident
    crash = alert("GatewayCrashLoop", "availability", {}, T0 + 3600, "critical")
    im.fire(crash, crash.started_at)
    assert im.by_alert[crash.id] is not im.by_alert[cost.id]
    # a crash with latency live joins it at one onset (within 10 min), not an hour later: two
    # gateway-wide alerts of different kinds have only time in common
    for at, incidents in ((T0 + 600, 1), (T0 + 3600, 2)):
        im2 = IncidentManager()
        for a in (cost, latency, crash):
            fresh = alert(a.name, a.category, a.labels, at if a is crash else a.started_at, a.severity)
            im2.fire(fresh, fresh.started_at)
        assert len(im2.open) == incidents


def test_alerts_far_apart_in_time_are_separate_incidents():
    im = IncidentManager()
    budget = alert("TeamBudgetBurn", "budget", {"team": "support"}, T0)
    im.fire(budget, T0)
    surge_soon = alert("TrafficSurge", "traffic", {}, T0 + 600)
    im.fire(surge_soon, surge_soon.started_at)
    assert im.by_alert[surge_soon.id] is im.by_alert[budget.id]
    im.resolve(surge_soon.id, T0 + 1800)
    later = alert("RateLimitStorm", "rate_limit", {}, T0 + 3 * 3600)  # related to traffic (over) only
    evening = alert("TrafficSurge2", "traffic", {}, T0 + 10 * 3600)  # budget still firing, 10 h on
    for a in (later, evening):
        im.fire(a, a.started_at)
    assert im.by_alert[evening.id] is not im.by_alert[budget.id]
    assert im.by_alert[later.id] is not im.by_alert[budget.id]


def test_a_condition_back_hours_later_is_judged_afresh():
    im = IncidentManager()
    budget = alert("TeamBudgetBurn", "budget", {"team": "support"}, T0)
    surge = alert("TrafficSurge", "traffic", {}, T0 + 300)
    for a in (budget, surge):
        im.fire(a, a.started_at)
    home = im.by_alert[surge.id]
    im.resolve(surge.id, T0 + 1800)
    flap = alert("TrafficSurge", "traffic", {}, T0 + 1900)  # back within reopen_grace: same incident
    im.fire(flap, flap.started_at)
    assert im.by_alert[flap.id] is home
    im.resolve(flap.id, T0 + 2400)
    again = alert("TrafficSurge", "traffic", {}, T0 + 5 * 3600)  # the budget still fires; a new surge
    im.fire(again, again.started_at)
    assert im.by_alert[again.id] is not home


def test_the_resolved_message_says_how_bad_it_got():
    im = IncidentManager()
    crash = alert("GatewayCrashLoop", "availability", {"app": "llm-gateway"}, T0, "critical")
    crash.value, crash.threshold, crash.title = 4.0, 2.0, "app llm-gateway crashed 4x in 10 min"
    im.fire(crash, T0)
    for n, at in ((30.0, 60), (12.0, 120), (0.0, 600)):  # worse, better, calm
        fresh = alert("GatewayCrashLoop", "availability", {"app": "llm-gateway"}, T0, "critical")
        fresh.value, fresh.threshold, fresh.title = n, 2.0, f"app llm-gateway crashed {n:.0f}x in 10 min"
        im.update(fresh)
    assert im.flush(T0 + 60)[0]["reason"] == "new"
    im.resolve(crash.id, T0 + 600)
    resolved = im.flush(T0 + 1200)[0]
    assert resolved["status"] == "resolved"
    assert resolved["title"] == "RESOLVED: app llm-gateway crashed 30x in 10 min at worst"
    assert resolved["alerts"][0]["value"] == 0.0 and resolved["alerts"][0]["worst"] == 30.0
    assert "crashed 30x in 10 min at worst, now app llm-gateway crashed 0x" in resolved["summary"]

    low = IncidentManager()  # a "<" alert: lower is worse
    cache = alert("CacheHitRateLow", "cache", {}, T0)
    cache.value, cache.threshold = 0.2, 0.25
    low.fire(cache, T0)
    for v in (0.05, 0.15, 0.4):
        fresh = alert("CacheHitRateLow", "cache", {}, T0)
        fresh.value, fresh.threshold, fresh.title = v, 0.25, f"cache hit rate {v:.0%}"
        low.update(fresh)
    assert cache.worst_value == 0.05 and cache.worst_title == "cache hit rate 5%"


def test_a_gateway_wide_alert_joins_the_incident_of_its_own_kind():
    """Two incidents open at once (a provider's latency, a team's traffic surge): the gateway's
    traffic surge belongs with the team's surge, not with whichever incident opened first."""
    im = IncidentManager()
    latency = alert("LatencyMedianDoubled", "latency", {"provider": "openai"}, T0)
    team_surge = alert("TrafficAnomaly", "traffic", {"team": "prod_customer"}, T0 + 60)
    gateway_surge = alert("TrafficSurge", "traffic", {}, T0 + 300)
    for a in (latency, team_surge, gateway_surge):
        im.fire(a, a.started_at)
    assert im.by_alert[latency.id] is not im.by_alert[team_surge.id]  # nothing in common
    assert im.by_alert[gateway_surge.id] is im.by_alert[team_surge.id]


def test_a_budget_forecast_joins_the_cost_incident_whose_spike_just_settled():
    """A runaway agent: the team's cost spike resolves once its baseline catches up, and minutes
    later the same team's budget forecast fires. Same cause, same incident."""
    im = IncidentManager()
    spike = alert("CostSpike", "cost", {"team": "support"}, T0)
    gateway = alert("CostAnomaly", "cost", {}, T0)
    for a in (spike, gateway):
        im.fire(a, a.started_at)
    im.resolve(spike.id, T0 + 3900)
    forecast = alert("TeamBudgetForecast", "budget", {"team": "support"}, T0 + 4200)
    im.fire(forecast, forecast.started_at)
    assert im.by_alert[forecast.id] is im.by_alert[gateway.id]
    # ... but not once the team's spike is long over
    later = IncidentManager()
    for a in (alert("CostSpike", "cost", {"team": "support"}, T0), alert("CostAnomaly", "cost", {}, T0)):
        later.fire(a, a.started_at)
    later.resolve(spike.id, T0 + 3900)
    late_forecast = alert("TeamBudgetForecast", "budget", {"team": "support"}, T0 + 3900 + 2 * 3600)
    later.fire(late_forecast, late_forecast.started_at)
    assert len(later.open) == 2


def test_the_title_names_the_most_specific_alert():
    im = IncidentManager()
    gateway = alert("CostSpike", "cost", {}, T0)
    team = alert("CostSpike", "cost", {"team": "support"}, T0 + 60)
    gateway.title, team.title = "gateway cost $66.89/h", "team support cost $63.81/h"
    for a in (gateway, team):
        im.fire(a, a.started_at)
    (note,) = im.flush(T0 + 120)
    assert note["title"] == team.title and note["labels"] == {"team": "support"}
    critical = alert("GatewayHigh5xxRate", "error_rate", {}, T0 + 120, "critical")
    im.fire(critical, critical.started_at)
    assert im.flush(T0 + 121)[0]["title"] == critical.title  # severity first


def test_a_team_incident_joined_by_the_whole_gateway_takes_the_providers_alerts_too():
    # An outage seen first on one team's error rate, then gateway-wide: the provider's alert
    # of the same outage a minute later has no label in common with the team, but the
    # incident is no longer the team's.
    im = IncidentManager()
    im.imply("model", "gpt-4o-mini", {"provider": "openai"})
    team = alert("ErrorRateAnomaly", "error_rate", {"team": "prod_customer"}, T0)
    gateway = alert("GatewayHigh5xxRate", "error_rate", {}, T0 + 60, "critical")
    provider = alert("ErrorRateRollbackTrigger", "error_rate", {"provider": "openai"}, T0 + 60)
    model = alert("ModelErrorRateHigh", "error_rate", {"model": "gpt-4o-mini"}, T0 + 120)
    for a in (team, gateway, provider, model):
        im.fire(a, a.started_at)
    assert len(im.open) == 1
    assert im.open[0].anchor == {}


def test_an_incident_keeps_what_all_its_alerts_share():
    im = IncidentManager()
    im.imply("key", "support-bot", {"team": "support"})
    cost = alert("CostSpike", "cost", {"team": "support"}, T0)
    key = alert("CostSpike", "cost", {"key": "support-bot"}, T0 + 60)
    other_team = alert("CostSpike", "cost", {"team": "analytics"}, T0 + 120)
    for a in (cost, key, other_team):
        im.fire(a, a.started_at)
    assert im.by_alert[key.id] is im.by_alert[cost.id]
    assert im.by_alert[cost.id].anchor == {"team": "support"}
    assert im.by_alert[other_team.id] is not im.by_alert[cost.id]


def test_siblings_that_start_together_share_an_incident():
    """Two teams' traffic jumping in the same minute is one surge above both: one page, about
    the gateway. Two teams' cost spikes an hour apart are two stories."""
    im = IncidentManager()
    a = alert("TrafficAnomaly", "traffic", {"team": "prod_customer"}, T0)
    b = alert("TrafficAnomaly", "traffic", {"team": "analytics"}, T0 + 60)
    later = alert("TrafficAnomaly", "traffic", {"team": "support"}, T0 + 3600)
    for x in (a, b, later):
        im.fire(x, x.started_at)
    assert im.by_alert[a.id] is im.by_alert[b.id] and im.by_alert[a.id].anchor == {}
    assert im.by_alert[later.id] is not im.by_alert[a.id]
    other = alert("CostSpike", "cost", {"team": "support"}, T0 + 30)  # another detector: not a sibling
    im.fire(other, other.started_at)
    assert im.by_alert[other.id] is not im.by_alert[a.id]


def test_a_second_teams_runaway_pages_even_while_the_gateway_cost_of_the_first_is_firing():
    """Team support's runaway pushes the whole gateway's cost up; 55 min later team analytics's
    cost spikes too. The gateway-wide alert is support's doing: analytics pages on its own. A
    gateway-wide alert that starts with a team's (one onset) still joins it, and so does the
    same team's later alert."""
    im = IncidentManager()
    im.imply("key", "analytics-svc0", {"team": "analytics"})
    support = alert("CostSpike", "cost", {"team": "support"}, T0)
    gateway = alert("CostPerHourDoubled", "cost", {}, T0 + 240)
    analytics = alert("CostSpike", "cost", {"team": "analytics"}, T0 + 3300)
    analytics_key = alert("CostSpike", "cost", {"key": "analytics-svc0"}, T0 + 3300)
    support_budget = alert("TeamBudgetForecast", "budget", {"team": "support"}, T0 + 3400)
    for a in (support, gateway, analytics, analytics_key, support_budget):
        im.fire(a, a.started_at)
    home = im.by_alert[support.id]
    assert im.by_alert[gateway.id] is home  # one onset: the gateway's cost is support's
    assert im.by_alert[analytics.id] is not home  # a new page for another team
    assert im.by_alert[analytics_key.id] is im.by_alert[analytics.id]
    assert im.by_alert[support_budget.id] is home  # the same subject joins however late


def test_a_team_alert_still_joins_a_gateway_wide_outage_of_another_dimension():
    """A provider outage open for 20 min: a team's error rate rising later is part of it (a team
    and a provider are different dimensions, and the gateway-wide alert links them)."""
    im = IncidentManager()
    provider = alert("ProviderErrorRateCritical", "error_rate", {"provider": "openai"}, T0, "critical")
    gateway = alert("GatewayHigh5xxRate", "error_rate", {}, T0 + 60, "critical")
    team = alert("TeamErrorRateHigh", "error_rate", {"team": "support"}, T0 + 1200)
    for a in (provider, gateway, team):
        im.fire(a, a.started_at)
    assert len(im.open) == 1


def _sent_then_resolved(im: IncidentManager, alerts: tuple[Alert, ...], at: float) -> None:
    """The alerts fire and are sent; every one ends at ``at``, the resolved messages go out
    ``resolve_wait`` later."""
    for a in alerts:
        im.fire(a, a.started_at)
    im.flush(max(a.started_at for a in alerts))
    for inc in list(im.open):
        for a in inc.firing():
            im.resolve(a.id, at)
    assert {n["status"] for n in im.flush(at + im.timing.resolve_wait)} == {"resolved"}
    assert not im.open


def test_a_new_kind_of_trouble_after_the_resolved_message_pages_anew():
    """A model's slow spell (with the gateway's p95) is resolved; 18 min later the gateway
    crash-loops. Latency and availability may share a cause, but nothing says this one does:
    reopening the resolved incident would hide the crash loop in an old thread. The slow spell
    itself coming back within the grace reopens its incident."""
    im = IncidentManager()
    im.imply("model", "claude-sonnet", {"provider": "anthropic"})
    slow = alert("LatencyP95Doubled", "latency", {"model": "claude-sonnet"}, T0)
    p95 = alert("LatencyP95High", "latency", {}, T0 + 600)
    _sent_then_resolved(im, (slow, p95), T0 + 1800)
    home = im.closed_recently[0]
    crash_at = T0 + 1800 + 300 + 1080  # 18 min after the resolved message
    crash = alert("GatewayCrashLoop", "availability", {"app": "llm-gateway"}, crash_at, "critical")
    im.fire(crash, crash.started_at)
    assert im.by_alert[crash.id] is not home and len(im.open) == 1
    back = alert("LatencyMedianDoubled", "latency", {"provider": "anthropic"}, crash.started_at + 60)
    im.fire(back, back.started_at)
    assert im.by_alert[back.id] is home  # the provider's latency again: the same incident, reopened
    assert home.resolved_at is None and len(im.open) == 2


def test_a_teams_cost_after_a_resolved_cache_collapse_pages_anew():
    """The cache collapse raised the gateway's cost (a gateway-wide cost alert in its incident).
    A team's runaway agent 14 min after the collapse resolved is about a subject that incident
    never named: a new page, not a reopened cache incident."""
    im = IncidentManager()
    im.imply("key", "analytics-agent", {"team": "analytics"})
    collapse = alert("CacheHitRateCollapsed", "cache", {}, T0)
    cost = alert("CostAnomaly", "cost", {}, T0 + 240)
    _sent_then_resolved(im, (collapse, cost), T0 + 1200)
    home = im.closed_recently[0]
    runaway = alert("CostSpike", "cost", {"key": "analytics-agent"}, T0 + 1200 + 300 + 840)
    im.fire(runaway, runaway.started_at)
    assert im.by_alert[runaway.id] is not home and home not in im.open
    # the collapse itself back within the grace, with nothing else open: its incident reopens
    flapping = IncidentManager()
    again = tuple(alert(a.name, a.category, a.labels, a.started_at) for a in (collapse, cost))
    _sent_then_resolved(flapping, again, T0 + 1200)
    flap = alert("CacheHitRateCollapsed", "cache", {}, T0 + 1200 + 300 + 840)
    flapping.fire(flap, flap.started_at)
    assert flapping.by_alert[flap.id].alerts.keys() == {collapse.id, cost.id}


def test_a_gateway_wide_alert_ties_other_subjects_only_at_one_onset():
    """Team analytics's runaway opens an incident; 38 min later team support's budget breach
    lifts the gateway's cost too, and that gateway-wide alert joins analytics's incident (it
    may be analytics's doing). Support's own cost alert of the same minute is 38 min from
    analytics's onset: it pages on its own. Half an hour after the gateway-wide cost alert, a
    model's latency is not tied to it either: only time links them, and not closely."""
    im = IncidentManager()
    im.imply("model", "claude-sonnet", {"provider": "anthropic"})
    analytics = alert("CostSpike", "cost", {"team": "analytics"}, T0)
    gateway = alert("CostSpike", "cost", {}, T0 + 2280)
    support = alert("CostSpike", "cost", {"team": "support"}, T0 + 2280)
    for a in (analytics, gateway, support):
        im.fire(a, a.started_at)
    home = im.by_alert[analytics.id]
    assert im.by_alert[gateway.id] is home
    assert im.by_alert[support.id] is not home
    latency = alert("LatencyP95Doubled", "latency", {"model": "claude-sonnet"}, gateway.started_at + 1800)
    im.fire(latency, latency.started_at)
    assert im.by_alert[latency.id] not in (home, im.by_alert[support.id])
    # at one onset, the gateway-wide alert does tie them (one cause above both)
    im2 = IncidentManager()
    at_once = (alert("CostSpike", "cost", {"team": "analytics"}, T0),
               alert("CostSpike", "cost", {}, T0 + 120),
               alert("CostSpike", "cost", {"team": "support"}, T0 + 240))
    for a in at_once:
        im2.fire(a, a.started_at)
    assert len(im2.open) == 1


def test_the_gateways_429s_after_its_resolved_error_rate_page_anew():
    """Gateway-wide both: the error rate of an outage is resolved, 15 min later the gateway's
    429 share jumps. Related kinds, but the only subject in common is the whole gateway: a new
    page. The error rate itself back reopens the outage's incident."""
    im = IncidentManager()
    errors = alert("ErrorRateAnomaly", "error_rate", {}, T0)
    _sent_then_resolved(im, (errors,), T0 + 1200)
    home = im.closed_recently[0]
    storm = alert("RateLimitAnomaly", "rate_limit", {}, T0 + 1200 + 300 + 900)
    im.fire(storm, storm.started_at)
    assert im.by_alert[storm.id] is not home
    again = IncidentManager()
    _sent_then_resolved(again, (alert("ErrorRateAnomaly", "error_rate", {}, T0),), T0 + 1200)
    back = alert("GatewayErrorRateHigh", "error_rate", {}, storm.started_at)
    again.fire(back, back.started_at)
    assert again.by_alert[back.id].alerts.keys() == {errors.id, back.id}


def test_a_teams_cost_per_hour_follows_the_gateways_traffic_surge():
    """The gateway's traffic surge doubles every team's calls; a team's cost per hour (an hour's
    window) crosses its threshold 20 minutes in, or once the surge is resolved. It is the
    surge's doing: it joins the surge's incident, open or just resolved. A model's latency as
    late has no such tie (see the test above for a gateway-wide cost alert)."""
    im = IncidentManager()
    surge = alert("TrafficSurge", "traffic", {}, T0)
    cost = alert("CostPerHourDoubled", "cost", {"team": "prod_ceo"}, T0 + 1200)
    for a in (surge, cost):
        im.fire(a, a.started_at)
    assert im.by_alert[cost.id] is im.by_alert[surge.id]
    later = IncidentManager()
    _sent_then_resolved(later, (alert("TrafficSurge", "traffic", {}, T0),), T0 + 1200)
    home = later.closed_recently[0]
    late_cost = alert("CostPerHourDoubled", "cost", {"team": "prod_ceo"}, T0 + 1200 + 300 + 300)
    latency = alert("LatencyP95Doubled", "latency", {"model": "claude-sonnet"}, late_cost.started_at)
    for a in (late_cost, latency):
        later.fire(a, a.started_at)
    assert later.by_alert[late_cost.id] is home and later.by_alert[latency.id] is not home


def test_a_teams_cost_follows_the_surge_also_when_another_teams_cost_paged_it_first():
    """With the models, one team's cost anomaly pages a minute into the gateway's surge, before
    the gateway's own TrafficSurge (5 + 5 minutes) joins it. Another team's cost per hour doubled
    12 minutes later is still the surge's doing, not another team's runaway beside the first
    (which pages on its own when it started over 10 minutes after it: no gateway traffic alert)."""
    im = IncidentManager()
    first = alert("CostAnomaly", "cost", {"team": "prod_customer"}, T0)
    surge = alert("TrafficSurge", "traffic", {}, T0)
    cost = alert("CostPerHourDoubled", "cost", {"team": "analytics"}, T0 + 720)
    for a in (first, surge, cost):
        im.fire(a, a.started_at)
    assert im.by_alert[cost.id] is im.by_alert[first.id] is im.by_alert[surge.id]
    runaways = IncidentManager()
    a_cost = alert("CostSpike", "cost", {"team": "prod_customer"}, T0)
    gateway_cost = alert("CostSpike", "cost", {}, T0 + 60)
    b_cost = alert("CostSpike", "cost", {"team": "analytics"}, T0 + 720)
    for a in (a_cost, gateway_cost, b_cost):
        runaways.fire(a, a.started_at)
    assert runaways.by_alert[b_cost.id] is not runaways.by_alert[a_cost.id]


def test_the_whole_gateway_going_down_during_a_models_slow_spell_pages_on_its_own():
    """llama-70b has been slow for 8 minutes (a warning about one model) when the gateway stops
    answering altogether (critical, gateway-wide, another kind): a new page, not an update in
    the model's thread. A critical outage opened by a provider still takes the gateway's
    critical alerts of its own kind."""
    im = IncidentManager()
    im.imply("model", "llama-70b", {"provider": "together"})
    slow = alert("LatencyP95Doubled", "latency", {"model": "llama-70b"}, T0)
    silent = alert("GatewayTrafficStopped", "availability", {}, T0 + 480, "critical")
    for a in (slow, silent):
        im.fire(a, a.started_at)
    assert im.by_alert[silent.id] is not im.by_alert[slow.id]
    outage = IncidentManager()
    provider = alert("ProviderErrorRateCritical", "error_rate", {"provider": "openai"}, T0, "critical")
    gateway = alert("GatewayHigh5xxRate", "error_rate", {}, T0 + 60, "critical")
    for a in (provider, gateway):
        outage.fire(a, a.started_at)
    assert len(outage.open) == 1
