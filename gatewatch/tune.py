"""Tuning from history: replay the same input under many settings and score each.

A *setting* is the base YAML configuration (CONTRACT §4) with some keys changed, named
by their dotted path in that YAML: ``rules.GatewayHigh5xxRate.threshold``,
``rules.RateLimitStorm.for``, ``anomaly.fire_score``, ``incidents.group_interval``,
``lateness_seconds``. ``--sweep NAME=LO:HI:STEP`` (or ``NAME=a,b,c``) gives each name its
values; the settings are their Cartesian product.

Each worker process parses the input once (merged by event time, duplicates dropped: the
stream ``gatewatch replay`` feeds its engine) and keeps the events in memory, up to
``cache_events`` (beyond that it re-reads the files for each setting); every setting it is
given then costs only the detection. Notifications
are scored in the worker with ``models.scoring`` (the shared scorer's rule).
"""

from __future__ import annotations

import copy
import itertools
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field

import yaml

from gatewatch.replay import NotificationTap, RejectLog, Summary, merged_events, replay
from models.config import Config
from models.rules import DEFAULT_RULES, Rule
from models.scoring import Score, score

__all__ = ["Sweep", "parse_sweep", "settings", "apply_setting", "Result", "run_settings", "best_yaml"]

MAX_SETTINGS = 500
# Parsed events a worker keeps in memory (~0.9 KB each: ~450 MB, a day of a busy gateway).
CACHE_EVENTS = 500_000
_TOP_KEYS = {"anomaly", "incidents", "lateness_seconds", "budgets"}


@dataclass(frozen=True)
class Sweep:
    name: str  # dotted path in the YAML
    values: tuple


def _number(text: str) -> int | float:
    v = float(text)
    return int(v) if v.is_integer() and "." not in text and "e" not in text.lower() else v


def parse_sweep(text: str) -> Sweep:
    """``NAME=LO:HI:STEP`` (inclusive) or ``NAME=a,b,c``. Raises ``ValueError`` with the reason."""
    name, sep, spec = text.partition("=")
    name = name.strip()
    if not sep or not name or not spec:
        raise ValueError(f"--sweep {text!r}: expected NAME=LO:HI:STEP or NAME=a,b,c")
    _check_name(name)
    try:
        if ":" in spec:
            lo, hi, step = (_number(p) for p in spec.split(":"))
            if step <= 0 or hi < lo:
                raise ValueError("needs LO <= HI and STEP > 0")
            count = int(round((hi - lo) / step + 1e-9)) + 1
            values = tuple(_clean(lo + i * step) for i in range(count))
        else:
            values = tuple(_number(p.strip()) for p in spec.split(",") if p.strip())
    except ValueError as e:
        raise ValueError(f"--sweep {text!r}: {e}") from None
    if not values:
        raise ValueError(f"--sweep {text!r}: no values")
    return Sweep(name, values)


def _clean(v: int | float) -> int | float:
    return v if isinstance(v, int) else float(f"{v:.10g}")


def _check_name(name: str) -> None:
    parts = name.split(".")
    if parts[0] == "rules":
        fields = set(Rule.__dataclass_fields__) - {"name", "for_"} | {"for"}
        if len(parts) != 3 or parts[2] not in fields:
            raise ValueError(f"--sweep {name}: expected rules.<RuleName>.<{'|'.join(sorted(fields))}>")
        if parts[1] not in {r.name for r in DEFAULT_RULES}:
            known = ", ".join(r.name for r in DEFAULT_RULES[:4])
            raise ValueError(f"--sweep {name}: no rule {parts[1]} (known rules: {known}, ...)")
    elif parts[0] not in _TOP_KEYS:
        raise ValueError(f"--sweep {name}: expected rules.<Rule>.<param>, anomaly.<opt>, incidents.<opt> "
                         "or lateness_seconds")


def settings(sweeps: list[Sweep]) -> list[dict[str, int | float]]:
    """The Cartesian product of the sweeps (one empty setting without any)."""
    names = [s.name for s in sweeps]
    return [dict(zip(names, combo)) for combo in itertools.product(*(s.values for s in sweeps))]


def apply_setting(base: dict, setting: dict) -> dict:
    """The base YAML document with the setting's dotted keys set."""
    doc = copy.deepcopy(base or {})
    for name, value in setting.items():
        node = doc
        *path, last = name.split(".")
        for part in path:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        node[last] = value
    return doc


@dataclass
class Result:
    setting: dict
    score: Score
    notifications: int
    seconds: float
    rejected: dict = field(default_factory=dict)


# --- worker side ----------------------------------------------------------------------
_INPUT: dict = {}


def _load(paths: list[str], cache_events: int) -> None:
    """Worker initialiser: parse the input once, keep it if it fits."""
    summary = Summary(files=len(paths))
    stream = merged_events(paths, RejectLog(summary, None), summary)
    cached = list(itertools.islice(stream, cache_events + 1))
    _INPUT.update(paths=paths, summary=summary, events=cached if len(cached) <= cache_events else None)


def _events():
    if _INPUT["events"] is not None:
        return _INPUT["events"]
    summary = Summary()
    return merged_events(_INPUT["paths"], RejectLog(summary, None), summary)


def _run_one(doc: dict, setting: dict, labels: list, no_models: bool) -> Result:
    """One setting over the worker's input: ``gatewatch replay``'s loop, notifications kept."""
    from models.pipeline import build_engine

    tap = NotificationTap()
    summary = replay(_INPUT["paths"], tap, engine=build_engine(Config.from_dict(doc), no_models=no_models),
                     events=_events())
    notes = tap.notifications()
    return Result(setting, score(labels, notes), len(notes), summary.elapsed, dict(_INPUT["summary"].rejected))


def run_settings(paths: list[str], base: dict, grid: list[dict], labels: list, jobs: int = 2,
                 no_models: bool = False, cache_events: int = CACHE_EVENTS) -> list[Result]:
    """Replay ``paths`` under every setting of ``grid``; results in grid order."""
    docs = [apply_setting(base, s) for s in grid]
    for doc in docs:
        Config.from_dict(doc)  # a bad value fails here, before any replay
    jobs = max(1, min(jobs, len(grid), os.cpu_count() or 1))
    args = [(doc, s, labels, no_models) for doc, s in zip(docs, grid)]
    if jobs == 1:
        _load(paths, cache_events)
        try:
            return [_run_one(*a) for a in args]
        finally:
            _INPUT.clear()  # do not keep the parsed input alive in this process
    with ProcessPoolExecutor(max_workers=jobs, initializer=_load, initargs=(paths, cache_events)) as pool:
        return list(pool.map(_run_one, *zip(*args)))


def ranked(results: list[Result]) -> list[Result]:
    return sorted(results, key=lambda r: (*r.score.rank_key(), r.notifications))


def best_yaml(base: dict, best: Result) -> str:
    """The best setting as a YAML configuration, its scores in a comment on top."""
    s = best.score
    delay = "n/a" if s.median_delay_s is None else f"{s.median_delay_s:.0f} s"
    head = (f"# gatewatch tune: recall {s.detected}/{s.incidents}, {s.false_positives} false incidents, "
            f"at most {s.max_pages_per_incident} pages per incident, median delay {delay}\n")
    if best.setting:
        head += "# changed: " + ", ".join(f"{k}={v}" for k, v in best.setting.items()) + "\n"
    return head + yaml.safe_dump(apply_setting(base, best.setting), sort_keys=False)
