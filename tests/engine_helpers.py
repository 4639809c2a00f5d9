"""Synthetic traffic for driving the engine with a manual clock (event time only)."""

from __future__ import annotations

from models.config import Config
from models.engine import Engine
from models.events import LOG, REQUEST, TRACE, Event

T0 = 1_789_372_800.0  # 2026-09-14T08:00:00Z


def request(ts: float, ok: bool = True, status: int = 200, provider: str = "openai", model: str = "gpt-4o",
            team: str = "support", key: str = "support-svc", latency: float = 1.0, cost: float = 0.001,
            cache_hit: bool | None = None, team_spend: float | None = None, budget: float | None = None) -> Event:
    return Event(ts=ts, kind=REQUEST, source="test", provider=provider, model=model, team=team, key=key,
                 ok=ok, status=status if not ok else 200, latency=latency, cost=cost, cache_hit=cache_hit,
                 tokens=100, team_spend=team_spend, budget=budget)


def log(ts: float, signal: str, app: str = "llm-gateway") -> Event:
    return Event(ts=ts, kind=LOG, source="test", app=app, signal=signal)


def trace(ts: float, lag: float = 4.0) -> Event:
    return Event(ts=ts, kind=TRACE, source="test", lag=lag)


def traffic(minutes: int, per_minute: int, start: float = T0, **kw) -> list[Event]:
    """``per_minute`` requests spread evenly over each minute; keyword args go to ``request``.

    ``fail_every=N`` makes every N-th request a failure with ``fail_status``.
    """
    fail_every = kw.pop("fail_every", 0)
    fail_status = kw.pop("fail_status", 503)
    out = []
    for m in range(minutes):
        for i in range(per_minute):
            ts = start + m * 60 + (i + 0.5) * 60 / per_minute
            failed = fail_every and (m * per_minute + i) % fail_every == 0
            out.append(request(ts, ok=not failed, status=fail_status if failed else 200, **kw))
    return out


def run(events: list[Event], config: Config | None = None, engine: Engine | None = None) -> list[dict]:
    engine = engine or Engine(config or Config())
    notes = []
    for ev in sorted(events, key=lambda e: e.ts):
        notes.extend(engine.process(ev))
    notes.extend(engine.finish())
    return notes


def fired(notes: list[dict]) -> set[str]:
    return {a["name"] for n in notes if n["status"] == "firing" for a in n["alerts"]}
