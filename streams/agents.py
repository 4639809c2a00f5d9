"""The agents: thin (decode → ``streams.stages`` / ``models`` → encode).

``ingest``  (not an agent: ``streams.ingest.IngestLoop`` on its own consumer group, see there
            why) raw batches → partials (one message per batch, a fetch's sent together as one
            JSON list) and rejects; N workers split the raw partitions; a raw offset is
            committed only once its partials are stored.
``detect``  partials → notifications; one ``Engine`` on the one partials partition. Its
            events are acked only once a snapshot covers them, so a restart resumes from
            the snapshot and the messages after it are re-read (ids already applied are
            skipped); notifications re-sent in that case carry the same ``incident:seq``.
``deliver`` notifications → sinks through the durable outbox (``open_delivery``); keys
            already delivered (by any worker) are kept in a table and skipped.

A timer sends a ``tick`` to the partials topic every ``tick_seconds``, so the detect agent
advances event time (idle inputs, see ``streams.watermark``) inside its own stream, the
only place where its table may be written.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import faust
import orjson
from prometheus_client import Counter, Gauge

from connectors.delivery import idempotency_key
from connectors.kafka import raw_topic, read_range
from gatewatch.commands.deliver import open_delivery
from gatewatch.config import load_config
from gatewatch.replay import GC_THRESHOLDS
from models.pipeline import build_engine
from streams.ingest import IngestLoop, LookBack
from streams.snapshot import read_snapshot, write_snapshot
from streams.stages import DetectStage, IngestStage, partials_messages
from streams.topics import topic_names

__all__ = ["WorkerContext", "register"]

log = logging.getLogger("gatewatch.worker")
TICK = b'{"tick":true}'

_BATCHES = Counter("gatewatch_worker_batches", "raw batches ingested")
_RECORDS_IN = Counter("gatewatch_worker_records_in", "raw records read (ingested or rejected)")
_RECORDS_OUT = Counter("gatewatch_worker_records_out", "events pre-aggregated into partials")
_LAG = Gauge("gatewatch_worker_consumer_lag", "raw messages not yet ingested", ["topic", "partition"])
_OPEN = Gauge("gatewatch_worker_open_incidents", "incidents open in the detect stage")
_DETECTORS = Gauge("gatewatch_worker_detectors", "online detectors (series x metric) in the engine")
_SINK_FAILED = Counter("gatewatch_worker_sink_failures", "notifications a sink refused for good", ["sink"])
_GAPS = Counter("gatewatch_worker_partials_gaps", "partials offsets skipped by the consumer and read again")
_EVENTS = Counter("gatewatch_worker_events", "events applied by detection (each once)")
_REJECTED = Counter("gatewatch_worker_rejected", "records rejected", ["stage", "reason"])
_DUPLICATES = Counter("gatewatch_worker_duplicates", "messages skipped as already applied", ["stage"])
_NOTIFICATIONS = Counter("gatewatch_worker_notifications", "notifications produced")
_DELIVERED = Counter("gatewatch_worker_delivered", "notifications handed to the outbox")
_WATERMARK = Gauge("gatewatch_worker_watermark_seconds", "event-time watermark (epoch seconds)")
_SNAPSHOT = Gauge("gatewatch_worker_snapshot_bytes", "size of the last engine snapshot")


@dataclass
class WorkerContext:
    """What the agents of one app share: settings, the detect stage, counters for /health."""

    settings: Any
    config_raw: dict | None = None
    stage: DetectStage | None = None
    pending: list = field(default_factory=list)  # detect events not yet covered by a snapshot
    last_snapshot: float = 0.0
    dirty: bool = False  # the stage changed since the last snapshot
    clock: Any = time.monotonic  # wall time for idle inputs and snapshot intervals
    app: Any = None
    topics: dict[str, Any] = field(default_factory=dict)
    tables: dict[str, Any] = field(default_factory=dict)
    ingest: IngestLoop | None = None
    counts: dict[str, int] = field(default_factory=lambda: {
        "batches": 0, "events_ingested": 0, "rejected": 0, "request_duplicates": 0, "notifications": 0,
        "delivered": 0, "delivery_duplicates": 0, "sink_failures": 0, "snapshots": 0, "restored": 0,
        "partials_gaps": 0, "request_ids_recalled": 0})

    def new_stage(self) -> DetectStage:
        engine = build_engine(load_config(self.settings.config), no_models=not self.settings.models)
        return DetectStage.new(engine, self.settings.idle_seconds)

    def health(self) -> dict[str, Any]:
        stage = self.stage
        detect = None
        if stage is not None:
            detect = {"events": stage.events, "duplicates": stage.duplicates,
                      "engine_events": stage.engine.events, "closed_minute": stage.engine.closed_minute,
                      "watermark": stage.engine.max_ts, "incidents": stage.engine.incidents.total,
                      "open_incidents": len(stage.engine.incidents.open), "detectors": _detector_count(stage),
                      "inputs": len(stage.watermark.inputs)}
        lag = self.ingest.lag() if self.ingest else {}
        for tp, n in lag.items():
            topic, partition = tp.rsplit("/", 1)
            _LAG.labels(topic, partition).set(n)
        return {"ok": True, **self.counts, "assigned": self.assigned(), "lag": lag, "detect": detect}

    def assigned(self) -> list[str]:
        """The raw and partials partitions this worker reads now (tests wait on rebalances)."""
        app = getattr(self, "app", None)
        try:
            tps = app.consumer.assignment() if app is not None else ()
        except Exception:  # consumer not started yet
            tps = ()
        prefix = f"{self.settings.topic_prefix}."
        mine = [f"{tp.topic}/{tp.partition}" for tp in tps if tp.topic.startswith(prefix)]
        return sorted(mine + (self.ingest.assignment() if self.ingest else []))

    def ingested(self, msg: dict, rejected: list[dict]) -> None:
        """One raw message's partials and rejects are stored: count them."""
        for r in rejected:
            _REJECTED.labels(r["stage"], r["reason"]).inc()
        self.counts["batches"] += 1
        self.counts["events_ingested"] += msg["events"]
        self.counts["rejected"] += len(rejected)
        if self.ingest is not None:
            self.counts["request_duplicates"] = self.ingest.stage.duplicates
            self.counts["request_ids_recalled"] = self.ingest.stage.recalled
        _BATCHES.inc()
        _RECORDS_IN.inc(msg["records"])
        _RECORDS_OUT.inc(msg["events"])


def _tune_gc() -> None:
    """What the app holds once started (Faust, the config, the engine) never becomes garbage:
    ``gc.freeze`` keeps the collector from walking it again and again; parsing allocates a
    few objects per line, so young collections run less often (measured: ~4% fewer
    instructions in ingest + detect, cachegrind)."""
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def _lookback(settings: Any) -> LookBack:
    """Only raw.litellm is read back: the one raw topic whose records are requests, each sent to
    the partition of its id by both LiteLLM sources (``connectors.kafka.partition_for``)."""
    return LookBack(settings.dedup_lookback_seconds, settings.dedup_lookback_messages,
                    frozenset({raw_topic("litellm", settings.topic_prefix)}))


def _detector_count(stage: DetectStage) -> int:
    return sum(len(getattr(d, "tracks", ())) for d in stage.engine.extra_detectors)


def register(app: faust.App, settings: Any, config_raw: dict | None = None) -> WorkerContext:
    """Declare topics, tables, agents, timer and pages on ``app``; returns the shared context."""
    ctx = WorkerContext(settings, config_raw)
    names = topic_names(settings.topic_prefix)
    raw = dict(key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
    # internal=True: Faust creates them with these partition counts at start (a broker
    # that auto-creates topics on first produce would pick its own default).
    partials = app.topic(names.partials, partitions=1, internal=True, **raw)
    notifications = app.topic(names.notifications, partitions=1, internal=True, **raw)
    rejects = app.topic(names.rejects, partitions=1, internal=True, **raw)
    # JSON values (the app's default codec, which changelog recovery uses).
    snapshots = app.Table("engine-snapshot", partitions=1)
    delivered = app.Table("delivered", partitions=1)
    # Looked up through ctx at call time, so a test can swap a channel or a table for a fake.
    ctx.topics = {"partials": partials, "notifications": notifications, "rejects": rejects}
    ctx.tables = {"snapshots": snapshots, "delivered": delivered}
    app.gatewatch = ctx  # type: ignore[attr-defined]
    ctx.app = app

    @app.task
    async def ingest() -> None:
        _tune_gc()
        for topic in (partials, rejects):  # with their partition counts, before the first send
            await topic.maybe_declare()
        ctx.ingest = IngestLoop(
            settings.brokers, names.raw, f"{app.conf.id}-ingest", names.partials, names.rejects,
            IngestStage(load_config(settings.config).lateness), session_timeout=settings.session_timeout,
            on_done=ctx.ingested, lookback=_lookback(settings))
        ctx.ingest.set_detecting(any(tp.endswith(f"{names.partials}/0") for tp in ctx.assigned()))
        await ctx.ingest.run()

    @app.agent(partials, name="detect")
    async def detect(stream: faust.StreamT) -> None:
        async for event in stream.noack().events():
            now = ctx.clock()
            if ctx.stage is None:
                _restore(ctx, ctx.tables["snapshots"], now)
            stage = ctx.stage
            missed = await _in_order(ctx, event)
            if missed is None:
                continue
            ctx.pending.append(event)
            before, events = stage.version, stage.events
            notes = [n for value in (*missed, event.value) for n in _apply(stage, value, now)]
            ctx.dirty = ctx.dirty or stage.version != before
            _EVENTS.inc(stage.events - events)
            for n in notes:
                await ctx.topics["notifications"].send(key=str(n["incident"]).encode(), value=orjson.dumps(n))
            ctx.counts["notifications"] += len(notes)
            _NOTIFICATIONS.inc(len(notes))
            _OPEN.set(len(stage.engine.incidents.open))
            _DETECTORS.set(_detector_count(stage))
            if stage.engine.max_ts is not None:
                _WATERMARK.set(stage.engine.max_ts)
            if not ctx.dirty:
                _ack(ctx)  # nothing changed since the last snapshot: these need no replay
            elif now - ctx.last_snapshot >= settings.snapshot_seconds:
                _snapshot(ctx, ctx.tables["snapshots"], now)

    @app.agent(notifications, name="deliver")
    async def deliver(stream: faust.StreamT) -> None:
        state_dir = str(Path(settings.state_dir) / "delivery")
        async with open_delivery(settings, state_dir, config_raw) as delivery:
            lock = asyncio.Lock()
            retry = asyncio.ensure_future(_retry_pending(ctx, delivery, lock))
            try:
                async for value in stream:
                    n = orjson.loads(value)
                    key = idempotency_key(n)
                    if ctx.tables["delivered"].get(key):
                        ctx.counts["delivery_duplicates"] += 1
                        _DUPLICATES.labels("deliver").inc()
                        continue
                    decision = delivery.submit(n)
                    async with lock:
                        _count_failures(ctx, await delivery.drain())
                    ctx.tables["delivered"][key] = type(decision).__name__.lower()
                    ctx.counts["delivered"] += 1
                    _DELIVERED.inc()
            finally:
                retry.cancel()

    @app.timer(settings.tick_seconds)
    async def tick() -> None:
        try:
            await ctx.topics["partials"].send(value=TICK)
        except Exception as exc:  # a timer that raises is not called again: keep ticking
            log.warning("tick not sent", extra={"kv": {"error": repr(exc)}})

    @app.page("/health")
    async def health(web: Any, request: Any) -> Any:
        return web.json(ctx.health())

    @app.on_partitions_revoked.connect
    async def on_revoked(sender: Any, revoked: Any, **kwargs: Any) -> None:
        if any(tp.topic == names.partials for tp in revoked):
            # Another worker may own detection next; ours restores from the table if it
            # gets the partition back (its snapshot may be newer than our memory).
            ctx.stage, ctx.pending, ctx.dirty = None, [], False

    @app.on_partitions_assigned.connect
    async def on_assigned(sender: Any, assigned: Any, **kwargs: Any) -> None:
        # (Faust revokes and assigns everything on each rebalance: ``assigned`` is all of it.)
        if ctx.ingest is not None:  # the detecting worker takes a smaller raw share
            ctx.ingest.set_detecting(any(tp.topic == names.partials for tp in assigned))

    try:
        from faust.sensors.prometheus import setup_prometheus_sensors

        # Faust's own metrics (messages, commits, rebalances, lag) next to ours, on /metrics.
        setup_prometheus_sensors(app, name_prefix="gatewatch_faust")
    except ValueError:  # a second app in one process (tests): the metrics are registered once
        log.debug("prometheus sensors already registered in this process")
    return ctx


async def _in_order(ctx: WorkerContext, event: Any) -> list[bytes] | None:
    """The partials values to apply before ``event``'s own; ``None``: skip ``event``.

    The partials partition is read in order, so a jump past the expected offset means the
    consumer lost messages (Faust can drop one it had fetched around a rebalance, and still
    commit past it): they are read again, without the group, and applied first. A message
    below the expected offset was applied already (a re-read); it joins the pending events,
    acked once a snapshot covers them. Re-applying is harmless either way: partials are
    deduplicated by raw id and ticks change nothing that was not already changed.
    """
    stage, message = ctx.stage, event.message
    expected, offset = stage.next_offset, message.offset
    if expected is not None and offset < expected:
        ctx.pending.append(event)
        return None
    stage.next_offset = offset + 1
    if expected is None or offset == expected:
        return []
    ctx.counts["partials_gaps"] += 1
    _GAPS.inc()
    log.warning("partials offset gap; reading it again", extra={"kv": {"expected": expected, "got": offset}})
    missed = await read_range(ctx.settings.brokers, message.topic, message.partition, expected, offset)
    if len(missed) != offset - expected:  # retention removed them, or the broker is gone
        log.error("partials lost", extra={"kv": {"expected": offset - expected, "read": len(missed)}})
    return [value for _, value in missed]


def _apply(stage: DetectStage, value: bytes, now: float) -> list[dict]:
    if value == TICK:
        return stage.on_tick(now)
    return [n for msg in partials_messages(value) for n in stage.on_partials(msg, now)]


def _count_failures(ctx: WorkerContext, report: Any) -> None:
    for sink, n in (getattr(report, "failed", None) or {}).items():
        if n:
            _SINK_FAILED.labels(sink).inc(n)
            ctx.counts["sink_failures"] += n


def _restore(ctx: WorkerContext, table: Any, now: float) -> None:
    try:
        stage = read_snapshot(table)
    except Exception:  # never crash-loop on a bad snapshot: start afresh, loudly
        log.exception("engine snapshot unreadable; starting a new engine")
        stage = None
    if stage is None:
        ctx.stage = ctx.new_stage()
        return
    stage.watermark.restarted(now)
    ctx.stage = stage
    ctx.counts["restored"] += 1
    log.info("engine restored", extra={"kv": {"events": stage.events, "closed_minute": stage.engine.closed_minute}})


def _snapshot(ctx: WorkerContext, table: Any, now: float) -> None:
    """Write the stage to the table, then ack the events it covers (commit follows)."""
    size = write_snapshot(table, ctx.stage)
    _SNAPSHOT.set(size)
    _ack(ctx)
    ctx.last_snapshot, ctx.dirty = now, False
    ctx.counts["snapshots"] += 1


def _ack(ctx: WorkerContext) -> None:
    for event in ctx.pending:
        event.ack()
    ctx.pending = []


async def _retry_pending(ctx: WorkerContext, delivery: Any, lock: asyncio.Lock, every: float = 5.0) -> None:
    """Sinks that failed keep their backlog in the outbox; retry it even when nothing new comes."""
    while True:
        await asyncio.sleep(every)
        if any(delivery.outbox.pending(s.name) for s in delivery.sinks):
            async with lock:
                _count_failures(ctx, await delivery.drain())
