"""Cardinality floods: a client that sends a new key alias or model name on every request.

Every distinct provider, model, team and key becomes a series with its windows and models (a few
KB each), so such a client would grow memory without bound. Three defences:

* ``Cardinality`` caps the distinct values per dimension at the fold (``Partials.add``): past
  ``cap`` live values, a new value is counted under ``OVERFLOW`` (``~other``), so its requests
  still count for the gateway, its provider and ``~other``. Known leaves cost one dict lookup;
  values not seen for ``idle_minutes`` are forgotten (two generations, swapped every half), which
  frees their place under the cap.
* ``forget_idle`` drops engine series (and their side facts) idle for ``idle_minutes``.
* ``FloodWatch`` raises one ``CardinalityFlood`` alert (category ``resource``) per dimension
  while values overflow, and resolves it an hour after the last one.
"""

from __future__ import annotations

from typing import Final

from models.incidents import Alert
from models.windows import STEP

__all__ = ["DIMENSIONS", "OVERFLOW", "Cardinality", "FloodWatch", "forget_idle"]

OVERFLOW: Final = "~other"
DIMENSIONS = ("provider", "model", "team", "key")  # the order of a leaf key in models/partials.py
_INDEX = {dim: i for i, dim in enumerate(DIMENSIONS)}
DEFAULT_CAP = 2000  # distinct live values per dimension: ~10 KB each with its windows and models
DEFAULT_IDLE_MINUTES = 360  # as long as the anomaly models keep an idle series


class Cardinality:
    """Maps a leaf ``(provider, model, team, key)`` to itself, or with ``OVERFLOW`` in the place
    of each value over the cap."""

    __slots__ = ("cap", "half", "leaves", "max_leaves", "old_leaves", "old_values", "overflowed", "swap_at", "values")

    def __init__(self, cap: int = DEFAULT_CAP, idle_minutes: int = DEFAULT_IDLE_MINUTES) -> None:
        self.cap, self.half = cap, max(1, idle_minutes // 2)
        self.max_leaves = 8 * cap  # memoised combinations; beyond it, leaves take the slow path
        self.leaves: dict[tuple, tuple] = {}  # admitted leaf -> the leaf to count it under
        self.old_leaves: dict[tuple, tuple] = {}
        self.values: list[dict[str, None]] = [{} for _ in DIMENSIONS]  # live values, this generation
        self.old_values: list[dict[str, None]] = [{} for _ in DIMENSIONS]  # and the one before
        self.swap_at: int | None = None  # minute of the next generation swap
        self.overflowed = [0] * len(DIMENSIONS)  # events counted under OVERFLOW, per dimension

    def leaf_for(self, raw: tuple, minute: int) -> tuple:
        """The leaf to count ``raw`` under."""
        return self.leaves.get(raw) or self.leaf(raw, minute)

    def tick(self, minute: int) -> None:
        """A minute closed. Known leaves are found without a call here (one dict lookup in
        ``Partials.add``), so their use is seen only after a swap empties the memo: swapping on
        time, not only when a new value comes, keeps "idle" meaning idle."""
        if self.swap_at is not None and minute >= self.swap_at:
            self._swap(minute)

    def leaf(self, raw: tuple, minute: int) -> tuple:
        """The leaf to count ``raw`` under, when ``raw`` is not in ``leaves`` (the slow path)."""
        if self.swap_at is None:
            self.swap_at = minute + self.half
        elif minute >= self.swap_at:
            self._swap(minute)
        out: list[str] | None = None
        for i, value in enumerate(raw):
            if value and not self._admit(i, value):
                out = out or list(raw)
                out[i] = OVERFLOW
                self.overflowed[i] += 1
        if out is not None:
            return tuple(out)  # not memoised: a flood would fill the memo
        if len(self.leaves) < self.max_leaves:
            self.leaves[raw] = raw
        return raw

    def admitted(self, dim: str, value: str) -> bool:
        """Whether ``value`` of ``dim`` is counted as itself (the empty value always is)."""
        i = _INDEX[dim]
        return not value or value in self.values[i] or value in self.old_values[i]

    def live(self, dim: int) -> int:
        return len(self.values[dim]) + len(self.old_values[dim])

    def _admit(self, i: int, value: str) -> bool:
        current = self.values[i]
        if value in current:
            return True
        old = self.old_values[i]
        if value in old:
            del old[value]
        elif len(current) + len(old) >= self.cap:
            return False
        current[value] = None
        return True

    def _swap(self, minute: int) -> None:
        # In place: Partials holds ``leaves`` itself for its one-lookup fast path.
        self.old_leaves = dict(self.leaves)
        self.leaves.clear()
        self.old_values, self.values = self.values, [{} for _ in DIMENSIONS]
        self.swap_at = minute + self.half


def forget_idle(engine, minute: int, idle_minutes: int = DEFAULT_IDLE_MINUTES) -> int:
    """Drop the series idle for ``idle_minutes`` that no rule is watching; returns how many."""
    watched = {key for _, key in engine.states}
    gone = [key for key, w in engine.series.items()
            if w.idle() and key not in watched and w.closed is not None and minute - w.closed >= idle_minutes]
    for key in gone:
        del engine.series[key]
    implied = engine.incidents.implied
    for key in [k for k in implied if k not in engine.series]:
        del implied[key]
    today = (minute * STEP) // 86400
    for spend in (engine.spend, engine.reported_spend):
        for key in [k for k in spend if k[0] < today - 1]:
            del spend[key]
    return len(gone)


class FloodWatch:
    """The engine's ``extra_detectors`` object for the flood itself; also forgets idle series."""

    def __init__(self, cap: int = DEFAULT_CAP, idle_minutes: int = DEFAULT_IDLE_MINUTES,
                 clear_minutes: int = 60) -> None:
        self.cap, self.idle_minutes, self.clear_minutes = cap, idle_minutes, clear_minutes
        self.firing: dict[str, int] = {}  # dimension -> last minute with overflow
        self.forgotten = 0

    def on_minute(self, engine, minute: int) -> None:
        now = (minute + 1) * STEP
        engine.acc.cardinality.tick(minute)
        for dim in DIMENSIONS:
            w = engine.series.get((dim, OVERFLOW))
            bucket = w.buckets.get(minute) if w is not None else None
            if bucket is not None and bucket.requests:
                if dim not in self.firing:
                    engine.incidents.fire(self._alert(dim, bucket.requests, now), now)
                self.firing[dim] = minute
            elif dim in self.firing and minute - self.firing[dim] >= self.clear_minutes:
                del self.firing[dim]
                engine.incidents.resolve(_alert_id(dim), now)
        if minute % 60 == 0:
            self.forgotten += forget_idle(engine, minute, self.idle_minutes)

    def _alert(self, dim: str, requests: int, now: float) -> Alert:
        title = (f"{dim} cardinality flood: over {self.cap:,} distinct {dim}s; "
                 f"new ones are counted as {dim} {OVERFLOW}")
        explanation = (f"{requests:,} requests in the last minute came with a {dim} beyond the first "
                       f"{self.cap:,}; they count for the gateway, their provider and {dim} {OVERFLOW}")
        return Alert(
            id=_alert_id(dim), name="CardinalityFlood", category="resource", severity="warning",
            detector="rule", labels={"dimension": dim}, value=float(requests), threshold=float(self.cap),
            started_at=now - STEP, title=title, explanation=explanation,
        )


def _alert_id(dim: str) -> str:
    return f"CardinalityFlood|dimension={dim}"
