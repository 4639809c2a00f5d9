"""The hot path compiled with mypyc (``setup.py``, ``gatewatch/compiled.py``) behaves exactly as
the plain Python it is compiled from: a replay with the compiled modules and one with the plain
sources give the same notifications and counts, byte for byte.

The plain run imports the package from a copy of its ``.py`` files (no extension modules), in a
subprocess, so both runs are the real thing. Run where the package was installed with
``GATEWATCH_PURE=1``, both runs would be plain: ``test_the_hot_path_is_compiled`` says so.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gatewatch import compiled
from tests.shared_data import needs_shared, scenarios

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("gatewatch", "models", "connectors", "streams")


def test_the_hot_path_is_compiled():
    if os.environ.get("GATEWATCH_PURE"):
        pytest.skip("GATEWATCH_PURE is set: the package was installed without compiling")
    states = compiled.status()
    assert set(states.values()) == {compiled.COMPILED}, (
        f"{compiled.describe()}; install with `pip install -e .` (a C compiler is needed) "
        "or set GATEWATCH_PURE=1 to test plain Python")


def _plain_copy(tmp: Path) -> Path:
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp / package, ignore=shutil.ignore_patterns("*.so", "__pycache__"))
    return tmp


def _replay(files: list[str], out: Path, pythonpath: str | None, *flags: str) -> str:
    code = ("import sys\n"
            "from gatewatch.cli import main\n"
            "from gatewatch import compiled\n"
            "print(compiled.describe(), file=sys.stderr)\n"
            f"sys.exit(main(['replay', *{files!r}, '--out', {str(out)!r}, *{list(flags)!r}]))\n")
    env = dict(os.environ)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=out.parent)
    assert run.returncode == 0, run.stderr[-2000:]
    return run.stderr


@needs_shared
@pytest.mark.slow
@pytest.mark.parametrize("flags", [(), ("--no-rules",)], ids=["rules+models", "models only"])
def test_compiled_and_plain_replays_are_identical(tmp_path, flags):
    path = next(p for p in scenarios() if p.name.startswith("p4"))  # the scenario with most kinds of incident
    files = sorted(str(p) for p in path.glob("*.ndjson.gz"))
    plain = _plain_copy(tmp_path / "plain")
    log_compiled = _replay(files, tmp_path / "compiled.ndjson", None, *flags)
    log_plain = _replay(files, tmp_path / "plain.ndjson", str(plain), *flags)
    assert "not compiled" in log_plain.splitlines()[0], log_plain
    notes = (tmp_path / "compiled.ndjson").read_bytes()
    assert notes.count(b"\n") >= 2  # incidents paged (and resolved), not an empty run
    assert notes == (tmp_path / "plain.ndjson").read_bytes()
    # the summary (lines, events, rejects, duplicates, incidents) is the same too, times aside
    def summary(log: str) -> list[str]:
        return [line for line in log.splitlines()[1:] if "/s" not in line and " s " not in line]
    assert summary(log_compiled) == summary(log_plain)


def test_an_earlier_build_does_not_outlive_the_next(tmp_path):
    """setup.py removes the extensions an earlier build left in a checkout before it builds or
    installs plain Python: Python would import them before the ``.py`` beside them (seen: a
    ``GATEWATCH_PURE=1`` reinstall went on running the compiled modules)."""
    from gatewatch.compiled import clear_old_builds

    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "windows.py").write_text("")
    old = [tmp_path / "models" / "windows.cpython-311-x86_64-linux-gnu.so",
           tmp_path / "abc123__mypyc.cpython-311-x86_64-linux-gnu.so"]
    kept = [tmp_path / "models" / "other.cpython-311-x86_64-linux-gnu.so",  # no .py beside it: not ours to remove
            tmp_path / "models" / "windows.py", tmp_path / "setup.py"]
    for path in old + kept:
        path.write_text("")
    assert sorted(clear_old_builds(str(tmp_path))) == sorted(str(p) for p in old)
    assert not any(p.exists() for p in old) and all(p.exists() for p in kept)
