"""The anomaly models on a synthetic gateway: planted incidents page, thin series do not."""

from __future__ import annotations

from models.anomaly import AnomalyModels
from models.signals import SIGNALS
from tests import synth_gateway as S


def _models(eng) -> AnomalyModels:
    return next(d for d in eng.extra_detectors if isinstance(d, AnomalyModels))


def test_cost_spike_pages_with_explanation_naming_the_team():
    eng = S.engine()
    notes = S.run(eng, range(0, 150), plants=[S.Plant(120, 150, team="analytics", cost_x=6.0)])
    cost = [a for a in S.anomaly_alerts(notes) if a["category"] == "cost"]
    assert cost, "a 6x cost spike of one team must page"
    first = cost[0]
    assert first["severity"] == "warning" and 0.0 <= first["score"] <= 1.0
    assert first["value"] > first["baseline"] and first["threshold"] is not None
    assert "team analytics" in first["explanation"] or first["labels"] == {"team": "analytics"}
    assert "$" in first["explanation"] and "expected" in first["explanation"]
    onset = min(n["at"] for n in notes if any(a["category"] == "cost" for a in n["alerts"]))
    assert onset <= "2026-09-14T08:06:00"  # planted at 08:00; paged within minutes


def test_error_burst_pages_once_and_names_the_provider():
    eng = S.engine()
    notes = S.run(eng, range(0, 140), plants=[S.Plant(120, 140, provider="openai", fail=True)])
    errs = [a for a in S.anomaly_alerts(notes) if a["category"] == "error_rate"]
    assert errs
    assert any("openai" in a["explanation"] or a["labels"].get("provider") == "openai" for a in errs)
    firing = {n["incident"] for n in notes if n["status"] == "firing" and n["severity"] != "info"}
    assert len(firing) == 1  # gateway, provider, model and team alerts share one incident


def test_anomaly_alerts_join_the_rule_incident():
    eng = S.engine(rules=True)
    notes = S.run(eng, range(0, 140), plants=[S.Plant(120, 140, provider="openai", fail=True)])
    incidents = {n["incident"] for n in notes if n["status"] == "firing" and n["severity"] != "info"}
    detectors = {a["detector"] for n in notes for a in n["alerts"]}
    assert detectors == {"rule", "anomaly"} and len(incidents) == 1


def test_rule_alerts_get_explanations():
    eng = S.engine(rules=True)
    notes = S.run(eng, range(0, 140), plants=[S.Plant(120, 140, provider="openai", fail=True)])
    rule_alerts = [a for n in notes for a in n["alerts"] if a["detector"] == "rule" and a["category"] == "error_rate"]
    assert rule_alerts and all(a.get("explanation") for a in rule_alerts)


def test_thin_series_never_pages():
    thin = S.Team("tiny", 1, "mistral", "mistral-small", 0.05, error=0.0)
    notes = S.run(S.engine(), range(0, 200), teams=S.TEAMS + (thin,),
                  plants=[S.Plant(130, 200, team="tiny", fail=True, cost_x=20.0)])
    assert not [a for a in S.anomaly_alerts(notes) if "tiny" in str(a["labels"]) or "mistral" in str(a["labels"])]


def test_quiet_run_does_not_page():
    notes = S.run(S.engine(), range(0, 240), seed=5)
    assert not [n for n in notes if n["severity"] != "info"]


def test_idle_series_expire_and_memory_stays_bounded():
    eng = S.engine(expire_hours=1.0)
    gone = S.Team("one_off", 30, "openai", "gpt-4o", 0.01)
    S.run(eng, range(0, 90), teams=S.TEAMS + (gone,))
    models = _models(eng)
    assert ("team", "one_off", "cost_per_hour") in models.tracks
    S.run(eng, range(90, 240))
    assert not [k for k in models.tracks if "one_off" in k[1]]
    assert ("team", "one_off") not in models.last_seen
    names = {s.name for s in SIGNALS}
    assert {k[2] for k in models.tracks} <= names


def test_options_come_from_the_config():
    from models.config import Config

    eng = S.engine(config=Config.from_dict({"anomaly": {"fire_score": 0.7, "warmup": 90}}))
    m = _models(eng)
    assert (m.fire_score, m.warmup) == (0.7, 90)


def test_cost_explanation_names_the_team_and_model_pair():
    """A team on two models: the explanation names the pair that spends, not only the team."""
    teams = S.TEAMS + (S.Team("analytics", 15, "openai", "gpt-4o-mini", 0.002),)
    eng = S.engine()
    S.run(eng, range(0, 120), teams=teams)
    notes = S.run(eng, range(120, 150), teams=teams,
                  plants=[S.Plant(120, 150, team="analytics", provider="anthropic", cost_x=6.0)])
    texts = [a["explanation"] for a in S.anomaly_alerts(notes) if a["category"] == "cost"]
    assert texts, "a 6x cost spike of one team on one model must page"
    assert any("team analytics on claude-sonnet" in t for t in texts), texts


def test_rule_alerts_are_explained_with_the_models_off():
    from models.pipeline import build_engine
    from models.config import Config

    eng = build_engine(Config(), no_models=True)
    assert not [d for d in eng.extra_detectors if isinstance(d, AnomalyModels)]
    notes = S.run(eng, range(0, 140), plants=[S.Plant(120, 140, provider="openai", fail=True)])
    rule_alerts = [a for n in notes for a in n["alerts"] if a["detector"] == "rule" and a["category"] == "error_rate"]
    assert rule_alerts and all("expected" in a.get("explanation", "") for a in rule_alerts)
    assert any("openai" in a["explanation"] or a["labels"].get("provider") == "openai" for a in rule_alerts)


def test_a_slowdown_whose_window_ramps_for_minutes_still_pages():
    # A model 1.8x slower: the 5-minute window's median climbs for about 3 minutes, so the
    # detector's surprise (at the foot of the ramp) and the material change (at its top) are
    # minutes apart; an onset stays hot for one window so that they meet.
    paged = 0
    for seed in range(4):
        notes = S.run(S.engine(), range(0, 160), seed=seed, plants=[S.Plant(130, 160, team="support", latency_x=1.8)])
        paged += any(a["category"] == "latency" for a in S.anomaly_alerts(notes))
    assert paged >= 3


def test_a_part_waits_while_the_whole_gateway_is_about_to_page():
    # A team's error rate does not open its own page while the gateway's error rate is
    # already a material change waiting out its confirmation minutes: the gateway's alert
    # comes a minute later and covers it (a team and a model share no label to join on).
    eng = S.engine()
    models = _models(eng)
    S.run(eng, range(0, 90))
    sig = next(s for s in SIGNALS if s.name == "error_rate")
    gateway = models.tracks[("gateway", "", "error_rate")]
    assert not models._covered(eng, ("team", "support"), sig, set())
    gateway.pending = 1
    assert models._covered(eng, ("team", "support"), sig, set())
    assert models._covered(eng, ("team", "support"), sig, {("gateway", "", "error_rate")})
