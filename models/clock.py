"""Clock trouble: one source's events checked against that source's own sense of time.

A source's stream is roughly ordered (CONTRACT §2), so an event far ahead of the events before it
is either a clock or unit error (an epoch in microseconds, a year typed wrong, a machine whose
clock jumped) or a genuine gap in the log (a quiet night, two days of files). One outlier let
through would move the watermark ahead and make every later event of every source "too late",
so a jump ahead is believed only when the events after it confirm it: ``confirm`` events in a
row, each within ``chain`` seconds of the one before. The first events of a stream are held the
same way (two events within ``chain`` of each other anchor it), so that a stream that starts with
an outlier does not anchor on it. An event that is only behind is not judged
here: the engine's bounded lateness decides (late within the retention: into its closed minute;
older: rejected ``too_late``).

Pure and deterministic: ``feed`` takes ``(ts, item)`` pairs in the source's order and yields the
admitted ones (a confirmed jump is released in order, a few events late) and the rejected ones
with reason ``future_timestamp``; nothing reads a clock.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Generic, TypeVar

__all__ = ["FUTURE", "SourceClock"]

FUTURE = "future_timestamp"
T = TypeVar("T")


class SourceClock(Generic[T]):
    """Admits one source's events in its own order; holds back and judges jumps ahead."""

    def __init__(self, max_ahead: float = 900.0, chain: float = 3600.0, confirm: int = 3) -> None:
        self.max_ahead, self.chain, self.confirm = max_ahead, chain, confirm
        self.newest: float | None = None
        self.limit = float("-inf")  # newest + max_ahead: at or below it, an event is simply admitted
        self.pending: list[tuple[float, T]] = []  # events ahead of ``newest + max_ahead``, in order
        self.rejected = 0

    def feed(self, items: Iterable[tuple[float, T]]) -> Iterator[tuple[bool, float, T]]:
        """``(admitted, ts, item)`` for every item, in the order they are decided."""
        for ts, item in items:
            yield from self.one(ts, item)
        yield from self.end()

    def one(self, ts: float, item: T) -> list[tuple[bool, float, T]]:
        """Judge one event. Hot loops may skip the call while ``not pending and ts <= limit``
        (they then set ``newest`` and ``limit`` themselves when ``ts > newest``)."""
        newest = self.newest
        if newest is not None and ts <= newest + self.max_ahead:
            out = self._drop_pending() if self.pending else []
            if ts > newest:
                self.newest, self.limit = ts, ts + self.max_ahead
            out.append((True, ts, item))
            return out
        pending = self.pending
        pending.append((ts, item))
        if newest is None:  # the start: anchor on the first two events within ``chain`` of each other
            chained = len(pending) >= 2 and abs(ts - pending[-2][0]) <= self.chain
            return self._jump(pending[-2:]) if chained else []
        tail = self._chained_tail()
        return self._jump(tail) if len(tail) >= self.confirm else []

    def end(self) -> list[tuple[bool, float, T]]:
        """End of the stream: a chain of two or more held events is a real (short) tail; a lone
        event far ahead is not (unless it is all the stream has)."""
        if not self.pending:
            return []
        tail = self._chained_tail()
        if len(tail) >= min(2, self.confirm) or self.newest is None:
            return self._jump(tail)
        return self._drop_pending()

    def _chained_tail(self) -> list[tuple[float, T]]:
        """The longest run at the end of ``pending`` whose steps are each within ``chain``."""
        pending = self.pending
        start = len(pending) - 1
        while start > 0 and abs(pending[start][0] - pending[start - 1][0]) <= self.chain:
            start -= 1
        return pending[start:]

    def _jump(self, tail: list[tuple[float, T]]) -> list[tuple[bool, float, T]]:
        """Event time really moved: release the chain, reject the held events before it."""
        out = [(False, ts, item) for ts, item in self.pending[: len(self.pending) - len(tail)]]
        self.rejected += len(out)
        self.pending = []
        self.newest = max(ts for ts, _ in tail)
        self.limit = self.newest + self.max_ahead
        out.extend((True, ts, item) for ts, item in tail)
        return out

    def _drop_pending(self) -> list[tuple[bool, float, T]]:
        out = [(False, ts, item) for ts, item in self.pending]
        self.rejected += len(out)
        self.pending = []
        return out
