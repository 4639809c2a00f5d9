"""``gatewatch tail fly``: the Fly.io NATS log stream into ``<prefix>.raw.fly``.

Fly publishes every log line of every app in the org on the org's NATS server
(``nats://[fdaa::3]:4223`` over 6PN), subject ``logs.<app>.<region>.<instance>``, one
JSON envelope per message (SOURCES.md §3a). Auth: user = org slug, password = a Fly
access token (``FLY_ACCESS_TOKEN``; ``fly tokens create readonly <org>``).

Delivery and restarts:

- **core NATS (default)**: a plain subscription has no replay. Lines published while
  the tail is down or reconnecting are **lost** (the gap is bounded by the downtime).
  Run two tails with the same ``--queue`` group so that one of them is always
  subscribed during deploys; a queue group delivers each message to one member only.
- **JetStream (``--durable NAME``)**, where the server has a stream over the subjects
  (a local NATS, or a relay in front of Fly's): a durable pull consumer; messages are
  acked only after Kafka acknowledged their batch, so a restart resumes where it
  stopped, at-least-once.

Records are the envelopes as received (bytes unchanged); the Kafka key is the subject
without ``logs.``, so each machine's lines stay in order on one partition.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import nats
from nats.errors import TimeoutError as NatsTimeout

from connectors.kafka import BatchProducer, DeliveryError

__all__ = ["NatsConfig", "NatsSource", "FLY_NATS_URL"]

FLY_NATS_URL = "nats://[fdaa::3]:4223"
log = logging.getLogger("gatewatch.source.fly")


@dataclass(slots=True)
class NatsConfig:
    servers: list[str]
    subject: str = "logs.>"
    user: str | None = None  # the Fly org slug
    password: str | None = None  # the Fly access token; never logged
    queue: str = ""
    durable: str | None = None
    stream: str | None = None
    fetch_batch: int = 500


def subject_key(subject: str) -> bytes:
    return subject.removeprefix("logs.").encode()


class NatsSource:
    def __init__(self, config: NatsConfig, producer: BatchProducer) -> None:
        self.config, self.producer = config, producer

    async def run(self, stop: asyncio.Event) -> None:
        nc = await nats.connect(
            servers=self.config.servers, user=self.config.user, password=self.config.password,
            name="gatewatch-tail-fly", max_reconnect_attempts=-1, reconnect_time_wait=2,
            error_cb=self._on_error, disconnected_cb=self._on_disconnect, reconnected_cb=self._on_reconnect)
        log.info("connected", extra={"kv": {"servers": self.config.servers, "subject": self.config.subject,
                                            "mode": "jetstream" if self.config.durable else "core"}})
        try:
            if self.config.durable:
                await self._run_jetstream(nc, stop)
            else:
                await self._run_core(nc, stop)
        finally:
            # Not nc.drain(): with a pull subscription nats-py waits out its 30 s drain timeout.
            # The core subscription is drained above, and acks are flushed here.
            if nc.is_connected:
                await nc.flush(timeout=5)
            await nc.close()

    async def _run_core(self, nc: nats.NATS, stop: asyncio.Event) -> None:
        async def on_message(msg) -> None:
            await self.producer.add("fly", msg.data, key=subject_key(msg.subject))

        sub = await nc.subscribe(self.config.subject, queue=self.config.queue, cb=on_message,
                                 pending_msgs_limit=200_000, pending_bytes_limit=256 * 1024 * 1024)
        await stop.wait()
        await sub.drain()

    async def _run_jetstream(self, nc: nats.NATS, stop: asyncio.Event) -> None:
        js = nc.jetstream()
        psub = await js.pull_subscribe(self.config.subject, durable=self.config.durable,
                                       stream=self.config.stream)
        while not stop.is_set():
            try:
                messages = await psub.fetch(self.config.fetch_batch, timeout=0.5)
            except (NatsTimeout, asyncio.TimeoutError):  # nats-py raises either when nothing came
                continue
            await self._forward_and_ack(messages)

    async def _forward_and_ack(self, messages: list) -> None:
        for msg in messages:
            await self.producer.add("fly", msg.data, key=subject_key(msg.subject))
        try:
            await self.producer.flush()
        except DeliveryError as exc:
            # Not acked: JetStream redelivers after ack_wait, once the broker is back.
            log.warning("kafka down, leaving messages unacked", extra={"kv": {"error": str(exc)}})
            await asyncio.sleep(1.0)
            return
        for msg in messages:
            await msg.ack()

    async def _on_error(self, exc: Exception) -> None:
        self.producer.metrics.errors()
        log.warning("nats error", extra={"kv": {"error": str(exc)}})

    async def _on_disconnect(self) -> None:
        log.warning("nats disconnected: lines published until reconnect are not replayed (core mode)")

    async def _on_reconnect(self) -> None:
        log.info("nats reconnected")
