"""A bounded memory of recently seen keys: the one dedup mechanism of the at-least-once paths
(replay's request ids, consumers' batch ids, the detect stage's source batch ids).

No Kafka import here: replay uses it without loading aiokafka. Compiled (setup.py): the worker's
ingest asks it once per request (``SeenElsewhere``).
"""

from __future__ import annotations

from collections import OrderedDict

from models.events import Event


class RecentKeys:
    """Remembers the last ``capacity`` keys; ``seen(key)`` is True for a repeat, and records it."""

    __slots__ = ("capacity", "_keys")

    def __init__(self, capacity: int = 100_000) -> None:
        self.capacity, self._keys = capacity, OrderedDict[str, str | None]()

    def seen(self, key: str | None) -> bool:
        if not key:
            return False
        if key in self._keys:
            return True
        self._keys[key] = None  # inline: replay calls this once per request
        if len(self._keys) > self.capacity:
            self._keys.popitem(last=False)
        return False

    def seen_elsewhere(self, key: str | None, origin: str) -> bool:
        """True for a key first seen from another ``origin``; the same origin read again
        (an at-least-once redelivery of one message) is not a repeat of itself."""
        if not key:
            return False
        first = self._keys.get(key, self)
        if first is self:
            self._remember(key, origin)
            return False
        return first != origin

    def _remember(self, key: str, origin: str | None) -> None:
        self._keys[key] = origin
        if len(self._keys) > self.capacity:
            self._keys.popitem(last=False)

    def __len__(self) -> int:
        return len(self._keys)

    def __getstate__(self):
        return (self.capacity, list(self._keys.items()))

    def __setstate__(self, state) -> None:
        self.capacity, items = state
        keys = OrderedDict[str, str | None]()
        for item in items:  # (key, origin) pairs; older states held bare keys
            if isinstance(item, (tuple, list)):
                keys[item[0]] = item[1]
            else:
                keys[item] = None
        self._keys = keys


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
