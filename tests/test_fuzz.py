"""Property tests over every parser and replay: mangled real records never crash anything, and
every line is either processed or rejected with a reason (in = processed + rejected).

The same mutations at scale (a million lines, seeded) are ``benchmarks/fuzz_parsers.py``.
"""

from __future__ import annotations

import gzip
import io
import math
import random
from pathlib import Path

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.files import iter_file, iter_lines
from connectors.formats import parse_bytes, parse_one
from gatewatch.replay import replay
from models.engine import Engine
from models.events import Event, Rejected
from tests.fuzz_inputs import SEEDS, gzip_damaged, mutate, outcome

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
_STRINGS = ("provider", "model", "team", "key", "app", "instance", "region", "error_class", "call_type",
            "request_id", "trace_id", "level", "message", "signal", "source", "kind")
_NUMBERS = ("cost", "latency", "ttft", "lag", "value", "budget", "team_spend")

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)


def assert_sane(ev: Event) -> None:
    """What the windows rely on: real times, finite numbers, strings where labels go."""
    assert 946684800 <= ev.ts <= 4102444800
    for name in _STRINGS:
        assert type(getattr(ev, name)) is str, name
    for name in _NUMBERS:
        value = getattr(ev, name)
        assert value is None or (type(value) in (int, float) and math.isfinite(value)), (name, value)
    assert type(ev.tokens) is int and type(ev.status) is int and type(ev.ok) is bool


@FAST
@given(st.integers(0, 2**32))
def test_a_mangled_real_line_is_processed_or_rejected(seed: int) -> None:
    rng = random.Random(seed)
    line = mutate(rng, rng.choice(SEEDS))
    events, rejects = outcome(line)
    assert events or rejects or not line.strip()
    assert all(r.reason and r.line_no == 1 for r in rejects)
    engine = Engine()
    for ev in events:
        assert_sane(ev)
        engine.process(ev)
    engine.finish()


@FAST
@given(st.sampled_from(SEEDS), st.data())
def test_any_json_value_anywhere_in_a_record_is_rejected_not_raised(seed: dict, data: st.DataObject) -> None:
    record = orjson.loads(orjson.dumps(seed))
    target, key = record, data.draw(st.sampled_from(sorted(record)))
    while isinstance(target[key], dict) and target[key] and data.draw(st.booleans()):
        target, key = target[key], data.draw(st.sampled_from(sorted(target[key])))
    target[key] = data.draw(json_values)
    try:
        assert_sane(parse_one(record))
    except Rejected as error:
        assert error.reason in ("wrong_type", "missing_field", "unknown_format", "bad_timestamp")


@FAST
@given(st.binary(max_size=400))
def test_arbitrary_bytes_never_crash(raw: bytes) -> None:
    for item in iter_lines(io.BytesIO(raw), "bytes"):
        assert isinstance(item, list) or (item.reason and item.file == "bytes")
    try:
        parse_bytes(raw)
    except Rejected:
        pass


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32))
def test_a_damaged_gzip_yields_what_was_readable_then_a_reject(seed: int) -> None:
    rng = random.Random(seed)
    body = b"".join(orjson.dumps(rng.choice(SEEDS)) + b"\n" for _ in range(200))
    stream = io.BufferedReader(gzip.GzipFile(fileobj=io.BytesIO(gzip_damaged(rng, body))))  # type: ignore[arg-type]
    items = list(iter_lines(stream, "damaged.gz"))
    rejects = [i for i in items if not isinstance(i, list)]
    events = sum(len(i) for i in items if isinstance(i, list))
    assert events <= 200
    if events < 200:  # something was lost: it says so, with a reason
        assert rejects and all(r.reason for r in rejects)


def test_nesting_deeper_than_the_stack_is_rejected() -> None:
    for line in (b'{"a":' * 100_000, b"[" * 100_000, b'{"message": ' + b"[" * 5000 + b"]" * 5000 + b', "level": "x"}'):
        events, rejects = outcome(line)
        assert not events and [r.reason for r in rejects] == ["not_json"]


def test_non_finite_and_implausible_values_are_rejected_with_their_reason() -> None:
    base = SEEDS[0]
    cases = {
        "response_cost": ("NaN", "wrong_type"), "endTime": (1e300, "bad_timestamp"),
        "startTime": ("x", "wrong_type"), "id": ({"nested": 1}, "wrong_type"),
    }
    for field, (value, reason) in cases.items():
        events, rejects = outcome(orjson.dumps({**base, field: value}))
        assert not events and [r.reason for r in rejects] == [reason], field
    for changes, reason in (({"response_cost": "1e999"}, "wrong_type"), ({"endTime": "9999-12-31T23:59:59Z"},
                            "bad_timestamp"), ({"endTime": 1.7e15}, "bad_timestamp")):  # epoch microseconds
        events, rejects = outcome(orjson.dumps({**base, **changes}))
        assert not events and [r.reason for r in rejects] == [reason], changes


def test_replay_counts_add_up_over_mangled_files(tmp_path: Path) -> None:
    """in = processed + rejected: replay (clock, merge, dedup, lateness) loses nothing uncounted.

    Counted against reading each file on its own: a record is a line, an array item, or an
    indented object over several lines (a mangled line may open one, as ``flyctl`` output does).
    """
    rng = random.Random(11)
    plain, damaged = tmp_path / "plain.ndjson", tmp_path / "damaged.ndjson.gz"
    plain.write_bytes(b"\n".join(mutate(rng, rng.choice(SEEDS)) for _ in range(3000)) + b"\n")
    damaged.write_bytes(gzip_damaged(rng, b"\n".join(orjson.dumps(s) for s in SEEDS * 20)))
    units = sum(len(events) + len(rejects) for events, rejects in (_read(plain), _read(damaged)))
    rejects = io.BytesIO()
    summary = replay([str(plain), str(damaged)], io.BytesIO(), rejects=rejects)
    rejected = sum(summary.rejected.values())
    assert summary.records + rejected == units
    kept = [orjson.loads(line) for line in rejects.getvalue().splitlines()]
    assert len(kept) == rejected and all(k["reason"] for k in kept)
    assert summary.rejected["future_timestamp"] > 0 and summary.records > 1000


def _read(path: Path) -> tuple[list, list]:
    events, rejects = [], []
    for item in iter_file(path):
        (events.extend(item) if isinstance(item, list) else rejects.append(item))
    return events, rejects


def test_gzip_of_mangled_lines_reads_like_the_plain_file(tmp_path: Path) -> None:
    rng = random.Random(5)
    body = b"\n".join(mutate(rng, rng.choice(SEEDS)) for _ in range(500)) + b"\n"
    (tmp_path / "a.ndjson").write_bytes(body)
    (tmp_path / "a.ndjson.gz").write_bytes(gzip.compress(body))
    plain, packed = _read(tmp_path / "a.ndjson"), _read(tmp_path / "a.ndjson.gz")
    assert [r.reason for r in plain[1]] == [r.reason for r in packed[1]]
    assert len(plain[0]) == len(packed[0])


def test_a_line_that_ends_an_unclosed_object_early_is_still_decoded() -> None:
    good = orjson.dumps([SEEDS[0], SEEDS[6]])
    items = list(iter_lines(io.BytesIO(b"{\n" + good + b"\n"), "f"))
    assert [i.reason for i in items if not isinstance(i, list)] == ["not_json"]  # the unclosed "{"
    assert sum(len(i) for i in items if isinstance(i, list)) == 2  # the array after it, decoded


@FAST
@given(st.integers(0, 2**32), st.integers(1, 5))
def test_the_litellm_receiver_body_splitter_accepts_or_refuses_with_a_reason(seed: int, count: int) -> None:
    from connectors.http_receiver import MalformedBody, split_body

    rng = random.Random(seed)
    lines = [mutate(rng, rng.choice(SEEDS)) for _ in range(count)]
    body = b"\n".join(lines) if rng.random() < 0.5 else b"[" + b",".join(lines) + b"]"
    try:
        records = split_body(body)
    except MalformedBody as error:
        assert str(error)
    else:
        assert all(isinstance(orjson.loads(r), dict) for r in records)
