"""An object's attributes as a pickle state, whether its class runs compiled or not.

Compiled (setup.py), a class has neither ``__dict__`` nor ``__slots__`` to read back; mypyc lists
its attributes in ``__mypyc_attrs__``. Derived, not listed by hand: an attribute added later is
in every snapshot without anyone remembering to add it.
"""

from __future__ import annotations

from typing import Any

__all__ = ["attributes"]


def attributes(obj: object) -> dict[str, Any]:
    """``obj``'s attributes that are set, by name."""
    names = getattr(type(obj), "__mypyc_attrs__", None) or list(vars(obj))
    return {name: getattr(obj, name) for name in names if hasattr(obj, name)}
