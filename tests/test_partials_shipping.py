"""What the worker's ingest ships: a raw batch's events folded by ``ByCloseMinute``.

Buckets are folded together whatever their close key (a minute's events straddle two with the
default lateness), the side facts stay apart by close key, and the buckets come out in the order
of their first events.
"""

from __future__ import annotations

from models.partials import LEAF, ByCloseMinute
from models.windows import STEP, Bucket
from tests.engine_helpers import T0, request

MINUTE = int(T0 // STEP)


def test_a_minute_on_both_sides_of_its_close_key_ships_as_one_bucket() -> None:
    folder = ByCloseMinute(lateness=30.0)
    folder.add(request(T0 + 10, cost=0.25, team_spend=3.0, budget=50.0))  # close key MINUTE - 1
    folder.add(request(T0 + 50, cost=0.5, ok=False, status=503, team_spend=4.0))  # close key MINUTE
    out = folder.drain()

    assert [(p[0], list(p[1]), p[2]) for p in out["partials"]] == [
        (LEAF, ["openai", "gpt-4o", "support", "support-svc"], MINUTE)]
    bucket = Bucket.from_row(out["partials"][0][3])
    assert (bucket.requests, bucket.errors, bucket.e5xx, bucket.cost) == (2, 1, 1, 0.75)
    assert out["events"] == 2 and (out["min_ts"], out["max_ts"]) == (T0 + 10, T0 + 50)

    # Each side fact under the close key at which replay's engine takes it in.
    day = int(T0 // 86400)
    meta = dict((key, facts) for key, facts in out["meta"])
    assert sorted(meta) == [MINUTE - 1, MINUTE]
    assert meta[MINUTE - 1]["spend"] == [[day, "support", 0.25]]
    assert meta[MINUTE - 1]["reported"] == [[day, "support", 3.0]]
    assert meta[MINUTE - 1]["budgets"] == [("support", 50.0)]  # a list once through JSON
    assert meta[MINUTE]["spend"] == [[day, "support", 0.5]] and meta[MINUTE]["reported"] == [[day, "support", 4.0]]
    assert meta[MINUTE]["budgets"] == []

    assert folder.drain() == {"min_ts": None, "max_ts": None, "events": 0, "partials": [], "meta": []}


def test_buckets_come_in_the_order_of_their_first_events() -> None:
    """Not sorted: the detecting engine admits new leaves under a cardinality cap in the order
    it meets them, as replay does in event order."""
    folder = ByCloseMinute(lateness=30.0)
    for ts, team in ((T0 + 1, "zeta"), (T0 + 2, "alpha"), (T0 + 61, "alpha"), (T0 + 62, "mid"), (T0 + 63, "zeta")):
        folder.add(request(ts, team=team, key=f"{team}-svc"))
    got = [(p[1][2], p[2]) for p in folder.drain()["partials"]]
    assert got == [("zeta", MINUTE), ("alpha", MINUTE), ("alpha", MINUTE + 1), ("mid", MINUTE + 1),
                   ("zeta", MINUTE + 1)]
