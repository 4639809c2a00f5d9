"""Replay: the service's detection pipeline over historic files, in one process.

Files are read concurrently and merged by event time (each is roughly ordered the way
its source delivers it), fed to the same ``models.engine.Engine`` the Faust worker
runs, and the notifications the service would have sent are written as NDJSON.
Rejected lines are counted by reason and, with ``--rejects``, kept with their reason.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import IO, Iterable, Iterator

import orjson

from connectors.files import iter_file
from gatewatch.merge import merge_by_time
from connectors.recent import RecentKeys
from models.config import Config
from models.engine import Engine
from models.events import REQUEST, Event


@dataclass
class Summary:
    files: int = 0
    records: int = 0  # events parsed (a LiteLLM array counts each of its items)
    rejected: Counter = field(default_factory=Counter)
    duplicates: int = 0
    notifications: int = 0
    incidents: int = 0
    elapsed: float = 0.0

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
        ]


class RejectLog:
    """Counts rejects by reason; with a file, keeps each one with its reason and origin."""

    def __init__(self, summary: Summary, out: IO[bytes] | None) -> None:
        self.summary, self.out = summary, out

    def __call__(self, reason: str, path: str, line_no: int, raw: bytes | str, detail: str = "") -> None:
        self.summary.rejected[reason] += 1
        if self.out is not None:
            if isinstance(raw, bytes):
                raw = raw.decode("utf-8", "replace")
            rec = {"reason": reason, "detail": detail, "file": path, "line": line_no, "raw": raw[:2000]}
            self.out.write(orjson.dumps(rec) + b"\n")


def file_chunks(path: str, on_reject: RejectLog, size: int = 2048) -> Iterator[list[Event]]:
    """The events of one file in file order, in lists of about ``size``; its rejects go to
    ``on_reject`` as they are read."""
    chunk: list[Event] = []
    for item in iter_file(path):
        if type(item) is list:
            chunk += item
            if len(chunk) >= size:
                yield chunk
                chunk = []
        else:
            on_reject(item.reason, item.file, item.line_no, item.raw_prefix, item.detail)
    if chunk:
        yield chunk


class Deduper:
    """Drops a request seen twice (the callback and SpendLogs both carry it)."""

    def __init__(self, capacity: int = 200_000) -> None:
        self.recent = RecentKeys(capacity)

    def duplicate(self, ev: Event) -> bool:
        return ev.kind == REQUEST and self.recent.seen(ev.request_id)


class Pacer:
    """``--speed N``: play N seconds of log time per wall-clock second."""

    def __init__(self, speed: float | None) -> None:
        self.speed, self.t0, self.log0 = speed, None, None

    def wait(self, ts: float) -> None:
        if not self.speed:
            return
        if self.t0 is None:
            self.t0, self.log0 = time.monotonic(), ts
            return
        ahead = (ts - self.log0) / self.speed - (time.monotonic() - self.t0)
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


def replay(
    paths: Iterable[str],
    out: IO[bytes],
    config: Config | None = None,
    rejects: IO[bytes] | None = None,
    speed: float | None = None,
    progress: bool = False,
    engine: Engine | None = None,
) -> Summary:
    paths = list(paths)
    summary = Summary(files=len(paths))
    engine = engine or Engine(config)
    on_reject = RejectLog(summary, rejects)
    merged = merge_by_time([file_chunks(p, on_reject) for p in paths])
    dedup, pacer, bar = Deduper(), Pacer(speed), Progress(progress)
    t0 = time.perf_counter()

    def emit(notes: list[dict]) -> None:
        for note in notes:
            out.write(orjson.dumps(note) + b"\n")
        summary.notifications += len(notes)

    n = 0
    process, duplicate, paced = engine.process, dedup.duplicate, bool(speed)
    for batch in merged:
        for ev in batch:
            if ev.kind == REQUEST and duplicate(ev):  # only requests are deduplicated
                summary.duplicates += 1
                continue
            n += 1
            if n & 0x3FFF == 0:
                bar.tick(n, ev.ts)
            if paced:
                pacer.wait(ev.ts)
            notes = process(ev)
            if notes:
                emit(notes)
    emit(engine.finish())
    bar.done()
    summary.records = n + summary.duplicates
    summary.incidents = engine.incidents.total
    summary.elapsed = time.perf_counter() - t0
    return summary
