"""The detection engine that replay, tune and the worker all run.

One constructor, so the service and ``gatewatch replay`` send the same notifications for
the same input: the rules, the budget burn forecast (also with ``--no-rules``: it is a
forecast, not a threshold) and, unless switched off, the online anomaly models (which
explain rule alerts too; without them a lighter explainer does).
"""

from __future__ import annotations

from dataclasses import replace

from models.config import Config
from models.engine import Engine


def build_engine(config: Config | None = None, no_models: bool = False, no_rules: bool = False) -> Engine:
    from models.anomaly import attach_models
    from models.budget import attach_budget_forecast
    from models.explain import attach_rule_explanations

    config = config or Config()
    configured = config.rules  # the budget forecast's switch: TeamBudgetBurn on in the configuration
    if no_rules:
        config = replace(config, rules=())
    engine = Engine(config)
    # The budget forecast is a forecast, not a threshold rule: it runs with --no-rules too (a team
    # about to run out of budget is news with the rules off), so it is given the configured rules.
    if not no_models and config.anomaly.get("enabled", True):
        attach_models(engine, configured)  # attaches the budget forecast too
    else:
        attach_rule_explanations(engine)  # rule alerts still say expected vs actual, and who
        attach_budget_forecast(engine, configured)
    return engine
