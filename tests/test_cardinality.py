"""Cardinality floods: a new key alias on every request must not grow memory without bound.

Stated bound (README "Bad days"): with the default cap of 2,000 series per dimension, a million
distinct keys grow the engine's state (its pickled snapshot, what the worker stores) by less than
25 MB and the process by less than 150 MB, and the real incidents in the same stream still page.
"""

from __future__ import annotations

import heapq
import json
import pickle
from collections.abc import Iterator

import pytest

from connectors.files import iter_file
from models.cardinality import OVERFLOW, Cardinality, forget_idle
from models.config import Config
from models.engine import Engine
from models.events import REQUEST, Event
from models.pipeline import build_engine
from models.scoring import score


def test_values_over_the_cap_go_to_the_overflow_bucket() -> None:
    cap = Cardinality(cap=3, idle_minutes=60)
    leaves = [cap.leaf_for(("openai", "gpt-4o", "t", f"k{i}"), 0) for i in range(5)]
    assert [leaf[3] for leaf in leaves] == ["k0", "k1", "k2", OVERFLOW, OVERFLOW]
    assert [leaf[:3] for leaf in leaves] == [("openai", "gpt-4o", "t")] * 5  # other dimensions untouched
    assert cap.overflowed == [0, 0, 0, 2] and cap.live(3) == 3
    assert cap.leaf_for(("openai", "gpt-4o", "t", "k1"), 1)[3] == "k1"  # a known value stays itself


def test_idle_values_are_forgotten_and_free_their_place() -> None:
    cap = Cardinality(cap=2, idle_minutes=60)
    for key in ("a", "b"):
        cap.leaf_for(("", "", "", key), 0)
    assert cap.leaf_for(("", "", "", "c"), 10)[3] == OVERFLOW
    cap.tick(30)
    cap.leaf_for(("", "", "", "a"), 35)  # "a" stays in use across the first swap
    cap.tick(60)
    assert cap.leaf_for(("", "", "", "c"), 70)[3] == "c"  # "b" idle for over an hour: forgotten
    assert cap.leaf_for(("", "", "", "a"), 71)[3] == "a"
    assert cap.leaf_for(("", "", "", "b"), 72)[3] == OVERFLOW  # "b" is new again, and the cap is full


def test_idle_series_are_dropped_from_the_engine() -> None:
    engine = Engine()
    t0 = 1_787_311_380.0
    for i in range(50):
        engine.process(Event(t0 + i, REQUEST, "litellm", "openai", "gpt-4o", "t", f"key-{i}"))
    engine.process(Event(t0 + 120, REQUEST, "litellm", "openai", "gpt-4o", "t", "key-0"))  # closes the minute
    keys = [k for k in engine.series if k[0] == "key"]
    assert len(keys) == 50
    for minute in range(1, 8 * 60):  # a steady trickle on key-0 for eight hours
        engine.process(Event(t0 + 60 * minute, REQUEST, "litellm", "openai", "gpt-4o", "t", "key-0"))
    assert [k for k in engine.series if k[0] == "key"] == [("key", "key-0")]
    assert forget_idle(engine, engine.closed_minute) == 0


def _flood(t0: float, t1: float, n: int) -> Iterator[tuple[float, Event]]:
    """``n`` requests, each with a key alias never seen before, spread over ``[t0, t1)``."""
    step = (t1 - t0) / max(n, 1)
    for i in range(n):
        ts = t0 + i * step
        yield ts, Event(ts, REQUEST, "litellm", "groq", "llama-3", "scraper", f"scraper-{i:07d}", "", "", "", True,
                        200, "", 0.4, None, 50, 0.00001, None, "acompletion")


def _run(paths: list[str], flood: int) -> tuple[list[dict], Engine, int]:
    sim = [(ev.ts, ev) for p in paths for item in iter_file(p) if isinstance(item, list) for ev in item]
    sim.sort(key=lambda pair: pair[0])
    t0, t1 = sim[0][0], sim[-1][0]
    engine = build_engine(Config())
    rss0 = _rss()
    notes: list[dict] = []
    for _, ev in heapq.merge(sim, _flood(t0, t1, flood), key=lambda pair: pair[0]):
        notes.extend(engine.process(ev))
    notes.extend(engine.finish())
    return notes, engine, _rss() - rss0


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


@pytest.fixture(scope="module")
def sim(tmp_path_factory) -> tuple[list[str], dict]:
    from gatewatch.simulate import simulate

    out = tmp_path_factory.mktemp("flood")
    simulate(out, hours=3, rps=2, incidents="provider_outage,rate_limit_storm", workers=1, seed=7)
    labels = json.loads((out / "labels.json").read_text())
    return [str(out / f"{name}.ndjson.gz") for name in ("litellm", "fly", "langfuse")], labels


@pytest.mark.slow
def test_a_million_distinct_keys_stay_bounded_and_the_incidents_still_page(sim) -> None:
    paths, labels = sim
    calm_notes, calm, _ = _run(paths, 0)
    notes, engine, rss_growth = _run(paths, 1_000_000)
    state = len(pickle.dumps(engine)) - len(pickle.dumps(calm))
    assert state < 25 * 2**20, f"engine state grew by {state / 2**20:.1f} MB"
    assert rss_growth < 150 * 2**20, f"process grew by {rss_growth / 2**20:.1f} MB"
    keys = [k for k in engine.series if k[0] == "key"]
    print(f"1M distinct keys: engine state +{state / 2**20:.1f} MB (pickled), process +{rss_growth / 2**20:.0f} MB "
          f"RSS, {len(keys)} key series, {engine.acc.cardinality.overflowed[3]:,} requests under {OVERFLOW}")
    assert len(keys) <= 2001 and ("key", OVERFLOW) in engine.series
    flooded = score(labels, notes)
    assert flooded.detected == flooded.incidents, flooded.rows
    assert score(labels, calm_notes).detected == flooded.incidents
    floods = [a for n in notes if n["status"] == "firing" for a in n["alerts"] if a["name"] == "CardinalityFlood"]
    assert floods and {a["labels"]["dimension"] for a in floods} == {"key"} and floods[0]["category"] == "resource"
    flood_incidents = {n["incident"] for n in notes if any(a["name"] == "CardinalityFlood" for a in n["alerts"])}
    assert len(flood_incidents) == 1
    assert not any(a["name"] == "CardinalityFlood" for n in calm_notes for a in n["alerts"])


def test_the_worker_path_caps_across_ingest_batches() -> None:
    """The worker's ingest folds each raw batch into its own ``Partials``: the cap must hold in the
    detect engine across batches, side facts included."""
    from models.partials import Partials

    engine = Engine()
    t0 = 1_787_311_380.0
    for i in range(6000):
        batch = Partials()
        batch.add(Event(t0 + i * 0.05, REQUEST, "litellm", "openai", "gpt-4o", f"team-{i}", f"key-{i}", cost=0.01))
        engine.advance(t0 + i * 0.05)
        engine.apply_partials(batch.drain())
    engine.finish()
    assert len([k for k in engine.series if k[0] == "key"]) == 2001
    assert len([k for k in engine.series if k[0] == "team"]) == 2001
    assert len(engine.incidents.implied) <= 2001 + 1
    assert len(engine.spend) <= 2001 + 1 and round(sum(engine.spend.values()), 6) == 60.0
