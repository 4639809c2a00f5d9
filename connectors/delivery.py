"""Delivery as a list of stages: dedup → mute → (outbox) → send with retry → record.

``Delivery.submit(n)`` decides and enqueues (synchronous, durable on return);
``await Delivery.drain()`` sends each sink's backlog *in order*, retrying with exponential
backoff and full jitter. A sink only moves bytes: ``await sink.send(n, key)`` returns
``(retryable, error)`` (``error is None`` = delivered) or an ``Outcome`` that also carries
the receiver's ``Retry-After``. Backoff lives here and nowhere else.

Guarantees per sink: at-least-once, in enqueue order; a key acknowledged (2xx) is never
sent again by this state directory; a final failure (4xx other than 408/429) is settled
as ``failed`` with its reason and the backlog moves on.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Iterable, Mapping, NamedTuple, Protocol, Sequence

from connectors.outbox import HistoryLog, MemoryOutbox, MemoryStateStore, Outbox, StateStore
from models.silences import (DEFAULT_INHIBIT_RULES, ActiveIncidents, Decision, InhibitRule, Send,
                             Silence, Suppressed, mute)

__all__ = ["Outcome", "Sink", "RetryPolicy", "Delivery", "DrainReport", "idempotency_key"]

ACTIVE_STATE = "active_incidents"


class Outcome(NamedTuple):
    retryable: bool
    error: str | None  # None: the receiver acknowledged (2xx)
    retry_after: float | None = None  # seconds, from a 429/503 Retry-After


class Sink(Protocol):
    name: str

    def send(self, notification: Mapping[str, Any], key: str) -> Awaitable[tuple[bool, str | None]]: ...


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with full jitter (AWS architecture blog, "Exponential Backoff
    and Jitter"): sleep uniform(0, min(cap, initial * multiplier**attempt)). ``max_elapsed``
    bounds one drain's effort on one notification; it then stays pending for the next drain
    (``None``: retry until delivered)."""

    initial: float = 1.0
    multiplier: float = 2.0
    cap: float = 60.0
    max_elapsed: float | None = 300.0

    def delay(self, attempt: int, rng: random.Random) -> float:
        return rng.uniform(0.0, min(self.cap, self.initial * self.multiplier ** attempt))


def idempotency_key(n: Mapping[str, Any]) -> str:
    return f"{n.get('incident')}:{n.get('seq', n.get('at'))}"


@dataclass(slots=True)
class DrainReport:
    sent: dict[str, int] = field(default_factory=dict)
    failed: dict[str, int] = field(default_factory=dict)
    pending: dict[str, int] = field(default_factory=dict)

    @property
    def pending_total(self) -> int:
        return sum(self.pending.values())


SilenceSource = Callable[[], Iterable[Silence]]


class Delivery:
    def __init__(self, sinks: Sequence[Sink], outbox: Outbox | None = None, state: StateStore | None = None,
                 history: HistoryLog | None = None, silences: SilenceSource | Iterable[Silence] = (),
                 inhibit_rules: Iterable[InhibitRule] = DEFAULT_INHIBIT_RULES,
                 policy: RetryPolicy = RetryPolicy(),
                 sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
                 clock: Callable[[], float] = time.monotonic, rng: random.Random | None = None) -> None:
        if len({s.name for s in sinks}) != len(sinks):
            raise ValueError("sink names must be unique (they name the outbox queues)")
        self.sinks = list(sinks)
        self.outbox = outbox if outbox is not None else MemoryOutbox()
        self.state = state if state is not None else MemoryStateStore()
        self.history = history if history is not None else HistoryLog(None)
        self._silences = silences if callable(silences) else (lambda s=tuple(silences): s)
        self.inhibit_rules = tuple(inhibit_rules)
        self.policy, self._sleep, self._clock = policy, sleep, clock
        self._rng = rng or random.Random()
        self.active = ActiveIncidents.restore(self.state.get(ACTIVE_STATE))
        self._wakeup = asyncio.Event()

    # -- submit: dedup, mute, enqueue -------------------------------------------------

    def submit(self, n: Mapping[str, Any]) -> Decision:
        """Decide and enqueue one notification; durable when this returns."""
        decision = self._submit(dict(n))
        self._persist()
        return decision

    def submit_many(self, notifications: Iterable[Mapping[str, Any]]) -> dict[str, int]:
        """``submit`` each, with one fsync at the end; returns counts by decision."""
        counts: dict[str, int] = {}
        for n in notifications:
            decision = self._submit(dict(n))
            label = "queued" if isinstance(decision, Send) else decision.reason
            counts[label] = counts.get(label, 0) + 1
        self._persist()
        return counts

    def _persist(self) -> None:
        self.outbox.sync()
        self.state.put(ACTIVE_STATE, self.active.snapshot())

    def _submit(self, n: dict[str, Any]) -> Decision:
        key = idempotency_key(n)
        if all(self.outbox.state_of(s.name, key) is not None for s in self.sinks):
            return self._suppress(n, key, Suppressed("duplicate", detail="key already enqueued or settled"))
        decision = self._mute(n)
        if isinstance(decision, Suppressed):
            for sink in self.sinks:
                if self.outbox.state_of(sink.name, key) is None:
                    self.outbox.ack(sink.name, key, "suppressed", decision.reason)
            return self._suppress(n, key, decision)
        for sink in self.sinks:
            self.outbox.enqueue(sink.name, key, n)
        self._wakeup.set()
        return decision

    def _mute(self, n: dict[str, Any]) -> Decision:
        return mute(n, self._silences(), self.inhibit_rules, self.active)

    def _suppress(self, n: Mapping[str, Any], key: str, decision: Suppressed) -> Suppressed:
        self._record(n, key, "suppressed", reason=decision.reason, by=decision.by or None,
                     detail=decision.detail or None)
        return decision

    # -- drain: send with retry, record ------------------------------------------------

    async def drain(self) -> DrainReport:
        """Send every sink's backlog, sinks concurrently, each in order."""
        report = DrainReport()
        await asyncio.gather(*(self._drain_sink(s, report) for s in self.sinks))
        return report

    async def deliver(self, n: Mapping[str, Any]) -> tuple[Decision, DrainReport]:
        """Submit then drain: one call per notification (the Faust agent's body)."""
        decision = self.submit(n)
        return decision, await self.drain()

    async def run(self, stop: asyncio.Event, idle: float = 5.0) -> None:
        """Service loop: drain, then wait for a submit, ``idle`` seconds, or ``stop``."""
        while not stop.is_set():
            self._wakeup.clear()
            await self.drain()
            waiters = [asyncio.ensure_future(e.wait()) for e in (stop, self._wakeup)]
            await asyncio.wait(waiters, timeout=idle, return_when=asyncio.FIRST_COMPLETED)
            for waiter in waiters:
                waiter.cancel()

    async def _drain_sink(self, sink: Sink, report: DrainReport) -> None:
        name = sink.name
        report.sent[name] = report.failed[name] = 0
        for key, n in self.outbox.pending(name):
            if self.outbox.state_of(name, key) != "pending":
                continue  # dedup: settled since the backlog was listed
            status = await self._send_with_retry(sink, key, n)
            if status == "pending":
                break  # keep order: nothing after the head goes out before it
            counter = report.sent if status == "sent" else report.failed
            counter[name] += 1
        report.pending[name] = len(self.outbox.pending(name))

    async def _send_with_retry(self, sink: Sink, key: str, n: Mapping[str, Any]) -> str:
        started, attempt = self._clock(), 0
        while True:
            outcome = Outcome(*await sink.send(n, key))
            if outcome.error is None or not outcome.retryable:
                return self._settle(sink.name, key, n, outcome, attempt)
            delay = self._next_delay(outcome, attempt)
            self._record(n, key, "retry", sink=sink.name, error=outcome.error, attempt=attempt + 1,
                         wait=round(delay, 3))
            budget = self.policy.max_elapsed
            if budget is not None and self._clock() - started + delay > budget:
                return "pending"  # stays in the outbox; the next drain starts again with it
            await self._sleep(delay)
            attempt += 1

    def _next_delay(self, outcome: Outcome, attempt: int) -> float:
        if outcome.retry_after is not None:
            return outcome.retry_after  # the receiver said when; sooner would be refused again
        return self.policy.delay(attempt, self._rng)

    def _settle(self, sink: str, key: str, n: Mapping[str, Any], outcome: Outcome, attempt: int) -> str:
        status = "sent" if outcome.error is None else "failed"
        self.outbox.ack(sink, key, status, outcome.error)
        self._record(n, key, status, sink=sink, error=outcome.error, attempt=attempt + 1)
        return status

    def _record(self, n: Mapping[str, Any], key: str, event: str, **extra: Any) -> None:
        record = {"event": event, "key": key, "incident": n.get("incident"), "seq": n.get("seq"),
                  "status": n.get("status"), "severity": n.get("severity"), "category": n.get("category"),
                  "title": n.get("title"), "at": n.get("at")}
        if event in ("sent", "suppressed"):  # the evidence, for `gatewatch explain` (once per outcome)
            record.update(notification_reason=n.get("reason"), started_at=n.get("started_at"), labels=n.get("labels"),
                          alerts=n.get("alerts"))
        record.update({k: v for k, v in extra.items() if v is not None})
        self.history.append(record)
