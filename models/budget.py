"""Budget burn forecast: when does a team's daily budget run out at its current burn rate?

The burn rate is the team's cost over its last hour (or over its whole history when
it is younger than an hour); spend today is ``Engine.spend_today`` (the larger of our
own sum and the gateway's reported figure); the budget is the configured one, else the
one the gateway reports (CONTRACT §4). The forecast is a straight line: LLM spend is
bursty, and a line over the last hour is what a person would compute by hand, so the
sentence in the notification can be checked with a calculator.

``TeamBudgetForecast`` (category ``budget``, severity ``warning``, detector ``rule``) is
an early warning: it fires when the line crosses the budget before the end of the UTC
day, even at a burn rate a fifth lower than the last hour's (``ease``), *and* more than half
of the budget is already spent, for ``for_`` minutes in a row. The margin is for the long
horizon: a line that crosses midnight by twenty minutes, nine hours ahead, is a coin toss (a
team's hourly rate moves by more than a fifth within a day).
A team with less than ``min_history`` minutes of history never triggers it: one
expensive first call would otherwise forecast a budget gone by lunch. It resolves,
with a margin (hysteresis), when the forecast moves past the end of the day again.
The same forecast explains the runbook's ``TeamBudgetBurn`` alert.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from models.incidents import Alert
from models.windows import STEP

__all__ = ["BudgetForecast", "Forecast", "attach_budget_forecast", "forecast", "forecast_text"]

DAY = 86400
HOUR_SPEC = (60, 0)  # the last hour's sum, registered on team series


@dataclass(slots=True, frozen=True)
class Forecast:
    team: str
    budget: float
    spent: float
    rate: float  # USD per hour, over the last hour
    history: int  # minutes since the team's first call
    runs_out_at: float  # epoch seconds (``now`` when already spent; inf when not burning)
    end_of_day: float

    @property
    def before_end_of_day(self) -> bool:
        return self.runs_out_at < self.end_of_day


def forecast(engine, team: str, now: float) -> Forecast | None:
    budget = engine.config.budgets.get(team) or engine.reported_budget.get(team)
    w = engine.series.get(("team", team))
    if not budget or w is None:
        return None
    minute = int(now // STEP) - 1
    history = w.age_minutes(minute)
    hour = w.sums.get(HOUR_SPEC)
    rate = max(0.0, hour.cost) * 60 / max(1, min(60, history)) if hour is not None else 0.0
    day = int((now - 1) // DAY)
    spent = engine.spend_today(day, team)
    left = budget - spent
    runs_out = now if left <= 0 else (now + left / rate * 3600 if rate > 0 else math.inf)
    return Forecast(team, budget, spent, rate, history, runs_out, (day + 1) * DAY)


def _clock(ts: float) -> str:
    return time.strftime("%H:%M UTC", time.gmtime(ts))


def _duration(seconds: float) -> str:
    m = int(seconds // 60)
    return f"{m // 60} h {m % 60:02d} min" if m >= 60 else f"{m} min"


def describe(f: Forecast, now: float) -> str:
    spent = f"${f.spent:,.2f} of ${f.budget:,.2f} spent today ({f.spent / f.budget:.0%})"
    if f.runs_out_at <= now:
        return f"{spent}: budget exhausted; burning ${f.rate:,.2f}/h over the last hour"
    if math.isinf(f.runs_out_at):
        return f"{spent}; no spend in the last hour"
    when = f"runs out at {_clock(f.runs_out_at)} (in {_duration(f.runs_out_at - now)})"
    if not f.before_end_of_day:
        when = "lasts the day"
    return f"{spent}; at ${f.rate:,.2f}/h (last hour) the budget {when}"


def forecast_text(engine, team: str, now: float) -> str:
    f = forecast(engine, team, now)
    return "" if f is None else describe(f, now)


class BudgetForecast:
    """The engine's ``extra_detectors`` object raising ``TeamBudgetForecast``."""

    ease = 0.2  # a class attribute too, so that a worker snapshot pickled before it existed runs on

    def __init__(self, for_: int = 5, min_history: int = 30, spent_share: float = 0.5,
                 clear_margin: float = 1800.0, clear_for: int = 5, ease: float = 0.2) -> None:
        self.for_, self.min_history, self.spent_share, self.ease = for_, min_history, spent_share, ease
        self.clear_margin, self.clear_for = clear_margin, clear_for
        self.pending: dict[str, int] = {}  # team -> minutes the condition has held
        self.firing: dict[str, int] = {}  # team -> minutes the clear condition has held

    def on_minute(self, engine, minute: int) -> None:
        now = (minute + 1) * STEP
        for dim, team in [k for k in engine.series if k[0] == "team"]:
            f = forecast(engine, team, now)
            if f is not None:
                self._step(engine, f, now)

    def _step(self, engine, f: Forecast, now: float) -> None:
        if f.team in self.firing:
            cleared = f.runs_out_at >= f.end_of_day + self.clear_margin or f.spent < f.budget * self.spent_share * 0.9
            self.firing[f.team] = self.firing[f.team] + 1 if cleared else 0
            if self.firing[f.team] >= self.clear_for:
                del self.firing[f.team]
                engine.incidents.resolve(_alert_id(f.team), now)
            else:
                engine.incidents.update(_alert(f, now, now))
            return
        if f.history >= self.min_history and self._out_today(f, now) and f.spent > f.budget * self.spent_share:
            self.pending[f.team] = self.pending.get(f.team, 0) + 1
            if self.pending[f.team] >= self.for_:
                del self.pending[f.team]
                self.firing[f.team] = 0
                engine.incidents.fire(_alert(f, now, now - self.for_ * STEP), now)
        else:
            self.pending.pop(f.team, None)

    def _out_today(self, f: Forecast, now: float) -> bool:
        """The budget runs out before midnight even if the burn eases by ``ease``."""
        return f.spent + f.rate * (1 - self.ease) * (f.end_of_day - now) / 3600 >= f.budget


def _alert_id(team: str) -> str:
    return f"TeamBudgetForecast|team={team}"


def _alert(f: Forecast, now: float, started: float) -> Alert:
    title = f"team {f.team} budget runs out at {_clock(max(now, f.runs_out_at))} at ${f.rate:,.2f}/h"
    return Alert(
        id=_alert_id(f.team), name="TeamBudgetForecast", category="budget", severity="warning",
        detector="rule", labels={"team": f.team}, value=f.spent, threshold=f.budget, started_at=started,
        title=title, baseline=None, explanation=describe(f, now),
    )


def attach_budget_forecast(engine, rules=None) -> BudgetForecast | None:
    """Attach the forecast when the budget rule is on in ``rules`` (default: the engine's).

    Switching ``TeamBudgetBurn`` off in the configuration switches the forecast off too;
    ``--no-rules`` does not: the forecast is a model, not a threshold, and ``build_engine``
    passes it the configured rules.
    """
    if not any(r.metric == "spend_today_ratio" for r in (engine.config.rules if rules is None else rules)):
        return None
    team = set(engine.specs.get("team", ((1, 0),))) | {HOUR_SPEC}
    engine.specs["team"] = tuple(sorted(team))
    if hasattr(engine, "retention"):
        engine.retention = max(engine.retention, sum(HOUR_SPEC))
    det = BudgetForecast()
    engine.extra_detectors.append(det)
    return det
