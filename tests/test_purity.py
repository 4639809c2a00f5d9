"""``models/`` is the pure detection core: it must import no Kafka, HTTP or Slack code."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

MODELS = Path(__file__).resolve().parents[1] / "models"
FORBIDDEN = ("faust", "aiokafka", "kafka", "httpx", "slack_sdk", "requests", "aiohttp", "nats", "psycopg", "redis")


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_models_source_imports_no_io_libraries():
    offenders = {
        str(p.relative_to(MODELS.parent)): sorted(imported_modules(p) & set(FORBIDDEN))
        for p in MODELS.rglob("*.py")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_importing_models_loads_no_io_library():
    code = (
        "import sys, pkgutil, importlib, models\n"
        "for m in pkgutil.walk_packages(models.__path__, 'models.'):\n"
        "    importlib.import_module(m.name)\n"
        f"bad = [n for n in sys.modules if n.split('.')[0] in {FORBIDDEN!r}]\n"
        "print(','.join(sorted(bad)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
