"""Clock trouble: far-future and far-past timestamps, skewed sources, out-of-order batches.

Bounded lateness, rejected-with-reason beyond it, and no window corrupted: the notifications of
a stream with clock trouble are those of the clean stream.
"""

from __future__ import annotations

import gzip
import io
import random
from pathlib import Path

import orjson
import pytest

from connectors.files import iter_file
from gatewatch.replay import replay
from models.clock import FUTURE, SourceClock
from models.config import Config
from models.engine import Engine
from models.events import REQUEST, Event
from models.pipeline import build_engine
from tests.worker_helpers import simulate_small


def decide(times: list[float], **options: float) -> list[tuple[bool, float]]:
    clock: SourceClock[int] = SourceClock(**options)
    return [(admitted, ts) for admitted, ts, _ in clock.feed((ts, i) for i, ts in enumerate(times))]


@pytest.mark.parametrize("times, admitted", [
    ([100, 110, 5e9, 120, 130], [100, 110, 120, 130]),  # one outlier ahead
    ([5e9, 100, 110, 120], [100, 110, 120]),  # a stream that starts with one
    ([100, 110, 120, 90_000, 90_010, 90_020, 90_030], [100, 110, 120, 90_000, 90_010, 90_020, 90_030]),  # a gap
    ([100, 110, 5e9], [100, 110]),  # a lone outlier at the end
    ([100, 110, 90_000, 90_010], [100, 110, 90_000, 90_010]),  # a short tail after a gap
    ([100], [100]),
    ([100, 50, 20, 110], [100, 50, 20, 110]),  # behind is the engine's business (bounded lateness)
    ([100, 110, 5e9, 5e9 + 1, 120], [100, 110, 120]),  # two outliers do not make a jump
])
def test_source_clock(times: list[float], admitted: list[float]) -> None:
    decided = decide(times)
    assert sorted(ts for ok, ts in decided if ok) == sorted(admitted)
    assert len(decided) == len(times)  # every event decided once: admitted or rejected


@pytest.fixture(scope="module")
def outage(tmp_path_factory) -> list[str]:
    return simulate_small(tmp_path_factory.mktemp("sim"), hours=1.5)


def events_of(paths: list[str]) -> list[Event]:
    out = [ev for p in paths for item in iter_file(p) if isinstance(item, list) for ev in item]
    out.sort(key=lambda ev: ev.ts)
    return out


def notes_of(events: list[Event]) -> list[dict]:
    engine = build_engine(Config())
    notes = [n for ev in events for n in engine.process(ev)]
    return notes + engine.finish()


def test_out_of_order_within_the_lateness_changes_nothing(outage: list[str]) -> None:
    events = events_of(outage)
    clean = notes_of(events)
    rng = random.Random(3)
    jittered = sorted(events, key=lambda ev: ev.ts + rng.uniform(0, 20))  # batches reordered by < 30 s
    assert jittered != events
    assert notes_of(jittered) == clean and any(n["category"] == "error_rate" for n in clean)


def _replay(paths: list[str]) -> tuple[list[dict], dict, list[dict]]:
    out, rejects = io.BytesIO(), io.BytesIO()
    summary = replay(paths, out, rejects=rejects)
    notes = [orjson.loads(line) for line in out.getvalue().splitlines()]
    return notes, summary.rejected, [orjson.loads(line) for line in rejects.getvalue().splitlines()]


def _with_lines(path: str, dest: Path, extra: dict[int, bytes]) -> str:
    """A copy of the gzip file ``path`` with ``extra`` lines inserted before the given line numbers."""
    lines = gzip.decompress(Path(path).read_bytes()).splitlines()
    for at in sorted(extra, reverse=True):
        lines.insert(at, extra[at])
    dest.write_bytes(gzip.compress(b"\n".join(lines) + b"\n", 1))
    return str(dest)


def test_timestamps_far_ahead_or_far_behind_are_rejected_and_change_nothing(outage: list[str], tmp_path) -> None:
    clean, _, _ = _replay(outage)
    litellm = gzip.decompress(Path(outage[0]).read_bytes()).splitlines()
    sample = orjson.loads(litellm[len(litellm) // 2])

    def shifted(seconds: float, rid: str) -> bytes:
        return orjson.dumps({**sample, "id": rid, "startTime": sample["startTime"] + seconds,
                             "endTime": sample["endTime"] + seconds})

    n = len(litellm)
    extra = {n // 3: shifted(86400 * 365, "future-1"),  # a clock a year ahead
             n // 2: shifted(3 * 3600, "future-2"),  # three hours ahead
             n - 10: shifted(-6 * 3600, "past-1"),  # six hours behind: beyond the retention
             10: shifted(86400 * 365 * 40, "future-3")}  # 40 years ahead (epoch in the wrong unit)
    troubled = [_with_lines(outage[0], tmp_path / "litellm.ndjson.gz", extra), *outage[1:]]
    notes, reasons, kept = _replay(troubled)
    assert notes == clean
    assert reasons[FUTURE] == 3 and reasons["too_late"] == 1
    assert {k["reason"] for k in kept} == {FUTURE, "too_late"}
    assert all("future" in k["raw"] or "past" in k["raw"] for k in kept)


def test_a_source_with_a_skewed_clock_still_lets_the_outage_page(outage: list[str]) -> None:
    """Fly's clock ten minutes ahead: the merge orders by each source's time, so LiteLLM's windows
    are not late and the provider outage still pages; the skewed source is not lost either."""
    events = events_of(outage)
    skewed = sorted((_shift(ev, 600) if ev.source == "fly" else ev for ev in events), key=lambda ev: ev.ts)
    engine = build_engine(Config())
    notes = [n for ev in skewed for n in engine.process(ev)] + engine.finish()
    assert any(n["category"] == "error_rate" and n["labels"].get("provider") == "openai" for n in notes)
    assert engine.late_dropped == 0


def _shift(ev: Event, seconds: float) -> Event:
    ev.ts += seconds
    return ev


def test_a_gap_of_days_is_crossed_without_closing_every_minute() -> None:
    engine = Engine()
    t0 = 1_787_311_387.0
    for i in range(100):
        engine.process(Event(t0 + i, REQUEST, "litellm", "openai", "gpt-4o", "t", "k"))
    closed: list[int] = []

    class Closes:  # the hook replay --report uses: called at every minute close
        def on_minute(self, engine, minute: int) -> None:
            closed.append(minute)

    engine.recorder = Closes()
    engine.process(Event(t0 + 30 * 86400, REQUEST, "litellm", "openai", "gpt-4o", "t", "k"))
    assert 60 < len(closed) < 400  # the windows drained, then the quiet month skipped
    assert engine.closed_minute == int((t0 + 30 * 86400 - engine.config.lateness) // 60) - 1
