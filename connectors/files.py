"""Reading record files (``.ndjson``, ``.ndjson.gz``) into events and rejects.

What a file may hold (CONTRACT.md §2): one JSON record per line, a JSON array per line (a
``generic_api`` batch), API pages, or ``flyctl logs --json`` output, which is indented objects one
after another (SOURCES.md §3b). Gzip is recognised by its magic bytes, whatever the name.

Nothing in a file stops the reading of it (house style 6, errors are data): a line that is not
JSON, is too long, or is JSON of no known format becomes a ``Reject`` with a stable reason, and
the lines around it are processed. Only a file that cannot be opened raises
(``UnreadableFile``, an ``OSError``: replay exits 2 on it).

Reasons: ``not_json``, ``unknown_format``, ``wrong_type``, ``missing_field``, ``bad_timestamp``
(outside 2000-2100), ``line_too_long``, ``not_gzip`` (a ``.gz`` that is not gzip: one reject for the
file), ``truncated_gzip`` and ``corrupt_gzip`` (after everything readable before the damage was
yielded), ``read_error``.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import zlib
from collections.abc import Iterator
from io import BytesIO
from typing import IO, Any, Final, NamedTuple, Union

import orjson

from connectors.errors import UnreadableFile
from connectors.formats import parse_one, records
from models.events import Event, Rejected

__all__ = ["MAX_LINE", "Item", "Reject", "UnreadableFile", "iter_file", "iter_lines", "open_input", "read_blocks"]

MAX_LINE = 1 << 20  # bytes; a LiteLLM payload with redacted messages is a few KiB
RAW_PREFIX = 200  # bytes of a rejected line kept for the rejects file
_BUFFER = 1 << 16
_BLOCK: Final = 1 << 18  # decompressed bytes per block at most
_GZIP_WBITS: Final = 16 + zlib.MAX_WBITS  # zlib reads the gzip header and checks its CRC
_GZIP_MAGIC = b"\x1f\x8b"
_BOM = b"\xef\xbb\xbf"
_loads: Final = orjson.loads
_JSONDecodeError = orjson.JSONDecodeError


class Reject(NamedTuple):
    """A record that was not turned into events, and why. ``line_no`` is 1-based (0: whole file)."""

    reason: str
    file: str
    line_no: int
    raw_prefix: bytes
    detail: str = ""


Item = Union[list[Event], Reject]


def open_input(path: str | os.PathLike[str]) -> IO[bytes]:
    """Open a record file for reading, gunzipping it if it is gzip. Raises ``UnreadableFile``."""
    raw, gzipped = _open_raw(path)
    if not gzipped:
        return io.BufferedReader(raw, _BUFFER)
    raw.close()
    try:
        return io.BufferedReader(gzip.open(path, "rb"), _BUFFER)  # type: ignore[arg-type]
    except OSError as error:
        raise _unreadable(path, error) from error


def iter_file(path: str | os.PathLike[str], max_line: int = MAX_LINE) -> Iterator[Item]:
    """Every line of a record file as its events or a ``Reject``, in file order.

    The good lines' events come in lists, one list per block read (a few dozen lines): a
    reject ends the list before it, so the order of events and rejects is the file's.
    """
    name = os.fspath(path)
    raw, gzipped = _open_raw(path)
    with raw:
        if name.endswith(".gz") and not gzipped:
            yield Reject("not_gzip", name, 0, raw.read(RAW_PREFIX), "no gzip magic bytes")
            return
        yield from _iter_blocks(_gunzip(raw) if gzipped else _blocks(raw), name, max_line)


def read_blocks(path: str | os.PathLike[str]) -> Iterator[bytes]:
    """The file's bytes, gunzipped if it is gzip, in blocks as ``iter_file`` reads them (the
    benchmark's parse-only floor reads this way too)."""
    raw, gzipped = _open_raw(path)
    with raw:
        yield from _gunzip(raw) if gzipped else _blocks(raw)


def iter_lines(stream: IO[bytes], name: str, max_line: int = MAX_LINE) -> Iterator[Item]:
    """Every line of an open binary stream as events or rejects; damage in the stream ends it."""
    yield from _iter_blocks(_blocks(stream), name, max_line)


def _iter_blocks(blocks: Iterator[bytes], name: str, max_line: int) -> Iterator[Item]:
    slow = _Slow(name, max_line)
    try:
        yield from _decode(blocks, name, max_line, slow)
    except (EOFError, zlib.error, OSError) as error:
        yield from slow.finish()
        yield Reject(_damage(error), name, slow.line_no + 1, b"", str(error)[:200])
    else:
        yield from slow.finish()


def _blocks(stream: IO[bytes]) -> Iterator[bytes]:
    read = getattr(stream, "read1", stream.read)  # what is there: a pipe is not waited on to fill a block
    while block := read(_BUFFER):
        yield block


def _gunzip(raw: IO[bytes]) -> Iterator[bytes]:
    """The decompressed bytes of a gzip file, in blocks: every member of it (``cat a.gz b.gz``),
    zero padding after a member skipped (as ``gzip`` does). A file that ends inside a member
    raises ``EOFError``; a bad header or CRC raises ``zlib.error``, after what came before."""
    read = raw.read
    unzip: Any = zlib.decompressobj(_GZIP_WBITS)
    inside = True  # in a member (the file starts with one: its magic bytes were seen)
    while data := read(_BUFFER):
        while data:
            if not inside:
                data = data.lstrip(b"\x00")
                if not data:
                    break
                unzip, inside = zlib.decompressobj(_GZIP_WBITS), True
            block = unzip.decompress(data, _BLOCK)
            if block:
                yield block
            if unzip.eof:
                data, inside = unzip.unused_data, False
            else:
                data = unzip.unconsumed_tail
    if inside:
        raise EOFError("Compressed file ended before the end-of-stream marker was reached")


def _decode(blocks: Iterator[bytes], name: str, max_line: int, slow: _Slow) -> Iterator[Item]:
    # The hot loop: blocks cut into lines (``BytesIO`` iteration: memchr), one orjson call and one
    # dispatch per line; the good lines' events gather in one list per block. Anything unusual (a
    # line that does not parse, an indented object in progress, an over-long line) goes to ``_odd``.
    tail = b""
    skipping = False  # inside an over-long line: drop everything up to its newline
    line_no = 0
    for block in blocks:
        if skipping:
            at = block.find(b"\n")
            if at < 0:
                continue
            block, skipping = block[at + 1:], False
        events: list[Event] = []
        tail_next = b""
        for line in BytesIO(tail + block if tail else block):
            if line[-1] != 10:  # the block ends inside this line
                tail_next = line
                break
            slow.line_no = line_no = line_no + 1
            if slow.pending is None and len(line) <= max_line:
                try:
                    value = _loads(line)
                    if type(value) is dict and "data" not in value:
                        events.append(parse_one(value))
                        continue
                except (_JSONDecodeError, Rejected):
                    pass
            if events:
                yield events
                events = []
            for item in _odd(line, name, line_no, max_line, slow):
                if type(item) is list:
                    events.extend(item)
                else:
                    if events:
                        yield events
                        events = []
                    yield item
        tail = tail_next
        if len(tail) > max_line:
            slow.line_no = line_no = line_no + 1
            if events:
                yield events
                events = []
            yield from _odd(tail, name, line_no, max_line, slow)
            tail, skipping = b"", True
        if events:
            yield events
    if tail:
        slow.line_no = line_no = line_no + 1
        yield from _odd(tail, name, line_no, max_line, slow)


def _odd(line: bytes, name: str, line_no: int, max_line: int, slow: _Slow) -> list[Item]:
    """One line the fast path did not take, as the line-by-line reader took it (``line`` ends
    with its newline, unless it is the last line of a file without one)."""
    if len(line) - (line[-1] == 10) > max_line:  # its bytes without the newline
        return [Reject("line_too_long", name, line_no, line[:RAW_PREFIX], f"over {max_line} bytes")]
    if slow.pending is not None:
        return slow.line(line_no, line)
    try:
        value = _loads(line)
    except _JSONDecodeError:
        return slow.line(line_no, line)
    if type(value) is dict and "data" not in value:
        try:
            return [[parse_one(value)]]
        except Rejected as error:
            return [Reject(error.reason, name, line_no, line[:RAW_PREFIX], error.detail)]
    return _items(value, name, line_no, line)


def _damage(error: BaseException) -> str:
    if isinstance(error, EOFError):
        return "truncated_gzip"
    if isinstance(error, (zlib.error, gzip.BadGzipFile)):
        return "corrupt_gzip"
    return "read_error"


class _Slow:
    """Lines that do not parse on their own: blank lines, BOMs, several objects on one line,
    indented multi-line objects (flyctl), and garbage.

    An indented object starts with ``{`` in column 0, continues with indented lines and ends
    with a line starting with ``}``. A column-0 line that is neither ends the object early: it
    was a truncated record, rejected as ``not_json``, and the new line is read afresh.
    """

    def __init__(self, name: str, max_line: int) -> None:
        self.name, self.max_line = name, max_line
        self.pending: list[bytes] | None = None
        self.line_no = 0  # the last line read, for a reject raised by the stream itself
        self.pending_line = 0
        self.pending_size = 0

    def line(self, line_no: int, line: bytes) -> list[Item]:
        if self.pending is not None:
            if line[:1] in b" \t\r\n}" and line[:1]:
                return self._continue(line)
            # The line that ended the object early is a line of its own: decode it as the fast path would.
            return [self._drop_pending("not_json", "incomplete JSON object"), *self._whole(line_no, line)]
        return self._fresh(line_no, line)

    def _whole(self, line_no: int, line: bytes) -> list[Item]:
        try:
            value = _loads(line)
        except _JSONDecodeError:
            return self._fresh(line_no, line)
        return _items(value, self.name, line_no, line)

    def finish(self) -> list[Item]:
        return [] if self.pending is None else [self._drop_pending("not_json", "incomplete JSON object at end")]

    def _fresh(self, line_no: int, line: bytes) -> list[Item]:
        text = line.strip()
        if not text:
            return []
        if text.startswith(_BOM):
            return self._bom(line_no, text[len(_BOM):])
        if text[:1] == b"{":
            values = _concatenated(text)
            if values is not None:
                return _items(values, self.name, line_no, line)  # as if it were an array
            if line[:1] == b"{":
                self.pending, self.pending_line, self.pending_size = [line], line_no, len(line)
                return []
        return [Reject("not_json", self.name, line_no, line[:RAW_PREFIX], _json_error(text))]

    def _bom(self, line_no: int, text: bytes) -> list[Item]:
        try:
            return _items(_loads(text), self.name, line_no, text)
        except _JSONDecodeError:
            return self._fresh(line_no, text)

    def _continue(self, line: bytes) -> list[Item]:
        self.pending_size += len(line)
        if self.pending_size > self.max_line:
            return [self._drop_pending("line_too_long", f"object over {self.max_line} bytes")]
        assert self.pending is not None
        self.pending.append(line)
        if line[:1] != b"}":
            return []
        raw, line_no = b"".join(self.pending), self.pending_line
        self.pending = None
        try:
            value = _loads(raw)
        except _JSONDecodeError as error:
            return [Reject("not_json", self.name, line_no, raw[:RAW_PREFIX], str(error))]
        return _items(value, self.name, line_no, raw)

    def _drop_pending(self, reason: str, detail: str) -> Reject:
        assert self.pending is not None
        raw = b"".join(self.pending)[:RAW_PREFIX]
        self.pending = None
        return Reject(reason, self.name, self.pending_line, raw, detail)


def _items(value: Any, name: str, line_no: int, line: bytes) -> list[Item]:
    """The events of one decoded value, then one reject per bad record in it."""
    try:
        found = records(value)
    except Rejected as error:
        return [Reject(error.reason, name, line_no, line[:RAW_PREFIX], error.detail)]
    events: list[Event] = []
    rejects: list[Item] = []
    for record in found:
        try:
            events.append(parse_one(record))
        except Rejected as error:
            rejects.append(Reject(error.reason, name, line_no, line[:RAW_PREFIX], error.detail))
    return [events, *rejects] if events else rejects


def _concatenated(text: bytes) -> list[Any] | None:
    """Several JSON values on one line (``{…}{…}``), or ``None`` if the line is not exactly that."""
    try:
        source = text.decode()
    except UnicodeDecodeError:
        return None
    decoder, values, at = json.JSONDecoder(), [], 0
    while at < len(source):
        try:
            value, at = decoder.raw_decode(source, at)
        except (json.JSONDecodeError, RecursionError):  # RecursionError: nesting deeper than Python's stack
            return None
        values.append(value)
        while at < len(source) and source[at] in " \t\r\n":
            at += 1
    return values


def _json_error(text: bytes) -> str:
    try:
        _loads(text)
    except _JSONDecodeError as error:
        return str(error)[:200]
    return ""


def _open_raw(path: str | os.PathLike[str]) -> tuple[io.FileIO, bool]:
    """The file unbuffered (it is read in blocks), and whether it is gzip."""
    try:
        raw = open(path, "rb", buffering=0)  # noqa: SIM115 - the caller closes it
    except OSError as error:
        raise _unreadable(path, error) from error
    try:
        gzipped = raw.read(2) == _GZIP_MAGIC
        raw.seek(0)
    except OSError as error:
        raw.close()
        raise _unreadable(path, error) from error
    return raw, gzipped


def _unreadable(path: str | os.PathLike[str], error: OSError) -> UnreadableFile:
    return UnreadableFile(error.errno, f"cannot read {os.fspath(path)}: {error.strerror}")
