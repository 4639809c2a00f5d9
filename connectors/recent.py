"""A bounded memory of recently seen keys: the one dedup mechanism of the at-least-once paths
(replay's request ids, consumers' batch ids, the detect stage's source batch ids).

No Kafka import here: replay uses it without loading aiokafka.
"""

from __future__ import annotations

from collections import OrderedDict


class RecentKeys:
    """Remembers the last ``capacity`` keys; ``seen(key)`` is True for a repeat, and records it."""

    __slots__ = ("capacity", "_keys")

    def __init__(self, capacity: int = 100_000) -> None:
        self.capacity, self._keys = capacity, OrderedDict[str, None]()

    def seen(self, key: str | None) -> bool:
        if not key:
            return False
        if key in self._keys:
            return True
        self._keys[key] = None
        if len(self._keys) > self.capacity:
            self._keys.popitem(last=False)
        return False

    def __len__(self) -> int:
        return len(self._keys)

    def __getstate__(self):
        return (self.capacity, list(self._keys))

    def __setstate__(self, state) -> None:
        self.capacity, keys = state
        self._keys = OrderedDict.fromkeys(keys)
