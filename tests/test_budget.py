"""Budget burn forecast: the straight line, the early warning and its guards."""

from __future__ import annotations

import pytest

from models import events as E
from models.budget import BudgetForecast, describe, forecast
from models.config import Config
from models.engine import Engine
from models.anomaly import attach_models

START = 1789365600.0  # 2026-09-14T06:00:00Z
DAY_END = 1789430400.0  # 2026-09-15T00:00:00Z


def _engine(budget: float = 100.0) -> Engine:
    eng = Engine(Config.from_dict({"budgets": {"teams": {"analytics": budget}}}))
    attach_models(eng)
    return eng


def _spend(eng: Engine, minutes: range, per_minute: float, team: str = "analytics", start: float = START) -> list[dict]:
    notes = []
    for m in minutes:
        for i in range(4):
            ev = E.Event(ts=start + m * 60 + i * 15, kind=E.REQUEST, source="litellm", team=team,
                         provider="openai", model="gpt-4o", key=f"{team}-svc0", cost=per_minute / 4, latency=1.0)
            notes.extend(eng.process(ev))
    return notes


def _forecast_alerts(notes: list[dict]) -> list[dict]:
    return [a for n in notes for a in n["alerts"] if a["name"] == "TeamBudgetForecast"]


def test_forecast_is_a_straight_line_over_the_last_hour():
    eng = _engine()
    _spend(eng, range(0, 120), per_minute=0.25)  # $15/h, $30 spent by 08:00
    now = START + 119 * 60
    f = forecast(eng, "analytics", now)
    assert f is not None and f.rate == pytest.approx(15.0, rel=0.02)
    assert f.runs_out_at == pytest.approx(now + (100 - f.spent) / f.rate * 3600, rel=1e-6)
    assert f.before_end_of_day and f.end_of_day == DAY_END
    assert "runs out at" in describe(f, now) and "$15.00/h" in describe(f, now)


def test_early_warning_fires_past_half_the_budget_when_the_line_crosses_today():
    eng = _engine()
    notes = _spend(eng, range(0, 260), per_minute=0.25)  # 50% spent at 09:20, line crosses ~12:40
    alerts = _forecast_alerts(notes)
    assert alerts and alerts[0]["category"] == "budget" and alerts[0]["detector"] == "rule"
    assert alerts[0]["severity"] == "warning" and alerts[0]["labels"] == {"team": "analytics"}
    first = min(n["at"] for n in notes if _forecast_alerts([n]))
    assert first >= "2026-09-14T09:20"  # never before half the budget is gone


def test_no_warning_when_the_budget_lasts_the_day():
    eng = _engine(budget=1000.0)
    assert not _forecast_alerts(_spend(eng, range(0, 300), per_minute=0.25))


def test_no_warning_for_a_team_younger_than_30_minutes():
    eng = _engine(budget=10.0)
    # a new team spends $6 in its first 20 minutes: 60% gone, line crosses in minutes, but no history
    notes = _spend(eng, range(0, 20), per_minute=0.3)
    notes += eng.advance(START + 25 * 60)
    assert not _forecast_alerts(notes)


def test_budget_burn_rule_alert_carries_the_forecast():
    eng = _engine(budget=40.0)
    notes = _spend(eng, range(0, 200), per_minute=0.25)  # 80% at 08:08
    burn = [a for n in notes for a in n["alerts"] if a["name"] == "TeamBudgetBurn"]
    assert burn and "spent today" in burn[-1]["explanation"]


def test_forecast_off_without_the_budget_rule():
    from dataclasses import replace

    eng = Engine(replace(Config(), rules=()))
    attach_models(eng)
    assert not [d for d in eng.extra_detectors if isinstance(d, BudgetForecast)]


@pytest.mark.parametrize("no_models", [False, True])
def test_forecast_runs_with_the_rules_off(no_models):
    # `--no-rules` switches the thresholds off, not the forecast: a team about to run out of
    # budget is still news. Only the forecast speaks for the rules' side there.
    from models.pipeline import build_engine

    eng = build_engine(Config.from_dict({"budgets": {"teams": {"analytics": 100.0}}}), no_models=no_models,
                       no_rules=True)
    notes = _spend(eng, range(0, 260), per_minute=0.25)  # as above: 50% at 09:20, the line crosses ~12:40
    alerts = _forecast_alerts(notes)
    assert alerts and alerts[0]["labels"] == {"team": "analytics"} and alerts[0]["category"] == "budget"
    assert not [a for n in notes for a in n["alerts"] if a["detector"] == "rule" and a["name"] != "TeamBudgetForecast"]


@pytest.mark.parametrize("doc", [{"rules": {"TeamBudgetBurn": {"enabled": False}}},
                                 {"anomaly": {"budget_forecast": False}}])
def test_forecast_off_in_the_configuration_stays_off_with_the_rules_off(doc):
    from models.pipeline import build_engine

    for no_rules in (False, True):
        eng = build_engine(Config.from_dict(doc), no_rules=no_rules)
        assert not [d for d in eng.extra_detectors if isinstance(d, BudgetForecast)]
    assert [d for d in build_engine(Config(), no_rules=True).extra_detectors if isinstance(d, BudgetForecast)]


def test_a_line_that_crosses_midnight_by_minutes_hours_ahead_waits():
    # $5.70/h on a $100 budget from 06:00: half spent at 14:46, the line crosses at 23:33. A team's
    # hourly rate moves by more than a fifth within a day, so the warning waits until the budget runs
    # out today even at a fifth less (about 22:00); at a steady burn it does run out, and it warns.
    eng = _engine()
    early = _spend(eng, range(0, 900), per_minute=0.095)  # until 21:00
    assert forecast(eng, "analytics", START + 900 * 60).before_end_of_day
    assert not _forecast_alerts(early)
    late = _forecast_alerts(_spend(eng, range(900, 1050), per_minute=0.095))
    assert late and "runs out at 23:" in late[0]["title"]


def test_a_forecast_pickled_before_the_margin_existed_runs_on():
    import pickle

    old = BudgetForecast()
    del old.__dict__["ease"]
    eng = _engine()
    eng.extra_detectors = [d if not isinstance(d, BudgetForecast) else pickle.loads(pickle.dumps(old))
                           for d in eng.extra_detectors]
    assert _forecast_alerts(_spend(eng, range(0, 260), per_minute=0.25))
