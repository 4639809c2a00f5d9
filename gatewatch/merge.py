"""Merging the events of several files by event time, a chunk at a time.

Replay used to merge with ``heapq.merge(*files, key=ts)``: a Python-level step per event.
``merge_by_time`` gives the same sequence, event for event, but in batches: it reads a
chunk of events from each file, emits at once every buffered event older than the
newest event every open file has buffered (no file can still produce anything older,
as long as each file is in time order), and orders that batch with one stable
``list.sort`` (Timsort, in C, nearly free on sorted runs). Ties keep the order
``heapq.merge`` gives them: the earlier file first, then file order.

Files that are not in time order are legal input, and ``heapq.merge`` has a defined
result on them (repeatedly the smallest of the files' next events). So every chunk is
checked as it is read; at the first event older than its predecessor the merge hands
what is buffered and the rest of every file to ``heapq.merge`` itself, which from then
on produces exactly what it would have produced from the start: its only state is the
next event of each file, and everything emitted before was in time order.
"""

from __future__ import annotations

import heapq
from bisect import bisect_left
from itertools import chain, islice
from operator import attrgetter, le
from typing import Iterable, Iterator

from models.events import Event

__all__ = ["merge_by_time"]

_TS = attrgetter("ts")
_BATCH = 4096  # events per batch once merging falls back to heapq


def merge_by_time(chunked: Iterable[Iterator[list[Event]]]) -> Iterator[list[Event]]:
    """Batches of events, in the order ``heapq.merge(*files, key=ts)`` would give them.

    ``chunked`` holds one iterator per file, each yielding lists of events in file order.
    """
    sources = [iter(c) for c in chunked]
    bufs: list[list[Event]] = [[] for _ in sources]
    last: list[float] = [float("-inf")] * len(sources)  # ts of the last event read from each file
    open_ = [True] * len(sources)
    while True:
        for i in range(len(sources)):  # every open file has something buffered
            if open_[i] and not bufs[i] and not _read(i, sources, bufs, last, open_):
                yield from _fallback(sources, bufs)
                return
        ends = [last[i] for i in range(len(sources)) if open_[i]]
        if not ends and not any(bufs):
            return
        bound = min(ends, default=float("inf"))
        batch = _take(bufs, bound)
        if batch:
            yield batch
            continue
        # Every buffered event is at ``bound``: read on in the files that end there.
        for i in range(len(sources)):
            if open_[i] and last[i] == bound and not _read(i, sources, bufs, last, open_):
                yield from _fallback(sources, bufs)
                return


def _read(i: int, sources, bufs, last, open_) -> bool:
    """Append file ``i``'s next chunk; False if the chunk breaks time order (then it is kept
    pending at the end of the buffer for the fallback)."""
    chunk = next(sources[i], None)
    if chunk is None:
        open_[i] = False
        return True
    ts = list(map(_TS, chunk))
    ordered = ts[0] >= last[i] and all(map(le, ts, islice(ts, 1, None)))
    bufs[i] += chunk
    last[i] = ts[-1]
    return ordered


def _take(bufs: list[list[Event]], bound: float) -> list[Event]:
    """Remove and return every buffered event before ``bound``, merged."""
    parts = []
    for i, buf in enumerate(bufs):
        if not buf:
            continue
        k = len(buf) if buf[-1].ts < bound else bisect_left(buf, bound, key=_TS)
        if k:
            parts.append(buf[:k])
            bufs[i] = buf[k:]
    if len(parts) <= 1:
        return parts[0] if parts else []
    batch = parts[0]  # a fresh slice: safe to extend
    for part in parts[1:]:
        batch += part
    batch.sort(key=_TS)  # stable: equal times stay in file order, earlier file first
    return batch


def _fallback(sources, bufs) -> Iterator[list[Event]]:
    rest = [chain(buf, chain.from_iterable(src)) for buf, src in zip(bufs, sources)]
    merged = heapq.merge(*rest, key=_TS)
    while batch := list(islice(merged, _BATCH)):
        yield batch
