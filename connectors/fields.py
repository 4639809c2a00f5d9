"""Typed reads of raw JSON fields: timestamps, numbers, flags.

Timestamps → epoch seconds (float, UTC). The sources write time in several ways
(reference/SOURCES.md, "Parser gotchas"): LiteLLM payloads as epoch-second floats, SpendLogs and Langfuse as ISO 8601 with ``Z``
or an offset, LiteLLM JSON log lines as *naive* ISO (taken as UTC), and Fly as RFC 3339
with nine fractional digits, which ``datetime.fromisoformat`` rejects.

This is on the hot path (one to three timestamps per record), so the common shapes take a
fast path: the epoch of the ``YYYY-MM-DDTHH:MM`` prefix is cached, and the seconds with
any number of fractional digits are added as a float.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone

from models.events import Rejected

__all__ = ["flag", "iso_epoch", "number", "to_epoch"]

_ISO = re.compile(r"(\d{4}-\d\d-\d\d)[Tt ](\d\d:\d\d):(\d\d(?:[.,]\d+)?)(Z|z|[+-]\d\d(?::?\d\d)?)?")
_MINUTES: dict[str, float] = {}  # "2026-09-14T06:00" → epoch of that minute (UTC)
_MAX_CACHED = 1 << 16  # a year of minutes would be 525k: past this, stop caching (still correct)
_MS_EPOCH = 1e11  # a number above this is epoch milliseconds (1e11 s is the year 5138)


def iso_epoch(text: str) -> float:
    """Epoch seconds of an ISO 8601 / RFC 3339 timestamp; naive means UTC. Raises ValueError."""
    base = _MINUTES.get(text[:16])
    if base is not None and text[16:17] == ":":
        seconds = text[17:-1] if text[-1:] == "Z" else text[17:]
        # float() alone would also take "1e3" or "0_5": insist on "SS" or "SS.fff…".
        if seconds[:2].isdigit() and (len(seconds) == 2 or (seconds[2] == "." and seconds[3:].isdigit())):
            return base + float(seconds)
    return _iso_slow(text)


def _iso_slow(text: str) -> float:
    match = _ISO.fullmatch(text)
    if match is None:
        return _date_epoch(text) if _is_date(text) else _bad(text)
    date, hour_minute, seconds, zone = match.groups()
    base = datetime.fromisoformat(f"{date}T{hour_minute}:00+00:00").timestamp()
    if len(_MINUTES) < _MAX_CACHED:
        _MINUTES[text[:16]] = base
    return base + float(seconds.replace(",", ".")) - _offset_seconds(zone)


def _is_date(text: str) -> bool:
    return len(text) == 10 and text[4:5] == "-" and text[7:8] == "-"


def _date_epoch(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp()


def _bad(text: str) -> float:
    raise ValueError(f"not an ISO 8601 timestamp: {text[:40]!r}")


def _offset_seconds(zone: str | None) -> float:
    if not zone or zone in "Zz":
        return 0.0
    digits = zone[1:].replace(":", "")
    seconds = int(digits[:2]) * 3600 + int(digits[2:4] or 0) * 60
    return -seconds if zone[0] == "-" else seconds


def to_epoch(value: object, field: str) -> float | None:
    """A timestamp field of any source → epoch seconds; ``None`` when absent or empty.

    Accepts epoch seconds (or milliseconds) as a number or numeric string, and ISO strings.
    Anything else raises ``Rejected("wrong_type")``: the record cannot be placed in time.
    """
    kind = type(value)
    if kind is str:
        try:
            return iso_epoch(value)  # type: ignore[arg-type]
        except ValueError:
            return _number_epoch(value, field) if value else None  # type: ignore[arg-type]
    if kind is float or kind is int:
        return value / 1000.0 if value > _MS_EPOCH else float(value)  # type: ignore[operator]
    if value is None:
        return None
    raise Rejected("wrong_type", f"{field}: {kind.__name__}")


def _number_epoch(text: str, field: str) -> float:
    try:
        number = float(text)
    except ValueError:
        raise Rejected("wrong_type", f"{field}: {text[:40]!r}") from None
    if number != number or number in (float("inf"), float("-inf")):
        raise Rejected("wrong_type", f"{field}: {text[:40]!r}")
    return number / 1000.0 if number > _MS_EPOCH else number


def number(value: object) -> float | None:
    """A numeric field (number or numeric string) → float; ``None`` when absent or empty.

    Junk (a non-numeric string, a dict) raises ValueError/TypeError, which the format
    dispatcher turns into ``Rejected("wrong_type")``.
    """
    if value is None or value == "":
        return None
    return float(value)  # type: ignore[arg-type]


def flag(value: object) -> bool | None:
    """A boolean field: JSON bool, or the strings ``"True"``/``"False"`` of SpendLogs."""
    if value is None or value == "":
        return None
    if type(value) is bool:
        return value  # type: ignore[return-value]
    if type(value) is str:
        return value.lower() in ("true", "1", "yes")  # type: ignore[union-attr]
    return bool(value)
