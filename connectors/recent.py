"""A bounded memory of recently seen keys: the one dedup mechanism of the at-least-once paths
(replay's request ids, consumers' batch ids, the detect stage's source batch ids).

No Kafka import here: replay uses it without loading aiokafka. Compiled (setup.py): the worker's
ingest asks it once per request (``SeenElsewhere``).
"""

from __future__ import annotations

from typing import Final

from models.events import Event

_ABSENT: Final = object()  # ``dict.get``'s default: an origin is a str or None


class RecentKeys:
    """Remembers the last ``capacity`` keys; ``seen(key)`` is True for a repeat, and records it.

    A dict of key → origin and a ring of the keys in the order first seen (from ``oldest`` on
    once it is full): the oldest key makes room for a new one, as an ``OrderedDict``'s
    ``popitem(last=False)`` would, for a dict lookup and a list write instead of its generic calls
    (the worker's ingest asks once per request). Keys are only added when absent, so the ring
    holds each remembered key once."""

    __slots__ = ("capacity", "_keys", "_ring", "_oldest")

    def __init__(self, capacity: int = 100_000) -> None:
        self.capacity = capacity
        self._keys: dict[str, str | None] = {}
        self._ring: list[str] = []
        self._oldest = 0

    def seen(self, key: str | None) -> bool:
        if not key:
            return False
        if key in self._keys:
            return True
        self._remember(key, None)
        return False

    def seen_elsewhere(self, key: str | None, origin: str) -> bool:
        """True for a key first seen from another ``origin``; the same origin read again
        (an at-least-once redelivery of one message) is not a repeat of itself."""
        if not key:
            return False
        first = self._keys.get(key, _ABSENT)
        if first is _ABSENT:
            self._remember(key, origin)
            return False
        return first != origin

    def _remember(self, key: str, origin: str | None) -> None:
        ring = self._ring
        if len(ring) < self.capacity:
            ring.append(key)
        elif self.capacity > 0:  # full: the oldest key makes room
            del self._keys[ring[self._oldest]]
            ring[self._oldest] = key
            self._oldest = (self._oldest + 1) % self.capacity
        else:  # a memory of nothing
            return
        self._keys[key] = origin

    def __len__(self) -> int:
        return len(self._keys)

    def __getstate__(self):
        order = self._ring[self._oldest:] + self._ring[:self._oldest]  # oldest first
        return (self.capacity, [(key, self._keys[key]) for key in order])

    def __setstate__(self, state) -> None:
        self.capacity, items = state
        self._keys, self._ring, self._oldest = {}, [], 0
        for item in items:  # (key, origin) pairs oldest first; older states held bare keys
            key, origin = (item[0], item[1]) if isinstance(item, (tuple, list)) else (item, None)
            if key not in self._keys:
                self._remember(key, origin)


class SeenElsewhere:
    """``connectors.formats.fold_batch``'s ``duplicate`` for the raw message ``origin``: a request
    whose id ``keys`` first saw from another origin; ``count`` counts them."""

    __slots__ = ("keys", "origin", "count")

    def __init__(self, keys: RecentKeys, origin: str) -> None:
        self.keys, self.origin, self.count = keys, origin, 0

    def __call__(self, ev: Event) -> bool:
        if self.keys.seen_elsewhere(ev.request_id, self.origin):
            self.count += 1
            return True
        return False
