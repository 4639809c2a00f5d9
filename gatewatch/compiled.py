"""The hot-path modules ``setup.py`` compiles with mypyc, and how each one runs here.

Compiled or not, they are the same Python source and give the same results
(``tests/test_compiled.py``); compiled, replay takes 41% fewer instructions than plain (1.7x
faster; ``benchmarks/RESULTS.md``). This file is read by
``setup.py`` (without importing the package), so it imports nothing at module level beyond the
standard library.
"""

from __future__ import annotations

import importlib
import os

# Paths from the project root: the parsers, the events, the per-minute fold and windows, the
# merge by event time, the metrics, rules and engine of each minute, the anomaly models (their
# signals, their per-minute loop over the series, the online detector they run per series), the
# explanations, the redaction of the text kept from log lines, the file reader, replay's own loop
# and the request-id memory: the per-line and per-minute work of replay and of the worker.
SOURCES = (
    "models/events.py",
    "models/windows.py",
    "models/partials.py",
    "models/cardinality.py",
    "models/clock.py",
    "models/metrics.py",
    "models/rules.py",
    "models/engine.py",
    "models/univariate.py",
    "models/signals.py",
    "models/anomaly.py",
    "models/explain.py",
    "models/redaction.py",
    "connectors/fields.py",
    "connectors/litellm.py",
    "connectors/fly.py",
    "connectors/langfuse.py",
    "connectors/formats.py",
    "connectors/files.py",
    "connectors/recent.py",
    "gatewatch/merge.py",
    "gatewatch/replay.py",
)

COMPILED, PLAIN, STALE = "compiled", "plain", "stale"
PACKAGES = ("models", "connectors", "gatewatch", "streams")


def clear_old_builds(root: str) -> list[str]:
    """Remove the extensions an earlier build left in the source tree at ``root`` (setup.py, before
    it builds or when it installs plain Python); returns what it removed. Python imports an
    extension before the ``.py`` beside it, so a module built before (no longer listed, or with
    ``GATEWATCH_PURE=1`` now) would otherwise go on running its old compiled code."""
    removed = []
    for package in PACKAGES:
        folder = os.path.join(root, package)
        for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else ():
            stem, dot, suffix = name.partition(".")
            if dot and suffix.endswith((".so", ".pyd")) and os.path.exists(os.path.join(folder, stem + ".py")):
                removed.append(os.path.join(folder, name))
    removed += [os.path.join(root, name) for name in sorted(os.listdir(root))  # the shared mypyc runtime
                if "__mypyc." in name and name.endswith((".so", ".pyd"))]
    for path in removed:
        os.remove(path)
    return removed


def status() -> dict[str, str]:
    """Module name → ``compiled``, ``plain`` (the .py runs), or ``stale``: compiled, but its
    source changed since (a source checkout edited after ``pip install -e .``; the old code runs)."""
    out = {}
    for path in SOURCES:
        name = path[:-3].replace("/", ".")
        file = importlib.import_module(name).__file__ or ""
        if file.endswith(".py"):
            out[name] = PLAIN
            continue
        source = os.path.join(os.path.dirname(file), os.path.basename(path))
        newer = os.path.exists(source) and os.path.getmtime(source) > os.path.getmtime(file)
        out[name] = STALE if newer else COMPILED
    return out


def describe() -> str:
    """One line for benchmark output: ``hot path: compiled with mypyc (21 of 21 modules)``."""
    states = status()
    done = sum(s == COMPILED for s in states.values())
    if done == len(states):
        return f"hot path: compiled with mypyc ({done} of {done} modules)"
    if done == 0 and STALE not in states.values():
        return "hot path: plain Python (not compiled)"
    odd = ", ".join(f"{name} {s}" for name, s in states.items() if s != COMPILED)
    return f"hot path: {done} of {len(states)} modules compiled ({odd})"
