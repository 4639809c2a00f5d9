"""What the agents do, without Faust: one raw batch in → a partials message and rejects out;
partials messages in → notifications out. The agents in ``streams.agents`` only decode,
call these, and encode; so these are tested, and benchmarked, without a broker.

At-least-once: a raw batch may be ingested twice (a worker died before committing, or a
source resent it). A partials message carries the id ``(topic, partition, offset)`` of
its raw batch and the source's batch id; :class:`DetectStage` applies each at most once:
per raw partition it remembers the highest offset applied (a partition is read in
order, and a new owner restarts from the last committed offset, below that), and the
last 100,000 source batch ids (a source that resent a batch it was not sure of).
Both are part of the snapshot, so they survive a restart with the engine.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from connectors.formats import fold_batch
from connectors.recent import RecentKeys, SeenElsewhere
from models.engine import Engine
from models.events import Event, Rejected
from models.partials import ByCloseMinute
from models.redaction import redact
from streams.watermark import Watermark

__all__ = ["DetectStage", "IngestStage", "RawBatch", "ingest_batch", "partials_messages"]

RAW_KEEP = 2000  # bytes of a rejected record kept in the rejects topic


@dataclass(frozen=True, slots=True)
class RawBatch:
    topic: str
    partition: int
    offset: int
    value: bytes
    batch_id: str | None = None
    source: str | None = None


def ingest_batch(raw: RawBatch, lateness: float = 30.0, duplicate: Callable[[Event], bool] | None = None,
                 not_after: float | None = None) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Parse and pre-aggregate one raw batch: (the partials message, the rejects).

    ``duplicate(ev)``, asked of each request event, drops the ones already counted.

    An event stamped after ``not_after`` (the live service passes the wall clock plus a
    margin) is rejected ``future_timestamp``: one such outlier would move the watermark
    ahead and make every later event of every source "too late".

    Minute buckets go in ``partials``; the batch's meta (spend per team and day, reported
    spend and budgets, implied labels) goes in ``meta`` keyed by the minute whose close
    first counts it in replay (``models.partials.ByCloseMinute``), so the worker's engine takes
    it in at the same point of event time as replay's (:meth:`DetectStage.on_tick`).
    """
    folder = ByCloseMinute(lateness)
    records, rejected = fold_batch(raw.value, folder, not_after, duplicate)
    rejects = [_reject(raw, line, rej) for line, rej in rejected]
    msg = {"id": [raw.topic, raw.partition, raw.offset], "batch": raw.batch_id, "records": records,
           **folder.drain()}
    return msg, rejects


class IngestStage:
    """``ingest_batch`` with replay's request-id dedup (the LiteLLM callback and SpendLogs both
    carry a request). A request id is remembered with the raw message it came from, so the
    same message read again (at least once) is not taken for a duplicate of itself.

    The ids ingested before this stage existed (by another worker, or by this one before a
    restart) are not in its memory: :meth:`recall` puts back those of the raw messages just
    below where a partition's reading resumes (``streams.ingest.LookBack``).

    Live, the wall clock is the reference for time: an event more than ``max_ahead`` seconds
    ahead of it is rejected ``future_timestamp`` (replay, with no such reference, judges each
    file against its own events: ``models/clock.py``). ``max_ahead=None`` turns the check off.
    """

    def __init__(self, lateness: float = 30.0, capacity: int = 200_000, max_ahead: float | None = 900.0,
                 clock: Callable[[], float] = time.time) -> None:
        self.lateness, self.max_ahead, self.clock = lateness, max_ahead, clock
        self.requests = RecentKeys(capacity)
        self.duplicates = 0
        self.recalled = 0  # request ids put back in memory by ``recall``

    def ingest(self, raw: RawBatch) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        duplicate = SeenElsewhere(self.requests, _origin(raw))  # asked of requests only
        out = ingest_batch(raw, self.lateness, duplicate, self._not_after())
        self.duplicates += duplicate.count
        return out

    def recall(self, raw: RawBatch) -> int:
        """Remember the request ids of a raw message ingested before, with that message as their
        origin; count and emit nothing (the partials are thrown away). Parsed as :meth:`ingest`
        parses, so an id is recalled exactly when ingesting the message would have remembered it,
        and that message read again later is not a duplicate of itself. Returns the ids read."""
        origin, ids = _origin(raw), []

        def remember(ev: Event) -> bool:
            if ev.request_id:
                self.requests.seen_elsewhere(ev.request_id, origin)
                ids.append(ev.request_id)
            return True  # counted by whoever ingested the message: dropped here

        # The loop ``ingest_batch`` runs, without its partials message or reject records: both
        # would be thrown away.
        fold_batch(raw.value, ByCloseMinute(self.lateness), self._not_after(), remember)
        self.recalled += len(ids)
        return len(ids)

    def _not_after(self) -> float | None:
        return None if self.max_ahead is None else self.clock() + self.max_ahead


def partials_messages(value: bytes) -> list[dict[str, Any]]:
    """The partials messages in one value of the partials topic: a JSON list of them (the ingest
    sends a fetch's together), or one message alone (as workers before that sent them)."""
    decoded = orjson.loads(value)
    return decoded if type(decoded) is list else [decoded]


def _origin(raw: RawBatch) -> str:
    return f"{raw.topic}/{raw.partition}/{raw.offset}"


def _reject(raw: RawBatch, line: bytes, rej: Rejected) -> dict[str, Any]:
    return {"stage": "parse", "reason": rej.reason, "detail": redact(rej.detail), "source": raw.source,
            "topic": raw.topic, "partition": raw.partition, "offset": raw.offset,
            "raw": redact(line[:RAW_KEEP].decode("utf-8", "replace"))}


@dataclass
class DetectStage:
    """One engine, its watermark, and what has been applied. Picklable (it is the snapshot)."""

    engine: Engine
    watermark: Watermark
    applied: dict[str, int] = field(default_factory=dict)  # "topic/partition" -> highest offset
    batches: RecentKeys = field(default_factory=lambda: RecentKeys(100_000))
    events: int = 0  # events applied, each counted once
    duplicates: int = 0  # partials messages skipped as already applied
    start_ts: float | None = None  # the oldest event time seen before the engine started
    version: int = 0  # bumped by every change: what a snapshot covers
    meta: dict[int, list[dict]] = field(default_factory=dict)  # close key -> meta not yet in the engine
    next_offset: int | None = None  # the partials offset expected next (a gap means a lost read)

    @classmethod
    def new(cls, engine: Engine, idle_seconds: float) -> DetectStage:
        margin = engine.config.lateness + 60
        return cls(engine, Watermark(idle_seconds=idle_seconds, finish_margin=margin))

    def on_partials(self, msg: dict[str, Any], now: float) -> list[dict]:
        """Apply one partials message (unless already applied); returns notifications."""
        topic, partition, offset = msg["id"]
        source = f"{topic}/{partition}"
        if self._seen(source, offset, msg.get("batch")):
            self.duplicates += 1
            self.watermark.observe(source, None, now, msg.get("caught_up", True))
            return self.on_tick(now)
        self.applied[source] = offset
        self.version += 1
        if self.engine.max_ts is None and msg.get("min_ts") is not None:
            self.start_ts = min(self.start_ts or msg["min_ts"], msg["min_ts"])
        self.engine.apply_partials(msg["partials"])
        for key, meta in msg.get("meta", ()):
            self.meta.setdefault(key, []).append(meta)
        self.events += msg.get("events", 0)
        self.watermark.observe(source, msg.get("max_ts"), now, msg.get("caught_up", True))
        return self.on_tick(now)

    def on_tick(self, now: float) -> list[dict]:
        """Advance event time to the watermark; returns the notifications of closed minutes."""
        wm = self.watermark.value(now)
        if wm is None:
            return []
        if self.engine.max_ts is None:
            if self.start_ts is None:
                return []
            # The engine's clock starts at the first event time, as in replay (where the
            # first event starts it), not at the watermark: the minutes in between close.
            self.engine.advance(self.start_ts)
        if wm <= self.engine.max_ts:
            return []
        self.version += 1
        return self._advance(wm)

    def _advance(self, wm: float) -> list[dict]:
        return self.engine.advance_with_meta(wm, self.meta)

    def _seen(self, source: str, offset: int, batch_id: str | None) -> bool:
        if offset <= self.applied.get(source, -1):
            return True
        return self.batches.seen(batch_id)
