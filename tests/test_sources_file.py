"""``tail file``: routing, framing, gz, follow across rotation/truncation, checkpoint, the CLI."""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import signal
import subprocess
import sys
import time
import uuid

import orjson
import pytest

from connectors.checkpoint import Checkpoint
from connectors.file_source import FileSource, LineFramer, route
from connectors.kafka import BatchProducer, all_raw_topics, ensure_topics
from tests.kafka_broker import read_raw

pytestmark = pytest.mark.integration

FLY = b'{"event":{"provider":"app"},"fly":{"app":{"instance":"148e","name":"gw"},"region":"iad"},"message":"{\\"request_id\\": 1}","timestamp":"2026-08-21T14:03:11Z"}'
LITELLM = b'{"id":"c1","call_type":"acompletion","response_cost":0.1,"metadata":{"event":"x"}}'
SPEND = b'{"user":"u","spend":0.2,"request_id":"r1","startTime":"2026-08-21T14:03:07"}'
LANGFUSE = b'{"id":"o1","traceId":"t1","projectId":"p","metadata":{"request_id":"r"}}'
PAGE = b'{"data":[{"id":"o2"}],"meta":{"page":1}}'
METRIC = b'{"gatewatch_metric":"redis_used_memory_bytes","value":1.0,"labels":{},"timestamp":"x"}'
FLYCTL = b'{\n    "level": "info",\n    "instance": "148e",\n    "meta": {\n        "Region": "iad"\n    }\n}\n'


def test_route_by_key_sniff() -> None:
    assert [route(x) for x in (FLY, LITELLM, SPEND, LANGFUSE, PAGE, METRIC, b'{"x":1}', b"not json")] == [
        "fly", "litellm", "litellm", "langfuse", "langfuse", "infra", "litellm", "litellm"]
    assert route(b'{"level":"info","instance":"148e","message":"m"}') == "fly"  # flyctl logs --json


def test_framer_compacts_indented_objects() -> None:
    framer = LineFramer()
    out = [framer.feed(line) for line in (FLYCTL + LITELLM + b"\n\n").splitlines(keepends=True)]
    records = [r for r in out if r is not None]
    assert records == [b'{"level":"info","instance":"148e","meta":{"Region":"iad"}}', LITELLM]


async def _run_file_source(kafka_bootstrap: str, prefix: str, paths: list[str], cp: Checkpoint,
                           follow: bool = False) -> tuple[FileSource, asyncio.Event, asyncio.Task, BatchProducer]:
    producer = BatchProducer(kafka_bootstrap, "file", prefix=prefix, linger=0.05)
    await producer.start()
    source = FileSource(paths, producer, cp, follow=follow, poll=0.05)
    stop = asyncio.Event()
    return source, stop, asyncio.create_task(source.run(stop)), producer


async def test_files_gz_routing_and_resume(kafka_bootstrap, tmp_path) -> None:
    prefix = f"t{uuid.uuid4().hex[:10]}"
    await ensure_topics(kafka_bootstrap, prefix)
    plain = tmp_path / "mixed.ndjson"
    plain.write_bytes(b"\n".join([FLY, LITELLM, LANGFUSE, METRIC]) + b"\n" + FLYCTL)
    gz = tmp_path / "spend.ndjson.gz"
    gz.write_bytes(gzip.compress(b"\n".join([SPEND] * 1000) + b"\n"))
    cp = Checkpoint(tmp_path / "cp.json")
    source, stop, task, producer = await _run_file_source(kafka_bootstrap, prefix, [str(plain), str(gz)], cp)
    await task
    await producer.stop()
    got = await read_raw(kafka_bootstrap, all_raw_topics(prefix), expect=1005)
    by_topic = {t: sum(1 for tt, _ in got if tt == t) for t in all_raw_topics(prefix)}
    assert by_topic == {f"{prefix}.raw.fly": 2, f"{prefix}.raw.litellm": 1001,
                        f"{prefix}.raw.langfuse": 1, f"{prefix}.raw.infra": 1}
    assert (f"{prefix}.raw.fly", FLY) in got  # unparsed, byte for byte
    state = cp.load()["files"]
    assert state[str(plain)]["offset"] == plain.stat().st_size

    # A second run from the checkpoint sends nothing new.
    source, stop, task, producer = await _run_file_source(kafka_bootstrap, prefix, [str(plain), str(gz)], cp)
    await task
    assert producer.metrics.totals["records_in"] == 0
    await producer.stop()


async def test_follow_rotation_truncation_and_partial_lines(kafka_bootstrap, tmp_path) -> None:
    prefix = f"t{uuid.uuid4().hex[:10]}"
    await ensure_topics(kafka_bootstrap, prefix)
    path = tmp_path / "gw.log"
    path.write_bytes(orjson.dumps({"call_type": "a", "n": 0}) + b"\n")
    cp = Checkpoint(tmp_path / "cp.json")
    source, stop, task, producer = await _run_file_source(kafka_bootstrap, prefix, [str(path)], cp, follow=True)

    def line(n: int) -> bytes:
        return orjson.dumps({"call_type": "a", "n": n}) + b"\n"

    async def settle() -> None:
        await asyncio.sleep(0.3)

    with open(path, "ab") as f:  # a line written in two parts is sent once, whole
        f.write(line(1)[:10]); f.flush(); await settle()
        f.write(line(1)[10:] + line(2)); f.flush()
    await settle()
    os.rename(path, tmp_path / "gw.log.1")  # rotation: the old file gets one more line first
    with open(tmp_path / "gw.log.1", "ab") as f:
        f.write(line(3))
    path.write_bytes(line(4) + line(5))
    await settle()
    path.write_bytes(line(6))  # truncation (same inode, shorter)
    await settle()
    stop.set()
    await task
    await producer.stop()
    got = await read_raw(kafka_bootstrap, [f"{prefix}.raw.litellm"], expect=7)
    assert sorted(orjson.loads(r)["n"] for _, r in got) == [0, 1, 2, 3, 4, 5, 6]
    assert cp.load()["files"][str(path)] == {"inode": path.stat().st_ino, "offset": path.stat().st_size}


def test_cli_tail_file_and_sigterm(kafka_bootstrap, tmp_path) -> None:
    prefix = f"t{uuid.uuid4().hex[:10]}"
    data = tmp_path / "in.ndjson"
    data.write_bytes(b"\n".join([LITELLM] * 2000) + b"\n")
    cmd = [sys.executable, "-m", "gatewatch", "tail", "file", str(data), "--follow", "--poll", "0.05",
           "--brokers", kafka_bootstrap, "--topic-prefix", prefix, "--state-dir", str(tmp_path / "state")]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, cwd=tmp_path)
    cp = tmp_path / "state" / "checkpoints" / "file.json"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not (cp.exists() and json.loads(cp.read_text())["files"]):
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err.decode()[-2000:]
    assert json.loads(cp.read_text())["files"][str(data)]["offset"] == data.stat().st_size
    stopped = [json.loads(x) for x in err.decode().splitlines() if '"tail stopped"' in x]
    assert stopped and stopped[0]["records_out"] == 2000
    got = asyncio.run(read_raw(kafka_bootstrap, [f"{prefix}.raw.litellm"], expect=2000))
    assert len(got) == 2000
