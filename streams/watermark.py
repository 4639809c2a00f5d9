"""Event-time watermark over many input partitions, with idle partitions left out.

Each raw (topic, partition) reports the newest event time of its batches. The watermark
is the MIN over the *active* inputs: a lagging source during catch-up holds detection
back (its minutes are not closed before its data arrived), while an input silent for more
than ``idle_seconds`` of wall time is left out, so an unconfigured or quiet source does
not stall detection (the Flink/Beam "idle source" rule).

When every input is idle the input has, for now, ended: the watermark moves past the
newest event by ``finish_margin`` (what ``Engine.finish`` does at the end of a replay,
so the last minutes close and a worker fed the same files as ``replay`` sends the same
notifications), and from then on event time follows the wall clock, so a gateway that
stops sending anything still sees its minutes close (a drop to zero is a signal).

At start no input is known to be quiet yet: the watermark waits ``idle_seconds`` after
the first message, so every partition with data has reported before a minute closes
(otherwise the first partition read would close minutes the others still hold data for).

Pure: ``now`` (wall-clock seconds, monotonic or not) is always an argument.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Watermark"]


@dataclass(slots=True)
class _Input:
    max_ts: float | None = None
    seen: float = 0.0  # wall time of the last message
    caught_up: bool = True  # its last message was the newest of its partition then


@dataclass(slots=True)
class Watermark:
    idle_seconds: float = 30.0
    finish_margin: float = 90.0  # lateness + one minute: Engine.finish()
    inputs: dict[str, _Input] = field(default_factory=dict)
    last_seen: float = 0.0
    first_seen: float | None = None
    high: float | None = None  # the highest value returned: the watermark never goes back

    def observe(self, source: str, max_ts: float | None, now: float, caught_up: bool = True) -> None:
        """A batch from ``source`` (``topic/partition``) whose newest event is ``max_ts``;
        ``caught_up``: nothing was behind it in its partition when it was read."""
        inp = self.inputs.get(source)
        if inp is None:
            inp = self.inputs[source] = _Input()
        inp.caught_up = caught_up
        if max_ts is not None and (inp.max_ts is None or max_ts > inp.max_ts):
            inp.max_ts = max_ts
        inp.seen = max(inp.seen, now)
        if self.first_seen is None:
            self.first_seen = now
        self.last_seen = max(self.last_seen, now)

    def value(self, now: float) -> float | None:
        """The event time up to which every active input has delivered; ``None``: no data yet."""
        times = [i.max_ts for i in self.inputs.values() if i.max_ts is not None]
        if not times or self.first_seen is None or now - self.first_seen < self.idle_seconds:
            return None
        active = [i.max_ts for i in self.inputs.values()
                  if i.max_ts is not None and (now - i.seen <= self.idle_seconds or not i.caught_up)]
        if active:
            value = min(active)
        else:
            quiet = now - self.last_seen - self.idle_seconds
            value = max(times) + self.finish_margin + max(quiet, 0.0)
        if self.high is None or value > self.high:
            self.high = value
        return self.high

    def restarted(self, now: float) -> None:
        """After a restore: wall times from another process mean nothing; count from now."""
        for inp in self.inputs.values():
            inp.seen = now
        self.last_seen = now
        self.first_seen = now - self.idle_seconds  # the inputs are known: no start-up wait
