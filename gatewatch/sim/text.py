"""Fast text helpers for the renderers: vectorised ids and timestamps, line templates."""

from __future__ import annotations

import re

import numpy as np

_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def mix(x: np.ndarray, salt: int) -> np.ndarray:
    """A cheap 64-bit hash (splitmix64 finaliser), to derive more ids from one random column."""
    with np.errstate(over="ignore"):
        z = x.astype(np.uint64) + np.uint64(salt) * _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def _hex_digits(words: list[np.ndarray]) -> np.ndarray:
    """(n, 16 * len(words)) ASCII hex digits of the big-endian 64-bit words."""
    b = np.stack([w.astype(">u8") for w in words], axis=1).view(np.uint8).reshape(len(words[0]), -1)
    digits = np.empty((b.shape[0], b.shape[1] * 2), dtype=np.uint8)
    digits[:, 0::2], digits[:, 1::2] = _HEX[b >> 4], _HEX[b & 15]
    return digits


def _strings(chars: np.ndarray) -> list[str]:
    width = chars.shape[1]
    return np.ascontiguousarray(chars).view(f"S{width}").ravel().astype(f"U{width}").tolist()


def uuids(hi: np.ndarray, lo: np.ndarray) -> list[str]:
    """UUID-shaped strings (8-4-4-4-12) from two 64-bit columns."""
    d = _hex_digits([hi, lo])
    out = np.full((len(hi), 36), ord("-"), dtype=np.uint8)
    for src, dst in ((slice(0, 8), slice(0, 8)), (slice(8, 12), slice(9, 13)), (slice(12, 16), slice(14, 18)),
                     (slice(16, 20), slice(19, 23)), (slice(20, 32), slice(24, 36))):
        out[:, dst] = d[:, src]
    return _strings(out)


def hex_strings(words: list[np.ndarray]) -> list[str]:
    return _strings(_hex_digits(words))


def iso(us: np.ndarray, unit: str = "us") -> list[str]:
    """ISO-8601 UTC without offset from epoch microseconds (unit: ``ms``, ``us`` or ``ns``)."""
    return np.datetime_as_string(us.astype("datetime64[us]"), unit=unit).tolist()


def iso_ns(ns: np.ndarray) -> list[str]:
    return np.datetime_as_string(ns.astype("datetime64[ns]"), unit="ns").tolist()


_SLOT = re.compile(r"@(\w+)@")


def template(text: str, **specs: str) -> str:
    """A ``%``-format string from ``text`` whose ``@name@`` slots become ``specs[name]`` (default ``%s``).

    Build ``text`` with json/orjson around the slot names so that every constant part is escaped
    correctly; the values put in the slots must not need escaping.
    """
    return _SLOT.sub(lambda m: specs.get(m.group(1), "%s"), text.replace("%", "%%"))

