"""The ingest loop: raw topics → partials, on its own aiokafka consumer group.

Why not a Faust agent: Faust acks a raw event when the agent moves on and commits acked
offsets every second, but around a rebalance it can drop a message it had fetched and
still commit past it (its read offset moves on, and a gap at the committed offset is not
seen as one). With two workers and one SIGKILLed, about one raw batch in fifty of the dead
worker's partitions was never ingested. Here the rule is plain: a raw offset is committed
only after the partials (and rejects) produced from every message below it were
acknowledged by the broker (acks=all). A failed send seeks back and redoes the batch; a
message read twice (a crash between the broker's ack and the commit, or a rebalance) is
skipped downstream by its raw id (``DetectStage``). At least once in, exactly once counted.

One ``getmany`` is one unit of work: parse every message (``streams.stages.IngestStage``),
send their partials messages (together, as one JSON list, up to ``PARTIALS_BYTES`` and
``PARTIALS_SECONDS``), wait for all the acks (while the next fetch is parsed), commit.
Per-record work stays in ``models/`` and the parsers; what is left here is per raw message
(hundreds of records).

Cross-source request dedup (``IngestStage``) remembers ids in this process only. Before the
first message it ingests from a partition it did not read up to there itself (at start, or
taken over in a rebalance), the loop reads that partition's tail just below it again
(:class:`LookBack`, a consumer of no group) and recalls its request ids: the second copy of a
request whose first was counted by the previous owner is then dropped, as it would have been
there. Kafka is the only record of what was ingested; nothing else is stored or coordinated.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError

from connectors.kafka import HEADER_BATCH, HEADER_SOURCE, read_back
from streams.assignor import weighted_assignor
from streams.stages import IngestStage, RawBatch

__all__ = ["IngestLoop", "LookBack"]

log = logging.getLogger("gatewatch.worker.ingest")
MAX_FETCH = 8 << 20  # a raw batch is <= 256 KB; a fetch carries many
# A broker that answers a long poll only when it expires (Tansu does) adds up to this much
# latency per hop; Kafka answers as soon as data arrives.
FETCH_WAIT_MS = 100
# Raw messages per unit of work (<= 500 records each): small enough that parsing one fetch
# does not keep the detect agent and /health off the event loop for long.
FETCH_RECORDS = 32
STOP_SECONDS = 5.0
# The partials messages of one fetch go out as one Kafka message (a JSON list), split where it
# would pass this size: under the 1 MB a Kafka broker takes by default (``message.max.bytes``),
# or where the first of them has waited this long for the others to be parsed (a fetch of a
# backlog: up to ``FETCH_RECORDS`` raw messages). One Kafka message per raw message cost a
# producer send and a Faust event each.
PARTIALS_BYTES = 512 << 10
PARTIALS_SECONDS = 0.05


@dataclass(frozen=True, slots=True)
class LookBack:
    """How much of a raw partition is read again, below the first message ingested from it after
    a takeover, to recall the request ids counted there: ``seconds`` before that message's
    timestamp, at most ``messages`` messages, only on ``topics`` (``None``: every raw topic).

    300 s: the SpendLogs tailer sends a row at most its overlap (120 s) plus a poll (5 s) after
    the newest row it has seen (a later row is never sent), and the callback trails the request
    by LiteLLM's batch flush (seconds), so the copies of a request lie well within 300 s of each
    other; typically tens of seconds. ``messages`` bounds the cost when timestamps are missing or
    a window is unusually dense (2,000: ~6x what 300 s hold at a callback post a second and a
    SpendLogs poll every 5 s per partition). ``GATEWATCH_DEDUP_LOOKBACK_SECONDS`` /
    ``_MESSAGES``; 0 turns the look-back off.
    """

    seconds: float = 300.0
    messages: int = 2000
    topics: frozenset[str] | None = None

    def covers(self, topic: str) -> bool:
        return self.seconds > 0 and self.messages > 0 and (self.topics is None or topic in self.topics)


@dataclass(slots=True)
class _Sent:
    """One fetch, parsed and handed to the producer: what to commit once ``futures`` resolve."""

    offsets: dict[TopicPartition, tuple[int, int]]  # first offset, offset after the last
    futures: list[asyncio.Future] = field(default_factory=list)
    done: list[tuple[dict, list[dict]]] = field(default_factory=list)


class IngestLoop:
    """One consumer of the raw topics (a member of the ``<app>-ingest`` group) and one producer.

    ``on_done(msg, rejects)`` is called once per raw message after its output was
    acknowledged (counters, metrics). ``assignment()`` and ``lag()`` feed ``/health``.
    ``request_timeout``: how long a partials send waits for the broker's ack before it
    counts as failed (aiokafka's default, 40 s). ``lookback``: see :class:`LookBack`.
    """

    def __init__(self, brokers: list[str], topics: tuple[str, ...], group: str, partials: str, rejects: str,
                 stage: IngestStage, *, session_timeout: float = 30.0, request_timeout: float = 40.0,
                 on_done: Callable[[dict, list[dict]], None] | None = None, lookback: LookBack = LookBack(),
                 ) -> None:
        self.topics, self.partials, self.rejects, self.stage = topics, partials, rejects, stage
        self.on_done = on_done or (lambda msg, rejects: None)
        session_ms = int(session_timeout * 1000)
        self._assign_state = {"detecting": False}  # what this member tells the group's leader
        self.consumer = AIOKafkaConsumer(
            *topics, bootstrap_servers=brokers, group_id=group, enable_auto_commit=False,
            auto_offset_reset="earliest", max_partition_fetch_bytes=MAX_FETCH, fetch_max_bytes=4 * MAX_FETCH,
            fetch_max_wait_ms=FETCH_WAIT_MS,
            session_timeout_ms=session_ms, heartbeat_interval_ms=max(session_ms // 10, 500),
            rebalance_timeout_ms=session_ms, client_id=f"{group}-consumer",
            partition_assignment_strategy=(weighted_assignor(self._assign_state),))
        self.producer = AIOKafkaProducer(bootstrap_servers=brokers, acks="all", enable_idempotence=False,
                                         linger_ms=2, max_request_size=MAX_FETCH, client_id=f"{group}-producer",
                                         request_timeout_ms=int(request_timeout * 1000))
        # Reads look-backs (``_recall``); of no group, so it takes no part in the rebalances.
        self.reader = AIOKafkaConsumer(
            bootstrap_servers=brokers, group_id=None, enable_auto_commit=False, auto_offset_reset="earliest",
            max_partition_fetch_bytes=MAX_FETCH, fetch_max_wait_ms=FETCH_WAIT_MS,
            client_id=f"{group}-lookback")
        self.lookback = lookback
        self.retry_seconds = 1.0
        self._started = False
        self._position: dict[TopicPartition, int] = {}  # next offset to ingest, per partition read
        self._read_to: dict[TopicPartition, int] = {}  # offset after the last message ingested, per partition

    async def run(self) -> None:
        """Consume until cancelled; stops the clients (what is not committed is read again).

        Pipelined one deep: fetch ``n + 1`` is parsed and sent while the broker acknowledges
        fetch ``n``; ``n`` is committed once its acks are in, before ``n + 1`` is settled.
        """
        await self.producer.start()
        await self.reader.start()
        await self.consumer.start()
        self._started = True
        in_flight: _Sent | None = None
        try:
            while True:
                records = await self.consumer.getmany(timeout_ms=200, max_records=FETCH_RECORDS)
                sent = await self._send(records) if records else None
                if in_flight is not None and not await self._settle(in_flight, sent):
                    sent = None  # both redone from the first offsets of ``in_flight``
                in_flight = sent
        finally:
            self._started = False
            if in_flight is not None:  # a graceful stop commits what the broker acknowledged
                with contextlib.suppress(Exception, asyncio.CancelledError):
                    await asyncio.wait_for(self._settle(in_flight, None), STOP_SECONDS)
            await asyncio.gather(self.consumer.stop(), self.producer.stop(), self.reader.stop(),
                                 return_exceptions=True)

    async def _send(self, records: dict[TopicPartition, list[Any]]) -> _Sent:
        sent = _Sent({tp: (messages[0].offset, messages[-1].offset + 1) for tp, messages in records.items()})
        parts: list[bytes] = []  # the fetch's partials messages, encoded, not yet sent
        size, since = 0, 0.0
        for tp, messages in records.items():
            if self._taken_over(tp, messages[0].offset):
                await self._recall(tp, messages[0])
            self._read_to[tp] = messages[-1].offset + 1
            high = self.consumer.highwater(tp)
            for m in messages:
                msg, rejected = self.stage.ingest(_raw_batch(tp, m))
                # The watermark may skip a quiet input, never one with more to read.
                msg["caught_up"] = high is None or m.offset + 1 >= high
                for r in rejected:
                    sent.futures.append(await self.producer.send(self.rejects, orjson.dumps(r)))
                encoded = orjson.dumps(msg)
                if size and size + len(encoded) > PARTIALS_BYTES:
                    await self._send_partials(sent, parts)
                    size = 0
                if not parts:
                    since = time.monotonic()
                parts.append(encoded)
                size += len(encoded) + 1
                if time.monotonic() - since >= PARTIALS_SECONDS:  # a long fetch: the first ones go now
                    await self._send_partials(sent, parts)
                    size = 0
                sent.done.append((msg, rejected))
                await asyncio.sleep(0)  # a raw message is the unit of work: let detect and /health in
        if parts:
            await self._send_partials(sent, parts)
        return sent

    async def _send_partials(self, sent: _Sent, parts: list[bytes]) -> None:
        """Send ``parts`` (encoded partials messages) as one JSON list, which
        ``streams.stages.partials_messages`` reads; ``parts`` is emptied."""
        sent.futures.append(await self.producer.send(self.partials, b"[" + b",".join(parts) + b"]"))
        parts.clear()

    def _taken_over(self, tp: TopicPartition, offset: int) -> bool:
        """Whether what lies below ``offset`` was ingested by someone else (another worker, this
        process before a restart) or by nobody (a new group, the log's start): the messages
        below ``_read_to`` were ingested here, with their ids in memory, so a partition kept
        across a rebalance, or read again after a failed send, is not read back."""
        read_to = self._read_to.get(tp)
        return (read_to is None or offset > read_to) and self.lookback.covers(tp.topic)

    async def _recall(self, tp: TopicPartition, first: Any) -> None:
        """Remember the request ids of the look-back below ``first``; counts and sends nothing."""
        started, ids = time.perf_counter(), 0
        since = first.timestamp - int(self.lookback.seconds * 1000)
        try:
            messages = await read_back(self.reader, tp, first.offset, since_ms=since,
                                       max_messages=self.lookback.messages)
        except KafkaError as exc:  # ingest goes on; a request counted before the takeover may count twice
            log.warning("look-back not read", extra={"kv": {"partition": f"{tp.topic}/{tp.partition}",
                                                            "error": repr(exc)}})
            return
        for m in messages:
            ids += self.stage.recall(_raw_batch(tp, m))
            await asyncio.sleep(0)
        log.info("look-back read: request ids recalled", extra={"kv": {
            "partition": f"{tp.topic}/{tp.partition}", "below": first.offset, "messages": len(messages),
            "ids": ids, "seconds": round(time.perf_counter() - started, 3)}})

    async def _settle(self, sent: _Sent, after: _Sent | None) -> bool:
        """Wait for ``sent``'s acks and commit it; on a failure seek back (``after`` too)."""
        try:
            await asyncio.gather(*sent.futures)
        except KafkaError as exc:
            # Nothing of it committed: redo from its first offsets (the parts that did reach
            # the broker are skipped downstream by their raw id).
            log.warning("partials not acknowledged; retrying", extra={"kv": {"error": repr(exc)}})
            firsts = {tp: first for tp, (first, _) in (after.offsets.items() if after else ())}
            firsts.update({tp: first for tp, (first, _) in sent.offsets.items()})
            for tp, first in firsts.items():
                self.consumer.seek(tp, first)
            await asyncio.sleep(self.retry_seconds)
            return False
        offsets = {tp: end for tp, (_, end) in sent.offsets.items()}
        self._position.update(offsets)
        await self._commit(offsets)
        for msg, rejected in sent.done:
            self.on_done(msg, rejected)
        return True

    async def _commit(self, offsets: dict[TopicPartition, int]) -> None:
        try:
            await self.consumer.commit(offsets)
        except (CommitFailedError, KafkaError) as exc:
            # A rebalance took the partitions away: their new owner reads them again from the
            # last commit, and the repeats are skipped downstream. Never a loss.
            log.info("commit refused (rebalance); the new owner re-reads", extra={"kv": {"error": repr(exc)}})

    def set_detecting(self, detecting: bool) -> None:
        """This worker gained or lost detection: rebalance so it takes fewer (more) raw partitions."""
        if self._assign_state["detecting"] == detecting:
            return
        self._assign_state["detecting"] = detecting
        coordinator = getattr(self.consumer, "_coordinator", None)  # aiokafka has no public rejoin
        if self._started and coordinator is not None:
            log.info("ingest share changes: rejoining", extra={"kv": {"detecting": detecting}})
            coordinator.request_rejoin()

    def assignment(self) -> list[str]:
        if not self._started:
            return []
        return sorted(f"{tp.topic}/{tp.partition}" for tp in self.consumer.assignment())

    def lag(self) -> dict[str, int]:
        """Per assigned raw partition: the broker's end offset minus our position."""
        out = {}
        if not self._started:
            return out
        for tp in self.consumer.assignment():
            high, pos = self.consumer.highwater(tp), self._position.get(tp)
            if high is not None and pos is not None:
                out[f"{tp.topic}/{tp.partition}"] = max(high - pos, 0)
        return out


def _raw_batch(tp: TopicPartition, m: Any) -> RawBatch:
    return RawBatch(tp.topic, tp.partition, m.offset, m.value, _header(m.headers, HEADER_BATCH),
                    _header(m.headers, HEADER_SOURCE))


def _header(headers: Any, name: str) -> str | None:
    for k, v in headers or ():
        if k == name:
            return v.decode() if isinstance(v, bytes) else str(v)
    return None
