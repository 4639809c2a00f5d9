"""Where the shared, independently generated data lives (``../shared`` beside the repo).

Set ``GATEWATCH_SHARED`` to point elsewhere. Tests that need it skip, saying why, when it
is absent; the rest of the suite does not depend on it.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def shared_dir() -> Path | None:
    for candidate in (os.environ.get("GATEWATCH_SHARED"), ROOT.parent / "shared", "/work/shared"):
        if candidate and (Path(candidate) / "scenarios").is_dir():
            return Path(candidate)
    return None


SHARED = shared_dir()
needs_shared = pytest.mark.skipif(SHARED is None, reason="../shared (scenarios, scorer) not found")


def scenarios() -> list[Path]:
    if SHARED is None:
        return []
    return sorted(p for p in (SHARED / "scenarios").iterdir() if (p / "labels.json").is_file())


def scorer():
    """The shared scoring module (``tools/score_scenarios.py``), imported from its path."""
    spec = importlib.util.spec_from_file_location("score_scenarios", SHARED / "tools" / "score_scenarios.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
