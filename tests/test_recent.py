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
