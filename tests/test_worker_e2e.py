"""End to end on the real broker (Tansu): ``gatewatch tail file`` → ``gatewatch worker`` →
the notifications topic, which must equal ``gatewatch replay``'s output for the same files.
"""

from __future__ import annotations

import uuid

import pytest

from models.pipeline import build_engine

from streams.topics import topic_names
from tests.worker_helpers import (free_port, health, read_topic, replay_notes, simulate_small, start_worker,
                                  tail_files, wait_for)

pytestmark = [pytest.mark.integration, pytest.mark.slow]


async def test_worker_sends_what_replay_sends(kafka_bootstrap, tmp_path):
    files = simulate_small(tmp_path / "sim")  # 1.5 h, ~22k records, one provider outage
    junk = tmp_path / "junk.ndjson"
    junk.write_bytes(b'not json\n{"neither": "a known format"}\n')
    engine = build_engine()  # rules and models, as `gatewatch replay` and the worker run
    want = replay_notes(files, engine)
    assert any(n["category"] == "error_rate" for n in want)

    prefix, port = f"e2e{uuid.uuid4().hex[:8]}", free_port()
    tail = tail_files(kafka_bootstrap, prefix, tmp_path / "tail", [*files, str(junk)])
    assert tail.wait(60) == 0
    worker = start_worker(kafka_bootstrap, prefix, tmp_path / "worker", port, app_id=prefix)
    try:
        names = topic_names(prefix)
        # Read only once the worker has declared its topics: a consumer subscribing first
        # would make the broker auto-create them with its default partition count.
        assert await wait_for(lambda: _detecting(port), timeout=60)
        got = await read_topic(kafka_bootstrap, names.notifications, until=len(want), timeout=90)
        if got != want:
            import json; (tmp_path.parent / "got.json").write_text(json.dumps([got, want]))
        assert got == want
        rejects = await read_topic(kafka_bootstrap, names.rejects, until=2, timeout=10, settle=1)
        assert sorted(r["reason"] for r in rejects) == ["not_json", "unknown_format"]
        state = await wait_for(lambda: health(port), timeout=10)
        # every event counted once, and the same events as replay's engine counted
        assert state["detect"]["events"] == state["events_ingested"] == engine.events
        assert state["lag"] and not any(state["lag"].values())  # caught up with every raw partition
        metrics = await _metrics(port)
        for name in ("gatewatch_worker_records_in_total", "gatewatch_worker_records_out_total",
                     'gatewatch_worker_rejected_total{reason="not_json",stage="parse"} 1.0',
                     "gatewatch_worker_consumer_lag{", "gatewatch_worker_open_incidents",
                     "gatewatch_worker_detectors"):
            assert name in metrics, name
    finally:
        worker.terminate()
        assert worker.wait(30) == 0  # SIGTERM: a graceful stop


async def _detecting(port):
    state = await health(port)
    return state and state["detect"]



async def _metrics(port: int) -> str:
    import httpx

    async with httpx.AsyncClient(timeout=5.0) as client:
        return (await client.get(f"http://127.0.0.1:{port}/metrics")).text
