"""``replay --jobs N``: the files read in N processes, detection here (``gatewatch.parallel``).

What it must keep from a sequential replay: the same notifications, the same counts (events,
duplicates, rejects by reason, each rejected line kept), a request carried by the LiteLLM
callback and by SpendLogs counted once, and an error in a reader raised, not swallowed."""

from __future__ import annotations

import gzip
import io
import multiprocessing

import orjson
import pytest

from gatewatch import parallel
from gatewatch.cli import main
from gatewatch.parallel import groups_of
from gatewatch.replay import replay
from models.config import Config
from models.pipeline import build_engine
from tests.engine_helpers import T0
from tests.worker_helpers import litellm_payload, simulate_small


def run(paths: list[str], jobs: int, models: bool = False, rejects: io.BytesIO | None = None):
    out = io.BytesIO()
    summary = replay(paths, out, engine=build_engine(Config(), no_models=not models), rejects=rejects, jobs=jobs)
    return out.getvalue(), summary


@pytest.fixture(scope="module")
def sim_files(tmp_path_factory):
    return simulate_small(tmp_path_factory.mktemp("sim"), incidents="provider_outage,budget_breach", hours=3)


@pytest.mark.parametrize("models", [False, True], ids=["rules", "rules+models"])
def test_jobs_send_what_one_process_sends(sim_files, models):
    one, s1 = run(sim_files, 1, models)
    two, s2 = run(sim_files, 2, models)
    assert one.count(b"\n") >= 2  # the incidents paged
    assert two == one
    assert (s2.records, s2.duplicates, s2.rejected, s2.notifications, s2.incidents) == \
           (s1.records, s1.duplicates, s1.rejected, s1.notifications, s1.incidents)
    assert len(s2.readers_cpu) == 2 and all(c > 0 for c in s2.readers_cpu)


def test_many_small_messages_change_nothing(sim_files, monkeypatch):
    """Readers that send every 50 events: minutes close between messages of different readers."""
    one, _ = run(sim_files, 1)
    monkeypatch.setattr(parallel, "CHUNK_EVENTS", 50)
    assert run(sim_files, 3)[0] == one


def spendlog_row(payload: bytes) -> bytes:
    """The same request as a ``LiteLLM_SpendLogs`` row (SOURCES.md §1b)."""
    p = orjson.loads(payload)
    iso = lambda t: f"{__import__('datetime').datetime.utcfromtimestamp(t).isoformat()}Z"  # noqa: E731
    return orjson.dumps({
        "request_id": p["id"], "call_type": p["call_type"], "startTime": iso(p["startTime"]),
        "endTime": iso(p["endTime"]), "model": p["model"], "model_group": p["model_group"],
        "custom_llm_provider": p["custom_llm_provider"], "spend": p["response_cost"],
        "total_tokens": p["total_tokens"], "status": p["status"], "metadata": p["metadata"],
    })


def test_a_request_in_both_litellm_sources_is_counted_once(tmp_path, sim_files):
    payloads = [litellm_payload(T0 + i, request_id=f"r{i}") for i in range(300)]
    callback, spendlogs = tmp_path / "callback.ndjson", tmp_path / "spendlogs.ndjson.gz"
    callback.write_bytes(b"\n".join(payloads) + b"\n")
    with gzip.open(spendlogs, "wb") as f:
        f.write(b"\n".join(spendlog_row(p) for p in payloads[100:]) + b"\n")
    paths = [str(callback), sim_files[1], str(spendlogs)]
    groups = groups_of(paths, 2)
    assert [str(callback), str(spendlogs)] in groups  # the request files share a reader
    _, s1 = run(paths, 1)
    _, s2 = run(paths, 2)
    assert s1.duplicates == s2.duplicates == 200
    assert s2.records == s1.records


def test_rejected_lines_are_counted_and_kept(tmp_path, sim_files):
    bad = tmp_path / "bad.ndjson"
    good = [litellm_payload(T0 + i, request_id=f"b{i}") for i in range(5)]
    bad.write_bytes(b"\n".join([good[0], b"{not json", good[1], b'{"id": "x", "model": "m"}', *good[2:]]) + b"\n")
    paths = [*sim_files, str(bad)]
    kept1, kept2 = io.BytesIO(), io.BytesIO()
    _, s1 = run(paths, 1, rejects=kept1)
    _, s2 = run(paths, 2, rejects=kept2)
    assert sum(s1.rejected.values()) == 2 and s2.rejected == s1.rejected
    lines = lambda buf: sorted(buf.getvalue().splitlines())  # noqa: E731
    assert lines(kept2) == lines(kept1)
    assert {orjson.loads(x)["line"] for x in kept2.getvalue().splitlines()} == {2, 4}


def test_a_bucket_older_than_the_engine_keeps_is_counted_too_late(tmp_path, monkeypatch):
    """One file whose last events are three hours old: the reader sends them in a later message
    than the events before them (a reader's message holds whole batches of 2048 read events),
    after the engine closed their minutes, so they are rejected ``too_late``, counted per event
    and kept. (Within one message nothing is late: see gatewatch/parallel.py.)"""
    now = [litellm_payload(T0 + 10_800 + i, request_id=f"n{i}") for i in range(3000)]
    old = [litellm_payload(T0 + i, request_id=f"o{i}") for i in range(4)]
    path = tmp_path / "late.ndjson"
    path.write_bytes(b"\n".join(now + old) + b"\n")
    monkeypatch.setattr(parallel, "CHUNK_EVENTS", 100)
    kept = io.BytesIO()
    _, s = run([str(path)], 2, rejects=kept)
    assert s.rejected["too_late"] == 4 and s.records == 3000  # records: events taken in
    (record,) = [orjson.loads(x) for x in kept.getvalue().splitlines()]
    assert record["reason"] == "too_late" and record["raw"].startswith("4 events of leaf")


def test_an_error_in_a_reader_is_raised_and_no_reader_is_left(tmp_path, sim_files):
    missing = str(tmp_path / "gone.ndjson")
    with pytest.raises(OSError, match="gone.ndjson"):
        run([*sim_files, missing], 2)
    assert not multiprocessing.active_children()


def test_cli_jobs(tmp_path, sim_files, capsys):
    out1, out2 = tmp_path / "one.ndjson", tmp_path / "two.ndjson"
    assert main(["replay", *sim_files, "--out", str(out1), "--no-models"]) == 0
    assert main(["replay", *sim_files, "--out", str(out2), "--no-models", "--jobs", "2"]) == 0
    assert out2.read_bytes() == out1.read_bytes()
    assert "readers:       2 processes" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["replay", *sim_files, "--out", str(out2), "--jobs", "0"])


def fly_line(ts: float, message: str) -> bytes:
    """A Fly NATS log-stream line (SOURCES.md §3a)."""
    from datetime import datetime, timezone

    stamp = datetime.fromtimestamp(ts, timezone.utc).isoformat().replace("+00:00", "Z")
    return orjson.dumps({"event": {"provider": "app"}, "fly": {"app": {"instance": "abc", "name": "llm-gateway"},
                         "region": "iad"}, "log": {"level": "info"}, "message": message, "timestamp": stamp})


def test_lines_that_count_for_no_series_still_move_event_time(tmp_path, sim_files):
    """An hour of plain app lines after the last request: in one process every event moves event
    time, so the minutes up to the last line close (an open incident resolves there); the
    readers report the newest time of every line they read, not only of the counted ones."""
    end = max(orjson.loads(line)["endTime"] for line in gzip.open(sim_files[0]) if line.strip())
    chatter = tmp_path / "chatter.ndjson"
    chatter.write_bytes(b"\n".join(fly_line(end + 30 * i, "cache warm") for i in range(120)) + b"\n")
    paths = [sim_files[0], str(chatter)]
    one, s1 = run(paths, 1)
    two, s2 = run(paths, 2)
    assert b'"resolved"' in one
    assert two == one and s2.records == s1.records


def test_replay_collects_garbage_less_often_and_restores_the_setting():
    """Replay raises the young-generation threshold while it runs (its events die young) and
    leaves the process's setting as it found it, also when the replay fails."""
    import gc

    from gatewatch.replay import fewer_collections

    before = gc.get_threshold()
    seen = []

    class Spy:  # an events stream that reads the threshold in the middle of the replay
        def __iter__(self):
            seen.append(gc.get_threshold())
            return iter(())

    replay([], io.BytesIO(), engine=build_engine(Config(), no_models=True), events=Spy())
    assert seen and seen[0][0] == 10_000
    assert gc.get_threshold() == before
    with pytest.raises(ZeroDivisionError):
        with fewer_collections():
            1 / 0
    assert gc.get_threshold() == before
