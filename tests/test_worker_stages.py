"""The worker's stages without Kafka: equal to replay, watermark rules, snapshot round-trip."""

from __future__ import annotations

import itertools

import orjson
import pytest

from connectors.file_source import route
from connectors.files import open_input
from models.engine import Engine
from streams.snapshot import CHUNK, read_snapshot, write_snapshot
from streams.stages import DetectStage, IngestStage, RawBatch, ingest_batch
from streams.watermark import Watermark
from tests.worker_helpers import replay_notes, simulate_small


def raw_batches(path: str, size: int = 500):
    lines = [line.rstrip(b"\n") for line in open_input(path) if line.strip()]
    for offset, start in enumerate(range(0, len(lines), size)):
        yield RawBatch(f"raw.{route(lines[0])}", 0, offset, b"\n".join(lines[start:start + size]))


@pytest.fixture(scope="module")
def sim_files(tmp_path_factory):
    return simulate_small(tmp_path_factory.mktemp("sim"))


@pytest.mark.parametrize("seconds_per_batch", [0.01, 1.0])
def test_stages_send_what_replay_sends(sim_files, seconds_per_batch):
    """Batches of the three files interleaved, through JSON, as the topics carry them."""
    notes = _through_the_stages(sim_files, 500, Engine(), seconds_per_batch)
    want = replay_notes(sim_files)
    assert want and notes == want


def test_parts_of_a_minute_from_many_messages_add_up_as_replay(sim_files):
    """50-line raw messages: each series' minute arrives in many parts, merged in the engine's
    accumulator until the minute closes (``Engine.apply_partials``), with the anomaly models on."""
    from models.pipeline import build_engine

    notes = _through_the_stages(sim_files, 50, build_engine())
    assert notes and notes == replay_notes(sim_files, engine=build_engine())


def test_the_anomaly_scores_match_replay_to_the_last_digit(tmp_path):
    """The bench worker's 6 h input, rules and models, 500-line messages: every notification equals
    replay's. Rolling each part into the series on arrival, as detect did before, summed a minute
    in another order than replay and 2 of its 26 notifications differed in a score's last digits."""
    from gatewatch.simulate import simulate
    from models.pipeline import build_engine

    incidents = "provider_outage,rate_limit_storm,cache_collapse,runaway_agent,latency_degradation,crash_loop"
    simulate(tmp_path, hours=6, rps=4, incidents=incidents, workers=1, seed=1)
    files = [str(tmp_path / f"{n}.ndjson.gz") for n in ("litellm", "fly", "langfuse")]
    notes = _through_the_stages(files, 500, build_engine())
    assert len(notes) > 20 and notes == replay_notes(files, engine=build_engine())


def test_a_runaway_half_an_hour_into_the_input_pages_through_the_stages_as_in_replay(tmp_path):
    """The engine's clock, and so the minute the input began, starts at the first event time in
    the worker as in replay: series there from that minute are judged after 30 minutes of past
    (``Engine._min_age``), and a runaway 38 minutes in pages in both, with the same messages."""
    files = simulate_small(tmp_path, incidents="runaway_agent")
    notes = _through_the_stages(files, 500, Engine())
    assert notes == replay_notes(files)
    assert any(n["status"] == "firing" and n["category"] == "cost" for n in notes)


def _through_the_stages(files: list[str], size: int, engine: Engine,
                        seconds_per_batch: float = 0.01) -> list[dict]:
    """Raw messages of ``size`` lines of the files, interleaved, through ingest and detect as the
    agents call them (through JSON, as the topics carry them); the notifications, as JSON."""
    stage, notes, now = DetectStage.new(engine, idle_seconds=5), [], 0.0
    for group in itertools.zip_longest(*(raw_batches(p, size) for p in files)):
        for raw in filter(None, group):
            msg, rejects = ingest_batch(raw)
            assert not rejects
            now += seconds_per_batch
            notes += stage.on_partials(orjson.loads(orjson.dumps(msg)), now)
    notes += stage.on_tick(now + 100)  # every input idle: the input has ended
    return orjson.loads(orjson.dumps(notes))


def test_redelivered_and_resent_batches_apply_once(sim_files):
    stage = DetectStage.new(Engine(), idle_seconds=5)
    raws = list(raw_batches(sim_files[0]))[:4]
    for raw in raws + raws[1:3]:  # a new owner re-reads from the last commit
        stage.on_partials(ingest_batch(raw)[0], 1.0)
    resent = RawBatch(raws[0].topic, 0, 99, raws[0].value, batch_id="b-1")
    stage.on_partials(ingest_batch(resent)[0], 1.0)
    stage.on_partials(ingest_batch(RawBatch(resent.topic, 0, 100, resent.value, batch_id="b-1"))[0], 1.0)
    assert stage.duplicates == 3
    assert stage.events == sum(ingest_batch(r)[0]["events"] for r in raws) + ingest_batch(resent)[0]["events"]


def test_watermark_is_the_min_over_active_inputs_and_skips_idle_ones():
    wm = Watermark(idle_seconds=10, finish_margin=90)
    wm.observe("a/0", 1000.0, now=0)
    wm.observe("b/0", 400.0, now=0)
    assert wm.value(now=5) is None  # start-up: every input gets a chance to report
    assert wm.value(now=10) == 400.0  # the lagging input holds detection back
    wm.observe("a/0", 1100.0, now=15)
    assert wm.value(now=15) == 1100.0  # b is quiet for > 10 s: no longer holds it
    assert wm.value(now=26) == 1100.0 + 90 + 1  # all quiet: the input has ended, as Engine.finish
    assert wm.value(now=36) == 1100.0 + 90 + 11  # then event time follows the wall clock
    wm.observe("c/0", None, now=40)  # a batch of rejects only: it has no time to hold
    assert wm.value(now=40) == 1100.0 + 90 + 11  # and the watermark never goes back


def test_snapshot_round_trip_in_chunks_and_two_slots():
    table: dict = {}
    big = {"blob": bytes(range(256)) * (3 * CHUNK // 256), "n": 1}
    write_snapshot(table, big)
    assert read_snapshot(table) == big
    big["n"] = 2
    write_snapshot(table, big)
    assert read_snapshot(table)["n"] == 2
    del table["s1.0"]  # a torn write of the newest slot ...
    table["meta"] = {"gen": 1, "slot": 1, "chunks": 1, "bytes": 5}
    assert read_snapshot(table) is None  # ... is detected, not restored as garbage


def test_the_detect_stage_survives_pickle(sim_files):
    import pickle

    stage = DetectStage.new(Engine(), idle_seconds=5)
    for raw in list(raw_batches(sim_files[0]))[:10]:
        stage.on_partials(ingest_batch(raw)[0], 10.0)
    stage.on_tick(20.0)
    clone = pickle.loads(pickle.dumps(stage))
    assert clone.events == stage.events and clone.engine.closed_minute == stage.engine.closed_minute


def test_budget_timing_and_duplicate_requests_match_replay(tmp_path):
    """Spend reaches the engine at the minute replay counts it (a budget alert fires at the
    same minute), and a request carried twice (callback and SpendLogs: here the LiteLLM
    file again, on another partition) is counted once, as replay counts it."""
    files = simulate_small(tmp_path / "sim", incidents="budget_breach,runaway_agent", hours=3)
    want = replay_notes([*files, files[0]])
    assert any(a["category"] == "budget" for n in want for a in n["alerts"])
    stage, ingest, notes, now = DetectStage.new(Engine(), idle_seconds=5), IngestStage(), [], 0.0
    second = (RawBatch(r.topic, 1, r.offset, r.value) for r in raw_batches(files[0]))
    for n, raw in enumerate(r for group in itertools.zip_longest(*(raw_batches(p) for p in files), second)
                            for r in group if r):
        msg, _ = ingest.ingest(raw)
        now = n * 0.01
        notes += stage.on_partials(orjson.loads(orjson.dumps(msg)), now)
    notes += stage.on_tick(now + 100)  # every input idle: the input has ended
    assert ingest.duplicates > 0
    assert orjson.loads(orjson.dumps(notes)) == want


def test_a_raw_message_read_again_is_not_a_duplicate_of_itself():
    from tests.engine_helpers import T0
    from tests.worker_helpers import litellm_payload

    ingest = IngestStage()
    value = b"\n".join(litellm_payload(T0 + i, request_id=f"r{i}") for i in range(3))
    first, _ = ingest.ingest(RawBatch("raw.litellm", 0, 7, value))
    again, _ = ingest.ingest(RawBatch("raw.litellm", 0, 7, value))  # a new owner re-reads it
    other, _ = ingest.ingest(RawBatch("raw.litellm", 1, 3, value))  # the same requests elsewhere
    assert first["events"] == again["events"] == 3 and other["events"] == 0
    assert first["records"] == 3 and ingest.duplicates == 3


def test_an_input_with_more_to_read_is_slow_not_idle():
    wm = Watermark(idle_seconds=10, finish_margin=90)
    wm.observe("a/0", 1000.0, now=0)
    wm.observe("b/0", 400.0, now=0, caught_up=False)  # its partition had more behind this batch
    wm.observe("a/0", 1100.0, now=30)
    assert wm.value(now=30) == 400.0  # quiet for 30 s, but lagging: it still holds detection back
    wm.observe("b/0", 1050.0, now=31)  # caught up now
    wm.observe("a/0", 1200.0, now=44)
    assert wm.value(now=45) == 1200.0  # b quiet and caught up: idle


def test_ingest_rejects_events_ahead_of_the_service_clock(sim_files):
    """Live, an event far ahead of the wall clock is a clock or unit error: rejected with its
    reason (it would drag the watermark ahead of every other source), its neighbours kept."""
    raw = next(raw_batches(sim_files[0]))
    lines = raw.value.split(b"\n")
    first = orjson.loads(lines[0])
    ahead = {**first, "startTime": first["startTime"] + 10 * 86400, "endTime": first["endTime"] + 10 * 86400,
             "id": "from-the-future"} if isinstance(first.get("startTime"), (int, float)) else None
    assert ahead is not None, "the simulated LiteLLM payloads carry epoch-second times"
    batch = RawBatch(raw.topic, 0, 0, b"\n".join([orjson.dumps(ahead), *lines]))
    now = first["startTime"] + 3600  # the service's clock: an hour after the batch's own time
    msg, rejects = IngestStage(clock=lambda: now).ingest(batch)
    assert [r["reason"] for r in rejects] == ["future_timestamp"]
    assert msg["events"] == len(lines) and msg["max_ts"] < now
    msg_off, rejects_off = IngestStage(max_ahead=None).ingest(batch)
    assert rejects_off == [] and msg_off["events"] == len(lines) + 1


def test_spend_that_arrives_ahead_of_detection_keeps_its_team(tmp_path):
    """The worker applies buckets as they arrive and spend only at its minute's close. When every
    bucket of a long stretch is in before detection catches up (a backlog, a replayed topic), the
    cap's generations move on at the closes (every 180 min) with no new leaf to renew the teams,
    and the spend applied after two of them went to ``~other`` (a 12 h bench: $834 of daily spend
    where replay counted $700). Each team's daily spend must be replay's."""
    import gzip

    start = 1_789_344_000.0  # 2026-09-14 00:00 UTC
    lines = [orjson.dumps({
        "id": f"req-{i}", "startTime": start + 60 * i - 1.0, "endTime": start + 60 * i, "response_cost": 0.5,
        "model": "gpt-4o", "custom_llm_provider": "openai", "status": "success", "total_tokens": 10,
        "metadata": {"user_api_key_team_alias": ("alpha", "beta")[i % 2], "user_api_key_alias": f"key-{i % 2}"},
    }) for i in range(8 * 60)]  # 8 h: past two generations of the cap (idle_minutes 360 / 2)
    path = tmp_path / "litellm.ndjson.gz"
    path.write_bytes(gzip.compress(b"\n".join(lines) + b"\n"))
    reference = Engine()
    replay_notes([str(path)], engine=reference)
    stage = DetectStage.new(Engine(), idle_seconds=5)
    for n in range(0, len(lines), 30):  # every message in before detection moves
        msg, _ = ingest_batch(RawBatch("raw.litellm", 0, n // 30, b"\n".join(lines[n:n + 30])))
        stage.on_partials(orjson.loads(orjson.dumps(msg)), 0.0)
    stage.on_tick(100.0)  # the input has ended: detection catches up
    assert reference.spend == {(20710, "alpha"): 120.0, (20710, "beta"): 120.0}
    assert stage.engine.spend == reference.spend
