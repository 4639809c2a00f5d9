"""``gatewatch tail file``: NDJSON(.gz) files into the raw topics.

Each line goes, unparsed, to the raw topic of its source family, chosen by a cheap
byte sniff of its keys (:func:`route`), so that a worker fed by ``tail file X`` sees
what ``replay X`` sees. ``flyctl logs --json`` output (indented objects, one after
another) is framed into one compact line per object; nothing else is rewritten.

``--follow`` tails the files like ``tail -F``: a partial last line waits for its
newline; a new inode at the path (rotation) finishes the old file and then reads the
new one from its start; a file shorter than the read offset (truncation) is re-read
from its start. The checkpoint holds ``(inode, offset)`` per path, written after Kafka
acknowledged everything before the offset; a restart resumes there if the inode is
unchanged, else from the start of the file now at the path.
"""

from __future__ import annotations

import asyncio
import gzip
import logging
import os
from typing import IO

import orjson

from connectors.checkpoint import Checkpoint, sleep_or_stop
from connectors.formats import route
from connectors.kafka import BatchProducer

__all__ = ["route", "LineFramer", "FileSource"]

log = logging.getLogger("gatewatch.source.file")
COMMIT_EVERY = 50_000  # lines between checkpoints while catching up


class LineFramer:
    """Lines in, records out: NDJSON lines pass through; indented objects are compacted."""

    def __init__(self, max_lines: int = 10_000) -> None:
        self.buf: list[bytes] = []
        self.max_lines = max_lines

    def feed(self, line: bytes) -> bytes | None:
        text = line.rstrip(b"\r\n")
        if self.buf:
            self.buf.append(text)
            if text.rstrip() == b"}" or len(self.buf) >= self.max_lines:
                return self._close()
            return None
        if text.strip() == b"{":  # flyctl's json.Encoder with SetIndent: "{" alone on a line
            self.buf.append(text)
            return None
        return text if text.strip() else None

    def _close(self) -> bytes:
        joined, self.buf = b"\n".join(self.buf), []
        try:
            return orjson.dumps(orjson.loads(joined))
        except orjson.JSONDecodeError:
            return joined.replace(b"\n", b" ")  # the worker rejects it, with its reason


class _Tail:
    """One path: its open file, inode and the offset of the last complete record read."""

    def __init__(self, path: str, state: dict) -> None:
        self.path, self.key = path, os.path.basename(path).encode()
        self.inode, self.offset = state.get("inode"), int(state.get("offset", 0))
        self.file: IO[bytes] | None = None
        self.framer = LineFramer()

    def open(self) -> bool:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return False
        self.file = gzip.open(self.path, "rb") if self.path.endswith(".gz") else open(self.path, "rb")
        if st.st_ino != self.inode or (not self.path.endswith(".gz") and st.st_size < self.offset):
            self.inode, self.offset = st.st_ino, 0
        self.file.seek(self.offset)
        return True

    def close(self) -> None:
        if self.file:
            self.file.close()
            self.file = None

    def state(self) -> dict:
        return {"inode": self.inode, "offset": self.offset}


class FileSource:
    def __init__(self, paths: list[str], producer: BatchProducer, checkpoint: Checkpoint, *,
                 follow: bool = False, poll: float = 0.5) -> None:
        self.producer, self.checkpoint, self.follow, self.poll = producer, checkpoint, follow, poll
        saved = checkpoint.load().get("files", {})
        self.tails = [_Tail(p, saved.get(os.path.abspath(p), {})) for p in paths]

    async def run(self, stop: asyncio.Event) -> None:
        try:
            await asyncio.gather(*(self._run_one(t, stop) for t in self.tails))
        finally:
            for tail in self.tails:
                tail.close()

    async def commit(self) -> None:
        positions = {os.path.abspath(t.path): t.state() for t in self.tails}  # before the flush
        await self.producer.flush()
        self.checkpoint.save({"files": positions})

    async def _run_one(self, tail: _Tail, stop: asyncio.Event) -> None:
        while not tail.open():
            if not self.follow or stop.is_set():
                log.error("file not found", extra={"kv": {"path": tail.path}})
                return
            await sleep_or_stop(stop, self.poll)
        while not stop.is_set():
            read = await self._read_available(tail)
            if not self.follow:
                break
            if read == 0:
                await self.commit()
                await sleep_or_stop(stop, self.poll)
                await self._check_rotation(tail)
        await self.commit()

    async def _read_available(self, tail: _Tail) -> int:
        """Send every complete line up to EOF; return how many lines were read."""
        assert tail.file is not None
        count = 0
        while True:
            line = tail.file.readline()
            if not line:
                return count
            if not line.endswith(b"\n") and self.follow:
                tail.file.seek(tail.offset)  # a line being written: wait for its newline
                tail.framer.buf.clear()  # the offset is the start of any half-read object
                return count
            count += 1
            record = tail.framer.feed(line)
            if record is not None:
                await self.producer.add(route(record), record, key=tail.key)
            if not tail.framer.buf:
                tail.offset = tail.file.tell()
            if count % COMMIT_EVERY == 0:
                await self.commit()

    async def _check_rotation(self, tail: _Tail) -> None:
        try:
            st = os.stat(tail.path)
        except FileNotFoundError:
            return  # mid-rotation: the new file is not there yet
        if st.st_ino != tail.inode:
            await self._read_available(tail)  # lines written to the old file before it moved
            log.info("file rotated", extra={"kv": {"path": tail.path}})
            tail.close()
            tail.inode, tail.offset = st.st_ino, 0
            tail.open()
        elif st.st_size < tail.offset:
            log.info("file truncated", extra={"kv": {"path": tail.path}})
            tail.offset = 0
            tail.file.seek(0)
