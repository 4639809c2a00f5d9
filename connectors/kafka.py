"""Raw topics and the batching producer every ``gatewatch tail`` source writes through.

Topics: ``<prefix>.raw.<family>`` for the source families ``fly``, ``litellm``,
``langfuse`` and ``infra``. A Kafka message on a raw topic is a **batch**: NDJSON bytes,
one unparsed source record per line (up to ``max_records`` lines / ``max_bytes``).
One message per log line would cap the Faust worker at a few thousand lines per
second; batches of a few hundred lines move it to the speed of the parsers.

Message layout (the worker relies on it):

- value: records joined by ``\\n`` (no trailing newline); each record is one line of JSON;
- key: chosen by the source so that records that must stay in order share a partition
  (Fly: app/instance, file: the path, a SQLite request_log: the source name);
- partition of a LiteLLM request record (the callback's ``id``, a SpendLogs row's
  ``request_id``): that of its request id (``route``, :func:`partition_for`), not the
  key's, so both copies of a request share a partition, hence a worker, whose request-id
  dedup drops the second. Batches are cut per partition (up to ``max_records`` lines each,
  never a message per record). A partition gets a subsequence of each source's records, in
  that source's order, and its newest event time moves with the first copy of every
  request, whichever source brings it (the second is dropped before it counts): the
  worker's watermark, "caught up" and idle rules, per partition, hold as they did;
- headers: ``gw-source`` (the ``tail`` source name), ``gw-batch`` (unique batch id, the
  same on every resend of the same batch), ``gw-count`` (number of records).

Tansu (the test broker) refuses ``InitProducerId``, so the producer is not idempotent:
it uses ``acks=all`` and a resend may duplicate a batch. Consumers drop repeated
``gw-batch`` ids with :class:`BatchDeduper`.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import time
import uuid
import zlib
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from connectors.metrics import SourceMetrics
from connectors.recent import RecentKeys

__all__ = [
    "FAMILIES", "raw_topic", "all_raw_topics", "encode_batch", "decode_batch", "BatchProducer",
    "DeliveryError", "BatchDeduper", "partition_for", "ensure_topics", "consume_batches", "read_back",
    "read_range",
]

FAMILIES = ("fly", "litellm", "langfuse", "infra")
HEADER_SOURCE, HEADER_BATCH, HEADER_COUNT = "gw-source", "gw-batch", "gw-count"
# Kafka's default max.message.bytes is 1 MiB: a single record beyond this cannot travel.
MAX_RECORD_BYTES = 900 * 1024
log = logging.getLogger("gatewatch.kafka")


def raw_topic(family: str, prefix: str = "gatewatch") -> str:
    if family not in FAMILIES:
        raise ValueError(f"unknown source family {family!r}; expected one of {FAMILIES}")
    return f"{prefix}.raw.{family}"


def all_raw_topics(prefix: str = "gatewatch") -> list[str]:
    return [raw_topic(f, prefix) for f in FAMILIES]


def encode_batch(records: Iterable[bytes]) -> bytes:
    return b"\n".join(records)


def decode_batch(value: bytes) -> list[bytes]:
    # not ``line.strip()``: that copies every line (~1 KB) only to test it
    return [line for line in value.split(b"\n") if line and not line.isspace()]


def partition_for(route: str, partitions: int) -> int:
    """The raw partition of a LiteLLM request id, the same in every source and process.

    CRC-32, not Python's ``hash`` (salted per process) nor Kafka's murmur2 (in pure Python
    it costs 15x the record's own re-serialisation in the receiver)."""
    return zlib.crc32(route.encode()) % partitions


class DeliveryError(Exception):
    """The broker did not acknowledge a batch in time (or refused it)."""


@dataclass(slots=True)
class _Batch:
    topic: str
    key: bytes | None
    partition: int | None = None  # None: the key's partition
    lines: list[bytes] = field(default_factory=list)
    size: int = 0
    started: float = field(default_factory=time.monotonic)
    batch_id: str = ""


class BatchProducer:
    """Buffers raw records per (topic, key, partition) into NDJSON batches and sends them with acks=all.

    ``add`` buffers (and sends a batch once it is full); a background task sends batches
    older than ``linger`` seconds; ``flush`` sends everything and waits until the broker
    has acknowledged it, raising :class:`DeliveryError` otherwise (failed batches stay
    queued and are resent, with the same batch id, by the next flush). A source writes
    its checkpoint only after a successful ``flush``: that is what makes it at-least-once.
    """

    def __init__(self, brokers: list[str] | str, source: str, *, prefix: str = "gatewatch",
                 max_records: int = 500, max_bytes: int = 256 * 1024, linger: float = 0.5,
                 delivery_timeout: float = 30.0, max_in_flight: int = 16, max_failed_records: int = 1_000_000,
                 compression: str | None = None, metrics: SourceMetrics | None = None) -> None:
        self.source, self.prefix = source, prefix
        self.max_records, self.max_bytes, self.linger = max_records, max_bytes, linger
        self.delivery_timeout, self.max_in_flight = delivery_timeout, max_in_flight
        self.max_failed_records = max_failed_records
        self.metrics = metrics or SourceMetrics(source)
        self._producer = AIOKafkaProducer(
            bootstrap_servers=brokers, acks="all", enable_idempotence=False, linger_ms=5,
            max_request_size=max(1024 * 1024, max_bytes * 2), compression_type=compression,
            request_timeout_ms=int(delivery_timeout * 1000), client_id=f"gatewatch-tail-{source}")
        self._open: dict[tuple[str, bytes | None, int | None], _Batch] = {}
        self._failed: list[_Batch] = []
        self._in_flight: list[tuple[_Batch, asyncio.Future]] = []
        self._run_id = f"{source}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._seq = 0
        self._ticker: asyncio.Task | None = None
        # add/flush/linger interleave at awaits; one lock keeps "flush returned" meaning
        # "every batch handed over before it is acknowledged".
        self._lock = asyncio.Lock()
        self._last_retry = 0.0

    async def start(self) -> None:
        await asyncio.wait_for(self._producer.start(), self.delivery_timeout)
        self._ticker = asyncio.create_task(self._linger_loop())

    async def stop(self) -> None:
        """Flush what is buffered (best effort) and close the producer."""
        if self._ticker:
            self._ticker.cancel()
            await asyncio.gather(self._ticker, return_exceptions=True)
        try:
            await self.flush()
        except DeliveryError as exc:
            log.error("final flush failed", extra={"kv": {"source": self.source, "error": str(exc)}})
        finally:
            await self._producer.stop()

    async def add(self, family: str, record: bytes, key: bytes | None = None, route: str | None = None) -> None:
        """Buffer one raw record (one line of JSON) for the family's raw topic.

        ``route`` (a LiteLLM request id) sends the record to that id's partition
        (:func:`partition_for`), in a batch of that partition; raises :class:`DeliveryError`
        when the broker cannot tell the topic's partition count (nothing is buffered then).
        """
        self.metrics.records_in()
        if len(record) > MAX_RECORD_BYTES:
            self.metrics.rejected("oversize")
            log.warning("record too large", extra={"kv": {"source": self.source, "bytes": len(record)}})
            return
        topic = raw_topic(family, self.prefix)
        k = (topic, key, None if route is None else partition_for(route, await self._partitions(topic)))
        batch = self._open.get(k)
        if batch and batch.size + len(record) + 1 > self.max_bytes:
            await self._seal(k)
        batch = self._open.get(k)
        if batch is None:
            batch = self._open[k] = _Batch(*k)
        batch.lines.append(record)
        batch.size += len(record) + 1
        if len(batch.lines) >= self.max_records:
            await self._seal(k)

    async def send_records(self, family: str, records: list[bytes], key: bytes | None = None,
                           routes: list[str | None] | None = None) -> None:
        """Send records now, bypassing the buffers, and wait for the broker's ack.

        Used by the HTTP receiver, which may only answer 2xx once its batch is stored.
        Failed batches are *not* requeued: the caller reports the failure to its client.
        A timed-out send may still reach the broker later, so the batch id is a hash of
        the content: a client's retry of the same body gets the same id, and consumers
        keep one copy. ``routes`` (one per record, a request id or ``None``) cut the records
        into per-partition batches as :meth:`add` does; a record without one goes by ``key``.
        """
        self.metrics.records_in(len(records))
        topic = raw_topic(family, self.prefix)
        groups: dict[int | None, list[bytes]] = {None: records}
        try:
            if routes is not None:
                groups = self._route(records, routes, await self._partitions(topic))
            batches = [b for partition, group in groups.items() for b in self._chunk(topic, key, partition, group)]
        except DeliveryError:
            self.metrics.errors()
            raise
        for batch in batches:
            batch.batch_id = f"{self.source}-h{hashlib.blake2b(encode_batch(batch.lines), digest_size=16).hexdigest()}"
        futures = [await self._enqueue(b) for b in batches]
        results = await asyncio.gather(*(self._wait(f) for f in futures), return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        for batch, result in zip(batches, results):
            if not isinstance(result, BaseException):
                self._delivered(batch)
        if errors:
            self.metrics.errors()
            raise DeliveryError(str(errors[0]))

    async def flush(self) -> None:
        async with self._lock:
            for k in list(self._open):
                await self._send(self._open.pop(k))
            await self._resend_failed()
            await self._drain(0)
        if self._failed:
            raise DeliveryError(f"{len(self._failed)} batch(es) not acknowledged by the broker")

    @property
    def pending(self) -> int:
        return sum(len(b.lines) for b in self._open.values()) + sum(len(b.lines) for b in self._failed)

    async def _partitions(self, topic: str) -> int:
        """The topic's partition count, from the client's metadata (asked of the broker when unknown)."""
        known = self._producer.client.cluster.partitions_for_topic(topic)  # a wait_for per record costs 9x an add
        if known:
            return len(known)
        try:
            return len(await asyncio.wait_for(self._producer.partitions_for(topic), self.delivery_timeout))
        except Exception as exc:  # broker unreachable, topic unknown
            raise DeliveryError(f"partitions of {topic}: {type(exc).__name__}: {exc}") from exc

    @staticmethod
    def _route(records: list[bytes], routes: list[str | None], partitions: int) -> dict[int | None, list[bytes]]:
        groups: dict[int | None, list[bytes]] = {}
        for record, route in zip(records, routes, strict=True):
            groups.setdefault(None if route is None else partition_for(route, partitions), []).append(record)
        return groups

    def _chunk(self, topic: str, key: bytes | None, partition: int | None, records: list[bytes]) -> Iterable[_Batch]:
        batch = _Batch(topic, key, partition)
        for record in records:
            if batch.lines and (len(batch.lines) >= self.max_records
                                or batch.size + len(record) + 1 > self.max_bytes):
                yield batch
                batch = _Batch(topic, key, partition)
            batch.lines.append(record)
            batch.size += len(record) + 1
        if batch.lines:
            yield batch

    async def _seal(self, k: tuple[str, bytes | None, int | None]) -> None:
        # Popped under the lock: a batch is always either open, in flight or failed, so a
        # flush that holds the lock sees every record whose ``add`` has returned.
        async with self._lock:
            batch = self._open.pop(k, None)
            if batch is not None:
                await self._send(batch)

    async def _resend_failed(self) -> None:
        retry, self._failed = self._failed, []
        self._last_retry = time.monotonic()
        for batch in retry:
            await self._send(batch)

    async def _send(self, batch: _Batch) -> None:
        try:
            fut = await self._enqueue(batch)
        except DeliveryError:
            self._keep_failed(batch)
            self.metrics.errors()
            return
        self._in_flight.append((batch, fut))
        if len(self._in_flight) > self.max_in_flight:
            await self._drain(self.max_in_flight // 2)

    async def _enqueue(self, batch: _Batch) -> asyncio.Future:
        if not batch.batch_id:
            self._seq += 1
            batch.batch_id = f"{self._run_id}-{self._seq}"
        headers = [(HEADER_SOURCE, self.source.encode()), (HEADER_BATCH, batch.batch_id.encode()),
                   (HEADER_COUNT, str(len(batch.lines)).encode())]
        try:
            return await asyncio.wait_for(self._producer.send(
                batch.topic, encode_batch(batch.lines), key=batch.key, partition=batch.partition, headers=headers),
                self.delivery_timeout)
        except Exception as exc:  # broker unreachable, metadata timeout, message too large
            raise DeliveryError(f"{type(exc).__name__}: {exc}") from exc

    async def _wait(self, fut: asyncio.Future) -> None:
        try:
            await asyncio.wait_for(asyncio.shield(fut), self.delivery_timeout)
        except Exception as exc:
            raise DeliveryError(f"{type(exc).__name__}: {exc}") from exc

    async def _drain(self, keep: int) -> None:
        """Wait for in-flight batches until at most ``keep`` remain; requeue failures."""
        while len(self._in_flight) > keep:
            batch, fut = self._in_flight[0]  # popped only once settled: a cancelled wait loses nothing
            try:
                await self._wait(fut)
                self._in_flight.pop(0)
                self._delivered(batch)
            except DeliveryError as exc:
                self._in_flight.pop(0)
                self.metrics.errors()
                log.warning("batch not acknowledged", extra={"kv": {
                    "source": self.source, "topic": batch.topic, "batch": batch.batch_id, "error": str(exc)}})
                self._keep_failed(batch)

    def _keep_failed(self, batch: _Batch) -> None:
        """Queue a batch for resending; past the cap the oldest are dropped (and counted)."""
        self._failed.append(batch)
        while sum(len(b.lines) for b in self._failed) > self.max_failed_records and len(self._failed) > 1:
            dropped = self._failed.pop(0)
            self.metrics.rejected("buffer_full", len(dropped.lines))
            log.error("broker down too long, dropping a batch", extra={"kv": {
                "source": self.source, "records": len(dropped.lines)}})

    def _delivered(self, batch: _Batch) -> None:
        self.metrics.batches()
        self.metrics.records_out(len(batch.lines))

    async def _linger_loop(self) -> None:
        while True:
            await asyncio.sleep(max(self.linger / 2, 0.01))
            try:
                async with self._lock:
                    await self._linger_tick(time.monotonic())
            except Exception as exc:  # the ticker must outlive a bad moment of the broker
                self.metrics.errors()
                log.warning("linger flush failed", extra={"kv": {"source": self.source, "error": str(exc)}})

    async def _linger_tick(self, now: float) -> None:
        for k in [k for k, b in self._open.items() if now - b.started >= self.linger]:
            await self._send(self._open.pop(k))
        if self._failed and now - self._last_retry >= 1.0:  # sources that never flush still retry
            await self._resend_failed()
        await self._drain(0)


# Remembers the last ``capacity`` batch ids; ``seen(id)`` is True for a repeat. (``RecentKeys`` is
# compiled, setup.py: a class of its own here could not derive from it.)
BatchDeduper = RecentKeys


async def ensure_topics(brokers: list[str] | str, prefix: str = "gatewatch", partitions: int = 4) -> None:
    """Create the raw topics if missing (an existing topic is left as it is)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=brokers)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(t, partitions, 1) for t in all_raw_topics(prefix)])
    except Exception as exc:  # TopicAlreadyExists on some brokers raises instead of answering
        log.debug("create_topics", extra={"kv": {"error": str(exc)}})
    finally:
        await admin.close()


def _header(headers: Iterable[tuple[str, bytes]] | None, name: str) -> str | None:
    for k, v in headers or ():
        if k == name:
            return v.decode()
    return None


async def consume_batches(brokers: list[str] | str, topics: list[str], *, group_id: str | None = None,
                          from_beginning: bool = True, idle_timeout: float | None = None,
                          ) -> AsyncIterator[tuple[str, str | None, list[bytes]]]:
    """Yield ``(topic, source, records)`` per new batch, skipping repeated batch ids.

    ``idle_timeout`` ends the iteration after that many seconds without messages
    (tests and one-shot tools); ``None`` consumes forever.
    """
    consumer = AIOKafkaConsumer(*topics, bootstrap_servers=brokers, group_id=group_id,
                                auto_offset_reset="earliest" if from_beginning else "latest",
                                enable_auto_commit=group_id is not None)
    dedup = BatchDeduper()
    await consumer.start()
    try:
        idle_since = time.monotonic()
        while idle_timeout is None or time.monotonic() - idle_since < idle_timeout:
            for tp, messages in (await consumer.getmany(timeout_ms=200)).items():
                idle_since = time.monotonic()
                for m in messages:
                    if not dedup.seen(_header(m.headers, HEADER_BATCH)):
                        yield tp.topic, _header(m.headers, HEADER_SOURCE), decode_batch(m.value)
    finally:
        await consumer.stop()


async def read_range(brokers: list[str] | str, topic: str, partition: int, start: int, end: int,
                     timeout: float = 30.0) -> list[tuple[int, bytes]]:
    """``(offset, value)`` of the messages ``start <= offset < end`` of one partition, read
    without a group (a consumer that lost messages fetches them again this way)."""
    tp = TopicPartition(topic, partition)
    consumer = AIOKafkaConsumer(bootstrap_servers=brokers, enable_auto_commit=False, group_id=None)
    await consumer.start()
    try:
        consumer.assign([tp])
        messages = await _fetch(consumer, tp, start, end, time.monotonic() + timeout)
        return [(m.offset, m.value) for m in messages]
    finally:
        await consumer.stop()


async def read_back(consumer: AIOKafkaConsumer, tp: TopicPartition, end: int, *, since_ms: int,
                    max_messages: int, timeout: float = 30.0) -> list:
    """The messages of ``tp`` just below offset ``end``, oldest first: at most ``max_messages``,
    none stamped before ``since_ms``, none below the partition's start. ``consumer`` has no group;
    it is assigned ``tp`` here.

    Read backwards from ``end`` in doubling steps, and stopped at the first step that holds a
    message older than ``since_ms``: the cost follows the window asked for, not the partition.
    Not ``offsets_for_times``: Tansu (the test broker) answers it with offset 0 whatever the time.
    """
    consumer.assign([tp])
    floor = max((await consumer.beginning_offsets([tp]))[tp], end - max_messages)
    deadline, out = time.monotonic() + timeout, []
    high, step = end, 64
    while high > floor and time.monotonic() < deadline:
        low = max(floor, high - step)
        chunk = await _fetch(consumer, tp, low, high, deadline)
        recent = [m for m in chunk if m.timestamp >= since_ms]
        out[:0] = recent
        if len(recent) < len(chunk):
            break
        high, step = low, step * 2
    return out


async def _fetch(consumer: AIOKafkaConsumer, tp: TopicPartition, start: int, end: int,
                 deadline: float) -> list:
    """The messages ``start <= offset < end`` of an assigned partition (fewer if ``deadline`` passes)."""
    consumer.seek(tp, start)
    out = []
    while time.monotonic() < deadline and await consumer.position(tp) < end:
        fetched = (await consumer.getmany(tp, timeout_ms=200)).get(tp, ())
        out.extend(m for m in fetched if start <= m.offset < end)
    return out
