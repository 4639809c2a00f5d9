"""``RecentKeys`` (compiled, setup.py) is part of the worker's snapshot: its pickled state must load
whichever build wrote it, and ``SeenElsewhere`` must count what it drops."""

from __future__ import annotations

import pickle

from connectors.recent import RecentKeys, SeenElsewhere
from models.events import Event


def test_seen_elsewhere_and_the_capacity() -> None:
    keys = RecentKeys(2)
    assert not keys.seen_elsewhere("a", "t/0/1") and not keys.seen_elsewhere("a", "t/0/1")  # itself again
    assert keys.seen_elsewhere("a", "t/1/7")  # a second copy from another message
    assert not keys.seen("b") and keys.seen("b") and not keys.seen(None) and not keys.seen("")
    assert not keys.seen("c") and len(keys) == 2  # "a" forgotten first
    assert not keys.seen_elsewhere("a", "t/1/7")


def test_state_round_trip_and_the_older_state_of_bare_keys() -> None:
    keys = RecentKeys(5)
    keys.seen("x")
    keys.seen_elsewhere("y", "t/0/3")
    copy = pickle.loads(pickle.dumps(keys))
    assert (copy.capacity, len(copy)) == (5, 2) and copy.seen("x") and copy.seen_elsewhere("y", "t/0/4")
    old = RecentKeys.__new__(RecentKeys)
    old.__setstate__((7, ["p", "q"]))  # before origins were kept
    assert old.capacity == 7 and old.seen("p") and old.seen_elsewhere("q", "any")


def test_seen_elsewhere_counts_the_requests_it_drops() -> None:
    keys = RecentKeys()
    first, second = SeenElsewhere(keys, "t/0/1"), SeenElsewhere(keys, "t/2/9")
    ev = Event(1.8e9, "request", "litellm", request_id="r1")
    assert not first(ev) and not first(ev) and second(ev) and second(ev)
    assert (first.count, second.count) == (0, 2)


class _Reference:
    """What ``RecentKeys`` did on an ``OrderedDict`` (insert, then forget the oldest beyond capacity)."""

    def __init__(self, capacity: int) -> None:
        from collections import OrderedDict

        self.capacity, self.keys = capacity, OrderedDict()

    def seen(self, key):
        if not key:
            return False
        if key in self.keys:
            return True
        self.remember(key, None)
        return False

    def seen_elsewhere(self, key, origin):
        if not key:
            return False
        if key not in self.keys:
            self.remember(key, origin)
            return False
        return self.keys[key] != origin

    def remember(self, key, origin):
        self.keys[key] = origin
        if len(self.keys) > self.capacity:
            self.keys.popitem(last=False)


def test_the_ring_forgets_as_an_ordered_dict_does_across_snapshots() -> None:
    import random

    rng = random.Random(4)
    for capacity in (0, 1, 2, 5, 64):
        keys, reference = RecentKeys(capacity), _Reference(capacity)
        for step in range(6000):
            key = rng.choice(["", None, f"k{rng.randrange(3 * capacity + 4)}"])
            origin = f"t/0/{rng.randrange(4)}"
            if rng.random() < 0.5:
                assert keys.seen(key) == reference.seen(key), (capacity, step)
            else:
                assert keys.seen_elsewhere(key, origin) == reference.seen_elsewhere(key, origin), (capacity, step)
            assert len(keys) == len(reference.keys)
            if step % 500 == 499:  # a snapshot: the same keys, origins and order come back
                keys = pickle.loads(pickle.dumps(keys))
                assert keys.__getstate__() == (capacity, list(reference.keys.items()))
