"""``replay --jobs N``: the files read by N processes, detection in this one.

The Kafka service splits the work in two: ingest (parse each line, fold it into per-minute
partial buckets) runs on as many workers as there are raw partitions, detection (close
minutes, judge series, group incidents) runs once on what they ship. Replay on several
cores is the same split, with pipes instead of topics:

* each *reader* process replays a group of the files exactly as ``replay`` reads them
  (parse, each file's clock, merge by event time, request-id dedup), folds the events into
  ``models.partials.ByCloseMinute`` and sends its partials messages every few thousand events;
* this process applies them to the engine (``Engine.apply_partials``) and advances event
  time to the *watermark*: the oldest newest-event-time over the readers still reading, so a
  minute closes only once every reader has sent everything before it (``Engine.advance_with_meta``,
  as the worker's detect stage does).

The files that carry LLM requests (LiteLLM callback payloads, SpendLogs rows) are read by one
reader, so a request present in both is counted once, as in a sequential replay; the other
files are spread over the readers by size.

Notifications are those of a sequential replay, but for the order of floating-point additions
(a sum of costs may differ in its last digits) and for an event later than the allowed
lateness, which is counted if its reader sent it before its minute closed (a sequential replay
drops it as late when another file's events have moved past it first).
"""

from __future__ import annotations

import gc
import io
import multiprocessing
import os
import resource
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import IO, Callable

from connectors.files import open_input
from connectors.formats import route
from models.engine import Engine
from models.partials import ByCloseMinute
from models.windows import STEP

__all__ = ["groups_of", "replay_parallel"]

CHUNK_EVENTS = 8192  # events folded per message a reader sends
AHEAD = 900.0  # a reader this far (log seconds) ahead of the watermark waits: memory stays bounded


def family_of(path: str) -> str:
    """The source family of a file, from its first record (``connectors.formats.route``)."""
    try:
        with open_input(path) as f:
            head = f.read(64 * 1024)
    except OSError:
        return "unreadable"
    line = next((ln for ln in head.splitlines() if ln.strip()), b"")
    return route(line) if line else "empty"


def groups_of(paths: list[str], jobs: int) -> list[list[str]]:
    """``paths`` split into at most ``jobs`` groups: the request files together, the rest by size
    (largest first onto the lightest group); within a group, files keep their order."""
    requests = [p for p in paths if family_of(p) == "litellm"]
    units = ([requests] if requests else []) + [[p] for p in paths if p not in requests]
    size = {p: os.path.getsize(p) for p in paths}
    units.sort(key=lambda unit: -sum(size[p] for p in unit))
    groups: list[list[str]] = [[] for _ in range(min(jobs, len(units)))]
    for unit in units:
        min(groups, key=lambda g: sum(size[p] for p in g)).extend(unit)
    order = {p: i for i, p in enumerate(paths)}
    return [sorted(g, key=order.__getitem__) for g in groups if g]


def _read(paths: list[str], lateness: float, keep_rejects: bool, conn: Connection, chunk: int) -> None:
    """A reader process: ``paths`` replayed into partials messages on ``conn``."""
    from gatewatch.replay import GC_THRESHOLDS, RejectLog, Summary, merged_batches  # it imports this module

    try:
        gc.set_threshold(*GC_THRESHOLDS)  # for the life of this process
        summary = Summary(files=len(paths))
        kept = io.BytesIO() if keep_rejects else None
        on_reject = RejectLog(summary, kept)
        folder = ByCloseMinute(lateness)
        add, events, since = folder.add, 0, 0
        for batch in merged_batches(paths, on_reject, summary):
            for ev in batch:
                add(ev)
            events += len(batch)
            since += len(batch)
            if since >= chunk:
                conn.send(("parts", folder.drain(), _take(kept), events))
                since = 0
        usage = resource.getrusage(resource.RUSAGE_SELF)
        conn.send(("end", folder.drain(), _take(kept), events, summary.duplicates, summary.rejected,
                   usage.ru_utime + usage.ru_stime))
    except BaseException as error:  # noqa: BLE001 - whatever stops a reader is raised by the replay
        conn.send(("error", error))
    finally:
        conn.close()


def _take(buf: io.BytesIO | None) -> bytes:
    if buf is None:
        return b""
    data = buf.getvalue()
    buf.seek(0)
    buf.truncate()
    return data


@dataclass
class _Reader:
    process: multiprocessing.process.BaseProcess
    conn: Connection
    reading: bool = True
    max_ts: float | None = None  # newest event time it has sent (None: nothing yet)
    min_ts: float | None = None
    events: int = 0
    duplicates: int = 0
    rejected: Counter = field(default_factory=Counter)
    cpu: float = 0.0  # its CPU seconds, when it has ended


def replay_parallel(groups: list[list[str]], engine: Engine, emit: Callable[[list[dict]], None],
                    rejects: IO[bytes] | None, on_late: Callable[[str, Sequence[str], int, int], None],
                    tick: Callable[[int, float], None] | None = None,
                    chunk: int | None = None) -> tuple[int, int, Counter, list[float]]:
    """Replay ``groups`` (one reader process each) into ``engine``; notifications go to ``emit``,
    the readers' rejected lines to ``rejects``, buckets older than the engine keeps to ``on_late``.

    Returns (events, duplicates, rejected by reason) over all readers and each reader's CPU
    seconds; a reader's error is raised.
    """
    ctx = multiprocessing.get_context()  # Python's default: fork on Linux before 3.14
    chunk = chunk or CHUNK_EVENTS
    lateness = engine.config.lateness
    readers: list[_Reader] = []
    meta: dict[int, list[dict]] = {}
    try:
        for paths in groups:
            recv, send = ctx.Pipe(duplex=False)
            proc = ctx.Process(target=_read, args=(paths, lateness, rejects is not None, send, chunk),
                               name="gatewatch-replay-reader", daemon=True)
            proc.start()
            send.close()
            readers.append(_Reader(proc, recv))
        wm: float | None = None
        while any(r.reading for r in readers):
            listen = [r.conn for r in readers if r.reading and (
                wm is None or r.max_ts is None or r.max_ts <= wm + AHEAD)]
            for conn in wait(listen):
                reader = next(r for r in readers if r.conn is conn)
                _receive(reader, engine, meta, rejects, on_late)
            wm = _watermark(readers)
            if wm is not None:
                _start(engine, readers)
                emit(engine.advance_with_meta(wm, meta))
                if tick is not None:
                    tick(sum(r.events for r in readers), engine.max_ts or 0.0)
        newest = max((r.max_ts for r in readers if r.max_ts is not None), default=None)
        if newest is not None:  # the end of input: what Engine.finish() does
            _start(engine, readers)
            emit(engine.advance_with_meta(newest + lateness + STEP, meta))
    finally:
        for r in readers:
            if r.process.is_alive():
                r.process.terminate()
            r.process.join()
            r.conn.close()
    rejected: Counter = Counter()
    for r in readers:
        rejected.update(r.rejected)
    return (sum(r.events for r in readers), sum(r.duplicates for r in readers), rejected,
            [r.cpu for r in readers])


def _receive(reader: _Reader, engine: Engine, meta: dict[int, list[dict]], rejects: IO[bytes] | None,
             on_late: Callable[[str, Sequence[str], int, int], None]) -> None:
    try:
        msg = reader.conn.recv()
    except EOFError:
        raise RuntimeError(f"replay reader {reader.process.pid} ended without a word "
                           f"(exit code {reader.process.exitcode})") from None
    if msg[0] == "error":
        raise msg[1]
    folded, kept, reader.events = msg[1], msg[2], msg[3]
    for kind, key, minute, n in engine.apply_partials(folded["partials"]):
        on_late(kind, key, minute, n)
    for key, part in folded["meta"]:
        meta.setdefault(key, []).append(part)
    if folded["max_ts"] is not None:
        reader.max_ts = max(reader.max_ts or folded["max_ts"], folded["max_ts"])
    if folded["min_ts"] is not None:
        reader.min_ts = min(reader.min_ts or folded["min_ts"], folded["min_ts"])
    if kept and rejects is not None:
        rejects.write(kept)
    if msg[0] == "end":
        reader.reading = False
        reader.duplicates, reader.rejected, reader.cpu = msg[4], msg[5], msg[6]


def _watermark(readers: list[_Reader]) -> float | None:
    """The oldest newest-event-time over the readers still reading; None until each has sent one."""
    times = [r.max_ts for r in readers if r.reading]
    if not times or None in times:
        return None
    return min(times)


def _start(engine: Engine, readers: list[_Reader]) -> None:
    """Start the engine's clock at the oldest event time, as the first event of a replay does."""
    if engine.max_ts is None:
        first = min((r.min_ts for r in readers if r.min_ts is not None), default=None)
        if first is not None:
            engine.advance(first)
