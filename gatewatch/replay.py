"""Replay: the service's detection pipeline over historic files, in one process.

Files are read concurrently and merged by event time (each is roughly ordered the way
its source delivers it), fed to the same ``models.engine.Engine`` the Faust worker
runs, and the notifications the service would have sent are written as NDJSON.
Rejected lines are counted by reason and, with ``--rejects``, kept with their reason.
"""

from __future__ import annotations

import gc
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Final, IO, Iterable, Iterator, Sequence

import orjson

from connectors.files import iter_file
from gatewatch.merge import merge_by_time
from models.clock import FUTURE, SourceClock
from models.config import Config
from models.engine import Engine
from models.redaction import redact
from models.events import REQUEST, Event
from models.windows import STEP


@dataclass
class Summary:
    files: int = 0
    records: int = 0  # events parsed (a LiteLLM array counts each of its items)
    rejected: Counter = field(default_factory=Counter)
    duplicates: int = 0
    notifications: int = 0
    incidents: int = 0
    elapsed: float = 0.0
    readers_cpu: list[float] = field(default_factory=list)  # replay --jobs: each reader process's CPU seconds

    @property
    def events_per_second(self) -> float:
        return self.records / self.elapsed if self.elapsed > 0 else 0.0

    def lines(self) -> list[str]:
        rej = sum(self.rejected.values())
        reasons = ", ".join(f"{k} {v}" for k, v in self.rejected.most_common()) or "none"
        return [
            f"files:         {self.files}",
            f"records read:  {self.records + rej:,} ({self.records:,} events, {self.duplicates:,} duplicates skipped)",
            f"rejected:      {rej:,} ({reasons})",
            f"incidents:     {self.incidents}",
            f"notifications: {self.notifications}",
            f"elapsed:       {self.elapsed:.2f} s ({self.events_per_second:,.0f} events/s)",
        ] + ([f"readers:       {len(self.readers_cpu)} processes, CPU "
              + ", ".join(f"{c:.2f} s" for c in self.readers_cpu)] if self.readers_cpu else [])


class RejectLog:
    """Counts rejects by reason; with a file, keeps each one with its reason and origin."""

    def __init__(self, summary: Summary, out: IO[bytes] | None) -> None:
        self.summary, self.out = summary, out

    def __call__(self, reason: str, path: str, line_no: int, raw: bytes | str, detail: str = "",
                 count: int = 1) -> None:
        """``count``: how many events the one kept record stands for (a bucket too late, ``--jobs``)."""
        self.summary.rejected[reason] += count
        if self.out is not None:
            if isinstance(raw, bytes):
                raw = raw.decode("utf-8", "replace")
            rec = {"reason": reason, "detail": redact(detail), "file": path, "line": line_no, "raw": redact(raw[:2000])}
            self.out.write(orjson.dumps(rec) + b"\n")


def file_chunks(path: str, on_reject: RejectLog, size: int = 2048) -> Iterator[list[Event]]:
    """The events of one file in file order, in lists of about ``size``; its rejects go to
    ``on_reject`` as they are read.

    Each file is one source with its own clock: an event far ahead of the file's own time is held
    until the events after it confirm the jump, else rejected ``future_timestamp`` (models/clock.py).
    """
    chunk: list[Event] = []
    clock: SourceClock[Event] = SourceClock()
    for item in iter_file(path):
        if isinstance(item, list):
            for ev in item:
                ts = ev.ts
                if clock.pending or ts > clock.limit:  # held or far ahead: let the clock judge
                    for admitted, _, held in clock.one(ts, ev):
                        if admitted:
                            chunk.append(held)
                        else:
                            _future(on_reject, path, held, clock)
                    continue
                newest = clock.newest  # set: ts <= limit, which is finite once an event was admitted
                if newest is None or ts > newest:  # the clock's own bookkeeping, inlined (the hot path)
                    clock.newest, clock.limit = ts, ts + clock.max_ahead
                chunk.append(ev)
            if len(chunk) >= size:
                yield chunk
                chunk = []
        else:
            on_reject(item.reason, item.file, item.line_no, item.raw_prefix, item.detail)
    for admitted, _, ev in clock.end():
        if admitted:
            chunk.append(ev)
        else:
            _future(on_reject, path, ev, clock)
    if chunk:
        yield chunk


def _future(on_reject: RejectLog, path: str, ev: Event, clock: SourceClock) -> None:
    detail = f"{ev.kind} at {ev.ts:.3f} is over {clock.max_ahead:.0f} s ahead of the file's time {clock.newest}"
    on_reject(FUTURE, path, 0, f"{ev.source} {ev.kind} {ev.request_id or ev.trace_id}", detail)


TOO_LATE = "too_late"


class Deduper:
    """Drops a request seen twice (the callback and SpendLogs both carry it), among the last
    ``capacity`` request ids: ``connectors.recent.RecentKeys.seen`` (first seen, first forgotten),
    written out on a set and a ring of ids, so that it runs compiled once per request."""

    def __init__(self, capacity: int = 200_000) -> None:
        self.capacity = capacity
        self.ids: set[str] = set()
        self.ring: list[str] = []  # the remembered ids in the order first seen, from ``oldest`` on
        self.oldest = 0

    def duplicate(self, ev: Event) -> bool:
        if ev.kind != REQUEST:
            return False
        key = ev.request_id
        if not key:
            return False
        if key in self.ids:
            return True
        self.ids.add(key)
        ring = self.ring
        if len(ring) < self.capacity:
            ring.append(key)
        else:  # full: the oldest id makes room
            self.ids.discard(ring[self.oldest])
            ring[self.oldest] = key
            self.oldest = (self.oldest + 1) % self.capacity
        return False


class Pacer:
    """``--speed N``: play N seconds of log time per wall-clock second."""

    def __init__(self, speed: float | None) -> None:
        self.speed = speed
        self.t0: float | None = None
        self.log0: float | None = None

    def wait(self, ts: float) -> None:
        if not self.speed:
            return
        t0, log0 = self.t0, self.log0
        if t0 is None or log0 is None:
            self.t0, self.log0 = time.monotonic(), ts
            return
        ahead = (ts - log0) / self.speed - (time.monotonic() - t0)
        if ahead > 0.005:
            time.sleep(ahead)


class Progress:
    def __init__(self, enabled: bool, stream=sys.stderr) -> None:
        self.enabled, self.stream = enabled, stream
        self.t0 = time.monotonic()
        self.next = self.t0 + 1.0

    def tick(self, n: int, ts: float) -> None:
        now = time.monotonic()
        if not self.enabled or now < self.next:
            return
        self.next = now + 1.0
        rate = n / (now - self.t0)
        when = time.strftime("%Y-%m-%d %H:%M", time.gmtime(ts))
        self.stream.write(f"\r  {n:>12,} events  {rate:>10,.0f}/s  log time {when}")
        self.stream.flush()

    def done(self) -> None:
        if self.enabled and time.monotonic() - self.t0 > 1.0:
            self.stream.write("\n")


class NotificationTap:
    """A ``replay`` output that keeps the notifications written to it, passing them on to
    ``out`` when given one (the report reads them back; ``tune`` scores them)."""

    def __init__(self, out: IO[bytes] | None = None) -> None:
        self.out = out
        self.lines: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.lines.append(data)
        if self.out is not None:
            self.out.write(data)

    def close(self) -> None:
        if self.out is not None:
            self.out.close()

    def notifications(self) -> list[dict]:
        return [orjson.loads(x) for x in b"".join(self.lines).splitlines() if x.strip()]


def merged_batches(paths: list[str], on_reject: RejectLog, summary: Summary) -> Iterator[list[Event]]:
    """Every file's events merged by event time (``gatewatch.merge``), in batches; requests
    seen twice are dropped (counted)."""
    deduper = Deduper()
    for batch in merge_by_time([file_chunks(p, on_reject) for p in paths]):
        kept = [ev for ev in batch if not deduper.duplicate(ev)]  # only requests are deduplicated
        summary.duplicates += len(batch) - len(kept)
        yield kept


def merged_events(paths: list[str], on_reject: RejectLog, summary: Summary) -> Iterator[Event]:
    """``merged_batches`` one event at a time."""
    for batch in merged_batches(paths, on_reject, summary):
        yield from batch


def replay(
    paths: Iterable[str],
    out: IO[bytes],
    config: Config | None = None,
    rejects: IO[bytes] | None = None,
    speed: float | None = None,
    progress: bool = False,
    engine: Engine | None = None,
    events: Iterable[Event] | None = None,
    jobs: int = 1,
) -> Summary:
    """Replay ``paths`` (or an already merged ``events`` stream of them) into ``out``.

    ``jobs`` > 1 reads the files in that many processes (``gatewatch.parallel``) while this one
    detects; a paced replay (``speed``) or an ``events`` stream is read here, in one process.
    """
    with fewer_collections():
        return _replay(paths, out, config, rejects, speed, progress, engine, events, jobs)


# Young-generation garbage collections every 10,000 allocations instead of 700: events and
# parsed records die young and form no cycles, and each collection walks every young object
# (1.5% fewer instructions in replay). Replay, its --jobs readers and the worker
# (streams/agents.py) all set it.
GC_THRESHOLDS: Final = (10_000, 50, 100)


class fewer_collections:
    """``GC_THRESHOLDS`` for the length of a replay, the process's own setting restored after."""

    def __enter__(self) -> None:
        self.saved = gc.get_threshold()
        gc.set_threshold(*GC_THRESHOLDS)

    def __exit__(self, *exc: object) -> None:
        gc.set_threshold(*self.saved)


def _replay(paths: Iterable[str], out: IO[bytes], config: Config | None, rejects: IO[bytes] | None,
            speed: float | None, progress: bool, engine: Engine | None, events: Iterable[Event] | None,
            jobs: int) -> Summary:
    paths = list(paths)
    summary = Summary(files=len(paths))
    engine = engine or Engine(config)
    on_reject = RejectLog(summary, rejects)
    bar = Progress(progress)
    t0 = time.perf_counter()

    def emit(notes: list[dict]) -> None:
        for note in notes:
            out.write(orjson.dumps(note) + b"\n")
        summary.notifications += len(notes)

    if jobs > 1 and events is None and not speed and paths:
        from gatewatch.parallel import groups_of, replay_parallel

        def on_late(kind: str, key: Sequence[str], minute: int, n: int) -> None:
            on_reject(TOO_LATE, "", 0, f"{n} events of {kind} {'/'.join(key)}",
                      f"minute {minute * STEP:.0f} is before the oldest minute kept ({engine.retention} min)", n)

        n, summary.duplicates, rejected, summary.readers_cpu = replay_parallel(
            groups_of(paths, jobs), engine, emit, rejects, on_late, bar.tick if progress else None)
        summary.rejected.update(rejected)
    else:
        batches = merged_batches(paths, on_reject, summary) if events is None else (events,)
        n = _replay_here(batches, engine, emit, on_reject, Pacer(speed), bar)
        emit(engine.finish())
    bar.done()
    summary.records = n + summary.duplicates - summary.rejected[TOO_LATE]
    summary.incidents = engine.incidents.total
    summary.elapsed = time.perf_counter() - t0
    return summary


def _replay_here(batches: Iterable[Iterable[Event]], engine: Engine, emit, on_reject: RejectLog, pacer: Pacer,
                 bar: Progress) -> int:
    """Event by event through ``engine.process``; returns the number of events."""
    n, late = 0, engine.late_dropped
    process, paced = engine.process, bool(pacer.speed)
    for batch in batches:
        for ev in batch:
            n += 1
            if n & 0x3FFF == 0:
                bar.tick(n, ev.ts)
            if paced:
                pacer.wait(ev.ts)
            notes = process(ev)
            if engine.late_dropped != late:  # older than the engine's retention: counted, not folded in
                late = engine.late_dropped
                on_reject(TOO_LATE, "", 0, f"{ev.source} {ev.kind} {ev.request_id or ev.trace_id}",
                          f"event time {ev.ts:.3f} is before the oldest minute kept ({engine.retention} min)")
            if notes:
                emit(notes)
    return n
