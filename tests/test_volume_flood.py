"""Volume floods: a burst of 20x normal traffic for 10 minutes.

What is comparable is the same *events* taken in at different rates: the notifications depend on
log time only, so replaying the burst as fast as the machine goes, or paced, or feeding it through
Kafka faster than the worker can consume (the consumer group's lag grows, then drains), must give
the same notifications, with every record counted and none dropped.
"""

from __future__ import annotations

import asyncio
import gzip
import io
import time
import uuid
from pathlib import Path

import orjson
import pytest

from gatewatch.replay import replay
from models.pipeline import build_engine
from streams.topics import topic_names
from tests.worker_helpers import (
    free_port,
    health,
    read_topic,
    replay_notes,
    simulate_small,
    start_worker,
    tail_files,
    wait_for,
)

BURST_FACTOR, BURST_MINUTES = 20, 10


def with_burst(files: list[str], out: Path) -> tuple[list[str], int]:
    """``files`` plus a file of LiteLLM records that makes 10 minutes of traffic 20 times normal:
    each record of those minutes 19 more times (new ids, the same second)."""
    records = [orjson.loads(line) for line in gzip.decompress(Path(files[0]).read_bytes()).splitlines()]
    start = records[0]["endTime"] + 1800
    window = [r for r in records if start <= r["endTime"] < start + BURST_MINUTES * 60]
    burst = []
    for r in window:
        for copy in range(1, BURST_FACTOR):
            burst.append({**r, "id": f"{r['id']}-burst{copy}", "startTime": r["startTime"] + copy * 1e-3,
                          "endTime": r["endTime"] + copy * 1e-3})
    burst.sort(key=lambda r: r["endTime"])
    out.write_bytes(gzip.compress(b"\n".join(orjson.dumps(r) for r in burst) + b"\n", 1))
    return [*files, str(out)], len(burst)


@pytest.fixture(scope="module")
def burst_files(tmp_path_factory) -> tuple[list[str], int]:
    root = tmp_path_factory.mktemp("burst")
    return with_burst(simulate_small(root / "sim"), root / "burst.ndjson.gz")


def _replay(files: list[str], speed: float | None) -> tuple[list[dict], object]:
    out = io.BytesIO()
    summary = replay(files, out, speed=speed)
    return [orjson.loads(line) for line in out.getvalue().splitlines()], summary


def test_the_burst_replayed_fast_or_paced_gives_the_same_notifications(burst_files) -> None:
    files, extra = burst_files
    lines = sum(len(gzip.decompress(Path(f).read_bytes()).splitlines()) for f in files)
    fast, summary = _replay(files, None)
    assert summary.records + sum(summary.rejected.values()) == lines and not summary.rejected  # nothing dropped
    assert extra > 10_000 and any(n["category"] == "error_rate" for n in fast)
    t0 = time.monotonic()
    paced, _ = _replay(files, 5400.0)  # 1.5 h of log time in about a second
    assert time.monotonic() - t0 >= 0.9  # it really was paced
    assert paced == fast


def test_the_burst_does_not_change_what_pages_about_the_outage(burst_files) -> None:
    files, _ = burst_files
    with_burst_notes, _ = _replay(files, None)
    calm_notes, _ = _replay(files[:-1], None)

    def pages(notes: list[dict]) -> set:
        return {(n["category"], tuple(sorted(n["labels"].items()))) for n in notes
                if n["status"] == "firing" and n["category"] == "error_rate"}
    assert pages(with_burst_notes) == pages(calm_notes) != set()


async def _group_lag(bootstrap: str, group: str, topics: list[str]) -> int | None:
    """Records on ``topics`` not yet committed by ``group`` (None while the group has no offsets)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        parts = [TopicPartition(t, p) for t in topics for p in (consumer.partitions_for_topic(t) or ())]
        if not parts:
            await consumer.client.force_metadata_update()
            parts = [TopicPartition(t, p) for t in topics for p in (consumer.partitions_for_topic(t) or ())]
        ends = await consumer.end_offsets(parts)
        lag, known = 0, False
        for tp in parts:
            committed = await consumer.committed(tp)
            known = known or committed is not None
            lag += ends[tp] - (committed or 0)
        return lag if known else None
    finally:
        await consumer.stop()


@pytest.mark.integration
@pytest.mark.slow
async def test_the_worker_takes_the_burst_through_kafka_lag_and_sends_what_replay_sends(
        kafka_bootstrap, burst_files, tmp_path) -> None:
    files, _ = burst_files
    want = replay_notes(files, build_engine())
    prefix, port = f"burst{uuid.uuid4().hex[:8]}", free_port()
    names = topic_names(prefix)
    raw_topics = list(names.raw)
    worker = start_worker(kafka_bootstrap, prefix, tmp_path / "worker", port, app_id=prefix)
    try:
        assert await wait_for(lambda: health(port), timeout=60)
        tail = tail_files(kafka_bootstrap, prefix, tmp_path / "tail", files)  # as fast as the broker takes it
        lags: list[int] = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            lag = await _group_lag(kafka_bootstrap, f"{prefix}-{prefix}-ingest", raw_topics)  # the ingest group
            if lag is not None:
                lags.append(lag)
            if tail.poll() is not None and lags and lags[-1] == 0 and max(lags) > 0:
                break
            await asyncio.sleep(0.3)
        assert tail.wait(60) == 0
        assert lags and max(lags) > 0 and lags[-1] == 0, lags  # the lag grew, then drained
        print(f"consumer lag (raw Kafka messages, up to 500 records each): max {max(lags):,}, samples {len(lags)}, drained to {lags[-1]}")
        got = await read_topic(kafka_bootstrap, names.notifications, until=len(want), timeout=90)
        assert got == want  # nothing dropped on the way: the same notifications as replay
        state = await health(port)
        assert state and state["rejected"] == 0
    finally:
        worker.terminate()
        assert worker.wait(30) == 0
