"""``Bucket``'s counters are merged and subtracted by written-out functions (models/windows.py,
compiled by setup.py): a counter added to ``Bucket`` and forgotten there would silently stay 0
in every window sum."""

from __future__ import annotations

import pickle

import orjson

from models.windows import _COUNTERS, Bucket, SeriesWindow, bin_key, bin_value, quantile


def test_merge_and_subtract_cover_every_counter() -> None:
    one = Bucket(**{name: i + 1 for i, name in enumerate(_COUNTERS)}, latency={3: 2}, lag={5: 1}, lag_max=4.0)
    total = Bucket()
    total.merge(one)
    total.merge(one)
    assert [getattr(total, name) for name in _COUNTERS] == [2 * (i + 1) for i in range(len(_COUNTERS))]
    assert (total.latency, total.lag, total.lag_max) == ({3: 4}, {5: 2}, 4.0)
    total.subtract(one)
    assert total == Bucket(**{name: i + 1 for i, name in enumerate(_COUNTERS)}, latency={3: 2}, lag={5: 1},
                           lag_max=4.0)
    plain = Bucket()
    plain.merge_counters(one)
    assert [getattr(plain, name) for name in _COUNTERS] == [i + 1 for i in range(len(_COUNTERS))]
    assert (plain.latency, plain.lag) == ({}, {})  # the histograms are left out


def test_partials_encoding_covers_every_counter() -> None:
    """``to_row`` and ``from_row`` (a partials message's buckets) are written out too."""
    one = Bucket(**{name: i + 1 for i, name in enumerate(_COUNTERS)}, latency={3: 2, -40: 1}, lag={5: 1}, lag_max=4.0)
    row = one.to_row()
    assert row[0] == [i + 1 for i in range(len(_COUNTERS))]  # in _COUNTERS order
    assert row[1:] == [[3, 2, -40, 1], [5, 1], 4.0]
    assert Bucket.from_row(row) == one
    assert Bucket.from_row(orjson.loads(orjson.dumps(row))) == one
    assert Bucket().to_row() == [[], [], [], 0.0] and Bucket.from_row(Bucket().to_row()) == Bucket()


def test_a_row_stops_at_its_last_counter_that_is_not_0() -> None:
    """A request bucket's row ends at ``latency_n``; a short row reads back with 0 of each type."""
    calls = Bucket(requests=3, e429=1, cost=0.5, tokens=90, latency={7: 2}, latency_n=2)
    row = orjson.loads(orjson.dumps(calls.to_row()))
    assert row[0] == [3, 0, 0, 1, 0, 0, 0.0, 0.5, 90, 2]
    back = Bucket.from_row(row)
    assert back == calls
    assert type(back.gauge_sum) is float and type(back.saved_cost) is float and type(back.traces) is int
    logs = Bucket(crash=2)
    assert logs.to_row()[0] == [0] * _COUNTERS.index("crash") + [2]
    assert Bucket.from_row(orjson.loads(orjson.dumps(logs.to_row()))) == logs


def test_buckets_as_older_workers_shipped_them_are_read() -> None:
    """Before ``to_row``, a bucket went out as a dict of the counters that were not 0 and its
    histograms with string keys: what such a worker left in the partials topic still applies."""
    legacy = {"requests": 4, "errors": 1, "cost": 0.75, "latency": {"3": 2, "-40": 1}, "latency_n": 3, "unknown": 9}
    assert Bucket.from_dict(legacy) == Bucket(requests=4, errors=1, cost=0.75, latency={3: 2, -40: 1}, latency_n=3)
    assert Bucket.from_dict({}) == Bucket()


def test_buckets_do_not_share_histograms_and_survive_pickle() -> None:
    a, b = Bucket(), Bucket()
    a.latency[1] = 1
    assert b.latency == {} and Bucket.from_row(a.to_row()) == a
    w = SeriesWindow(((5, 0), (60, 5)), frozenset({(60, 5)}))
    bucket, late = w.bucket_for(10)
    bucket.merge(Bucket(requests=3, latency={2: 3}))
    w.close(10)
    copy = pickle.loads(pickle.dumps(w))
    assert copy.sums == w.sums and copy.buckets == w.buckets and copy.closed == 10 and not late
    copy.close(11)  # the slide plan is rebuilt after a restore
    assert copy.sums[(5, 0)].requests == 3


def test_written_out_inits_keep_the_declared_defaults() -> None:
    """``Event``, ``Bucket`` and ``Reading`` have a written-out ``__init__`` (compiled, a dataclass's
    generated one would run interpreted): its defaults must stay those the fields declare."""
    import dataclasses

    from models.events import Event
    from models.metrics import Reading

    for cls, required in ((Event, (1.0, "request", "litellm")), (Bucket, ()), (Reading, (1.0, 2.0, 3.0, 4.0))):
        made = cls(*required)
        for f in dataclasses.fields(cls)[len(required):]:
            declared = f.default_factory() if f.default is dataclasses.MISSING else f.default
            assert getattr(made, f.name) == declared, (cls.__name__, f.name)


def test_histogram_bins_share_one_key_object():
    """Every histogram holds the same int object for a bin (``bin_key``), so that merging and
    reading them finds keys by identity; the fold and the worker's partials messages use it."""
    from models.windows import Bucket, bin_key, count_bin, latency_bin

    b = latency_bin(0.05)  # a negative bin: CPython does not share such ints by itself
    assert b < -5
    assert bin_key(b) is bin_key(int(str(b))) and bin_key(b) == b
    first, second = {}, {}
    count_bin(first, latency_bin(0.05))
    count_bin(second, latency_bin(0.0501))
    (k1,), (k2,) = first, second
    assert k1 is k2 and first == {b: 1}
    shipped = Bucket.from_row(orjson.loads(orjson.dumps(Bucket(latency=dict(first), latency_n=1).to_row())))
    (k3,) = shipped.latency
    assert k3 is k1
    assert bin_key(10_000) == 10_000  # outside the table: a plain int, equal all the same


def _ascending_quantile(hist: dict[int, int], q: float) -> float | None:
    """The quantile as it was first written: sort the bins, count up from the bottom."""
    total = sum(hist.values())
    if total == 0:
        return None
    rank, seen = q * (total - 1), 0
    for b in sorted(hist):
        seen += hist[b]
        if seen > rank:
            return bin_value(b)
    return bin_value(max(hist))


def test_quantile_from_the_top_is_the_ascending_count() -> None:
    # Random histograms (empty, one bin, gaps, zero counts, bins outside the shared-key table) and
    # quantiles, the rules' and odd ones: the top-down walk stops at the very same bin.
    import random

    rng = random.Random(11)
    for _ in range(50_000):
        hist: dict[int, int] = {}
        centre = rng.randrange(-120, 320)
        for _ in range(rng.randrange(0, 30)):
            b = bin_key(centre + int(rng.expovariate(0.2)) * rng.choice((1, -1)))
            hist[b] = hist.get(b, 0) + rng.choice((1, 1, 1, 2, 7, 100, 0))
        q = rng.choice((0.95, 0.5, 0.99, 0.0, 1.0, 0.05, rng.random(), 1.5, -0.2))
        assert quantile(hist, q) == _ascending_quantile(hist, q), (hist, q)
    assert quantile({bin_key(3): 1}, float("nan")) == bin_value(3)  # NaN: as the ascending count


def test_a_minutes_cost_adds_up_to_the_same_bits_in_any_order() -> None:
    """Replay folds a minute's calls one by one; the worker folds each Kafka message's calls
    into a partial bucket and adds the partials in the order they arrive. On the cost grid
    (``models.partials.grid_cost``) both give the same bits, and so does a window that adds
    and then subtracts them: the worker's notifications equal replay's to the last digit."""
    import random

    from models.events import REQUEST, Event
    from models.partials import fold_request, grid_cost

    rng = random.Random(7)
    costs = [rng.choice([0.0003171, 0.0125, 1e-7, 0.42]) * rng.random() for _ in range(2000)]
    calls = [Event(ts=0.0, kind=REQUEST, source="test", cost=c) for c in costs]

    def folded(order: list[Event], parts: int) -> float:
        total = Bucket()
        for i in range(parts):
            part = Bucket()
            for ev in order[i::parts]:
                fold_request(part, ev, grid_cost(ev.cost))
            total.merge(part)
        return total.cost

    one_by_one = folded(calls, 1)
    shuffled = calls[:]
    rng.shuffle(shuffled)
    assert folded(shuffled, 1) == one_by_one and folded(shuffled, 37) == one_by_one
    window = Bucket()
    for _ in range(3):
        window.merge(Bucket(cost=one_by_one))
    window.subtract(Bucket(cost=one_by_one))
    window.subtract(Bucket(cost=one_by_one))
    assert window.cost == one_by_one
    plain = sum(costs)  # the raw floats, in two orders: not the same bits (why the grid is there)
    assert sum(reversed(costs)) != plain or sum(sorted(costs)) != plain
