"""Build: the per-line hot path compiled with mypyc when it can be, plain Python otherwise.

Everything else about the package is in pyproject.toml. The modules listed in
``gatewatch/compiled.py`` are ordinary, fully typed Python: mypyc turns them into C extensions (the same code, run
without the interpreter's per-operation overhead: the parsers, the per-minute fold, the
window sums, the merge by event time). Nothing behaves differently; ``tests/test_compiled.py``
replays a scenario with the compiled and the plain modules and compares the outputs byte
for byte.

``GATEWATCH_PURE=1 pip install .`` skips the compilation. So does a machine without a C
compiler: a failed build leaves no extension behind and the install goes on with the
plain modules (slower, same results). In a source checkout, the extensions of an earlier build
are removed first, so that none of them outlives the build that replaced it (Python would import
it before the ``.py``). ``gatewatch bench`` says which ran.
"""

from __future__ import annotations

import os
import runpy
import sys

from setuptools import setup
from setuptools.command.build_ext import build_ext

# The hot path: the modules listed in gatewatch/compiled.py (read, not imported: the build
# environment has none of the runtime dependencies).
HERE = os.path.dirname(os.path.abspath(__file__))
_LIST = runpy.run_path(os.path.join(HERE, "gatewatch", "compiled.py"))
COMPILED = list(_LIST["SOURCES"])


def clear_old_builds() -> None:
    _LIST["clear_old_builds"](HERE)


class OptionalBuildExt(build_ext):
    """Build the extensions, or none of them: the modules share one mypyc runtime library, so a
    partial build would leave modules that cannot import."""

    def run(self) -> None:
        clear_old_builds()
        try:
            super().run()
        except Exception as error:  # noqa: BLE001 - any compiler failure means: install plain Python
            for path in self.get_outputs():
                if os.path.exists(path):
                    os.remove(path)
            print(f"gatewatch: compiling the hot path failed ({error}); installing plain Python "
                  "(same results, slower)", file=sys.stderr)


def extensions() -> list:
    if os.environ.get("GATEWATCH_PURE"):
        clear_old_builds()
        return []
    try:
        from mypyc.build import mypycify
    except ImportError:
        print("gatewatch: mypyc is not installed; installing plain Python", file=sys.stderr)
        clear_old_builds()
        return []
    try:
        # Imported modules are type-checked only as far as the compiled ones need them; the
        # isolated build environment has none of the runtime dependencies installed.
        return mypycify(["--follow-imports=silent", "--ignore-missing-imports", *COMPILED], opt_level="3")
    except (Exception, SystemExit) as error:  # noqa: BLE001 - a type error found by mypyc's own check
        print(f"gatewatch: mypyc rejected the hot path ({error}); installing plain Python", file=sys.stderr)
        clear_old_builds()
        return []


setup(ext_modules=extensions(), cmdclass={"build_ext": OptionalBuildExt})
