"""``gatewatch.merge.merge_by_time`` gives exactly ``heapq.merge(*files, key=ts)``: on files in
time order (the usual case, merged in sorted batches) and on files out of order (where it hands
over to ``heapq.merge`` at the first event out of order)."""

from __future__ import annotations

import heapq
import random
from operator import attrgetter

import pytest

from gatewatch.merge import merge_by_time
from models.events import REQUEST, Event


def _files(rng: random.Random, ordered: bool) -> list[list[Event]]:
    files = []
    for f in range(rng.randint(1, 4)):
        ts = sorted(rng.choice([rng.randint(0, 40), rng.random() * 40]) for _ in range(rng.randint(0, 120)))
        if not ordered and ts and rng.random() < 0.8:
            for _ in range(rng.randint(1, 3)):  # a few events out of place
                i, j = rng.randrange(len(ts)), rng.randrange(len(ts))
                ts[i], ts[j] = ts[j], ts[i]
        files.append([Event(t, REQUEST, f"file{f}", request_id=f"{f}:{n}") for n, t in enumerate(ts)])
    return files


def _chunked(events: list[Event], rng: random.Random):
    at = 0
    while at < len(events):
        size = rng.randint(1, 25)
        yield events[at:at + size]
        at += size


@pytest.mark.parametrize("ordered", [True, False])
def test_merge_by_time_is_heapq_merge(ordered: bool) -> None:
    rng = random.Random(11 if ordered else 12)
    for _ in range(400):
        files = _files(rng, ordered)
        expected = [ev.request_id for ev in heapq.merge(*files, key=attrgetter("ts"))]
        got = [ev.request_id for batch in merge_by_time([_chunked(f, rng) for f in files]) for ev in batch]
        assert got == expected


def test_ties_go_to_the_earlier_file_then_file_order() -> None:
    a = [Event(1.0, REQUEST, "a", request_id=f"a{i}") for i in range(3)]
    b = [Event(1.0, REQUEST, "b", request_id=f"b{i}") for i in range(3)]
    got = [ev.request_id for batch in merge_by_time([iter([b[:2], b[2:]]), iter([a])]) for ev in batch]
    assert got == ["b0", "b1", "b2", "a0", "a1", "a2"]


def test_replay_deduper_forgets_as_recent_keys_does() -> None:
    # Replay's request dedup is RecentKeys.seen written out (a set and a ring): the same answers,
    # forgetting the oldest id first, over a long random stream with a small memory.
    from connectors.recent import RecentKeys
    from gatewatch.replay import Deduper

    rng = random.Random(5)
    for capacity in (1, 2, 7, 50):
        deduper, recent = Deduper(capacity), RecentKeys(capacity)
        answers = []
        for _ in range(5_000):
            rid = rng.choice(["", f"r{rng.randrange(3 * capacity + 3)}"])
            kind = rng.choice([REQUEST, REQUEST, "log"])
            ev = Event(1.0, kind, "litellm", request_id=rid)
            expected = kind == REQUEST and recent.seen(rid)
            answers.append(deduper.duplicate(ev))
            assert answers[-1] == expected, (capacity, rid)
        assert any(answers) and not all(answers)
