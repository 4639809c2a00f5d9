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
