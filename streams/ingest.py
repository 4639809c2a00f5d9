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
send each one's partials message, wait for all the acks, commit. Per-record work stays in
``models/`` and the parsers; what is left here is per raw message (hundreds of records).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError

from connectors.kafka import HEADER_BATCH, HEADER_SOURCE
from streams.stages import IngestStage, RawBatch

__all__ = ["IngestLoop"]

log = logging.getLogger("gatewatch.worker.ingest")
MAX_FETCH = 8 << 20  # a raw batch is <= 256 KB; a fetch carries many


class IngestLoop:
    """One consumer of the raw topics (a member of the ``<app>-ingest`` group) and one producer.

    ``on_done(msg, rejects)`` is called once per raw message after its output was
    acknowledged (counters, metrics). ``assignment()`` and ``lag()`` feed ``/health``.
    """

    def __init__(self, brokers: list[str], topics: tuple[str, ...], group: str, partials: str, rejects: str,
                 stage: IngestStage, *, session_timeout: float = 30.0,
                 on_done: Callable[[dict, list[dict]], None] | None = None) -> None:
        self.topics, self.partials, self.rejects, self.stage = topics, partials, rejects, stage
        self.on_done = on_done or (lambda msg, rejects: None)
        session_ms = int(session_timeout * 1000)
        self.consumer = AIOKafkaConsumer(
            *topics, bootstrap_servers=brokers, group_id=group, enable_auto_commit=False,
            auto_offset_reset="earliest", max_partition_fetch_bytes=MAX_FETCH, fetch_max_bytes=4 * MAX_FETCH,
            session_timeout_ms=session_ms, heartbeat_interval_ms=max(session_ms // 10, 500),
            rebalance_timeout_ms=session_ms, client_id=f"{group}-consumer")
        self.producer = AIOKafkaProducer(bootstrap_servers=brokers, acks="all", enable_idempotence=False,
                                         linger_ms=2, max_request_size=MAX_FETCH, client_id=f"{group}-producer")
        self.retry_seconds = 1.0
        self._started = False
        self._position: dict[TopicPartition, int] = {}  # next offset to ingest, per partition read

    async def run(self) -> None:
        """Consume until cancelled; stops the clients (what is not committed is read again)."""
        await self.producer.start()
        await self.consumer.start()
        self._started = True
        try:
            while True:
                records = await self.consumer.getmany(timeout_ms=500, max_records=200)
                if records:
                    await self._process(records)
        finally:
            self._started = False
            await asyncio.gather(self.consumer.stop(), self.producer.stop(), return_exceptions=True)

    async def _process(self, records: dict[TopicPartition, list[Any]]) -> None:
        done, futures = [], []
        for tp, messages in records.items():
            for m in messages:
                msg, rejected = self.stage.ingest(RawBatch(
                    tp.topic, tp.partition, m.offset, m.value,
                    _header(m.headers, HEADER_BATCH), _header(m.headers, HEADER_SOURCE)))
                for r in rejected:
                    futures.append(await self.producer.send(self.rejects, orjson.dumps(r)))
                futures.append(await self.producer.send(self.partials, orjson.dumps(msg)))
                done.append((msg, rejected))
        try:
            await asyncio.gather(*futures)
        except KafkaError as exc:
            # Nothing committed: redo from the first offset of this fetch (the parts that did
            # reach the broker are skipped downstream by their raw id).
            log.warning("partials not acknowledged; retrying the batch", extra={"kv": {"error": repr(exc)}})
            for tp, messages in records.items():
                self.consumer.seek(tp, messages[0].offset)
            await asyncio.sleep(self.retry_seconds)
            return
        offsets = {tp: messages[-1].offset + 1 for tp, messages in records.items()}
        self._position.update(offsets)
        await self._commit(offsets)
        for msg, rejected in done:
            self.on_done(msg, rejected)

    async def _commit(self, offsets: dict[TopicPartition, int]) -> None:
        try:
            await self.consumer.commit(offsets)
        except (CommitFailedError, KafkaError) as exc:
            # A rebalance took the partitions away: their new owner reads them again from the
            # last commit, and the repeats are skipped downstream. Never a loss.
            log.info("commit refused (rebalance); the new owner re-reads", extra={"kv": {"error": repr(exc)}})

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


def _header(headers: Any, name: str) -> str | None:
    for k, v in headers or ():
        if k == name:
            return v.decode() if isinstance(v, bytes) else str(v)
    return None
