"""Bad input is rejected with a reason and counted; it never stops a file (CONTRACT.md §2).

Every case puts good records around the bad one and checks that they all come out.
"""

from __future__ import annotations

import collections
import gzip
import os
import tracemalloc
from pathlib import Path

import orjson
import pytest

from connectors.files import Reject, UnreadableFile, iter_file, open_input
from connectors.formats import parse_bytes
from models.events import Event, Rejected

GOOD = orjson.dumps({
    "message": '10.0.1.5:40312 - "POST /chat/completions HTTP/1.1" 200', "level": "INFO",
    "timestamp": "2026-08-21T14:03:09.951210", "component": "uvicorn.access",
})
PAYLOAD = {"id": "r1", "call_type": "acompletion", "response_cost": 0.1, "status": "success",
           "startTime": 1787311387.102, "endTime": 1787311389.934, "custom_llm_provider": "openai",
           "model": "gpt-4o-mini", "metadata": {"user_api_key_team_alias": "support"}}
FLY = {"event": {"provider": "runner"}, "fly": {"app": {"instance": "e286", "name": "gw"}, "region": "ord"},
       "log": {"level": "info"}, "message": "Starting machine", "timestamp": "2026-09-14T10:00:00.4Z"}


def bad(**changes: object) -> bytes:
    return orjson.dumps({**PAYLOAD, **changes})


def read(path: Path, **options: int) -> tuple[list[Event], list[Reject]]:
    events: list[Event] = []
    rejects: list[Reject] = []
    for item in iter_file(path, **options):
        if isinstance(item, Reject):
            rejects.append(item)
        else:
            events.extend(item)
    return events, rejects


def sandwich(tmp_path: Path, middle: bytes, name: str = "in.ndjson") -> tuple[list[Event], list[Reject]]:
    """GOOD, the bad line, GOOD: returns what came out."""
    path = tmp_path / name
    path.write_bytes(GOOD + b"\n" + middle + b"\n" + GOOD + b"\n")
    return read(path)


BAD_LINES = [
    # (id, line, reason)
    ("truncated-json", GOOD[: len(GOOD) // 2], "not_json"),
    ("truncated-array", b'[{"message": "x", "level"', "not_json"),
    ("binary-garbage", bytes(range(256)).replace(b"\n", b""), "not_json"),
    ("nul-bytes", b"\x00" * 64, "not_json"),
    ("text", b"ERROR something happened", "not_json"),
    ("unknown-object", b'{"hello": "world"}', "unknown_format"),
    ("scalar", b"42", "unknown_format"),
    ("string", b'"a line"', "unknown_format"),
    ("start-time-text", bad(startTime="yesterday", endTime=None), "wrong_type"),
    ("end-time-object", bad(endTime={"t": 1}), "wrong_type"),
    ("end-time-bool", bad(endTime=True), "wrong_type"),
    ("metadata-list", bad(metadata=["support"]), "wrong_type"),
    ("tokens-text", bad(total_tokens="lots"), "wrong_type"),
    ("cost-object", bad(response_cost={"usd": 1}), "wrong_type"),
    ("label-object", bad(model_group={"name": "x"}), "wrong_type"),
    ("fly-message-number", orjson.dumps({**FLY, "message": 5}), "wrong_type"),
    ("fly-time-garbage", orjson.dumps({**FLY, "timestamp": "2026-99-99T00:00:00Z"}), "wrong_type"),
    ("no-time", bad(startTime=None, endTime=None), "missing_field"),
    ("langfuse-no-time", b'{"id": "o1", "traceId": "t1", "type": "GENERATION"}', "missing_field"),
]


@pytest.mark.parametrize("line, reason", [c[1:] for c in BAD_LINES], ids=[c[0] for c in BAD_LINES])
def test_bad_line_is_rejected_and_neighbours_parsed(tmp_path: Path, line: bytes, reason: str) -> None:
    events, rejects = sandwich(tmp_path, line)
    assert [(r.reason, r.line_no) for r in rejects] == [(reason, 2)], rejects
    assert rejects[0].raw_prefix.startswith(line[:50])
    assert len(events) == 2


@pytest.mark.parametrize("line, reason", [c[1:] for c in BAD_LINES], ids=[c[0] for c in BAD_LINES])
def test_parse_bytes_raises_rejected_only(line: bytes, reason: str) -> None:
    """The Kafka agents' entry point: the same reason, and never another exception type."""
    with pytest.raises(Rejected) as caught:
        parse_bytes(line)
    assert caught.value.reason == reason


def test_array_with_a_bad_item_keeps_the_good_ones(tmp_path: Path) -> None:
    line = b"[" + b",".join([orjson.dumps(PAYLOAD), b'{"x": 1}', bad(endTime="soon", startTime=None),
                             orjson.dumps(PAYLOAD)]) + b"]"
    events, rejects = sandwich(tmp_path, line)
    assert len(events) == 4
    assert [(r.reason, r.line_no) for r in rejects] == [("unknown_format", 2), ("wrong_type", 2)]


def test_ten_megabyte_line(tmp_path: Path) -> None:
    """Rejected as line_too_long without ever holding it whole; the next lines are read."""
    path = tmp_path / "big.ndjson"
    with path.open("wb") as out:
        out.write(GOOD + b"\n")
        out.write(b'{"message": "' + b"x" * (10 * 1024 * 1024) + b'"}\n')
        out.write(GOOD + b"\n" + GOOD + b"\n")
    tracemalloc.start()
    try:
        events, rejects = read(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert [(r.reason, r.line_no) for r in rejects] == [("line_too_long", 2)]
    assert rejects[0].raw_prefix.startswith(b'{"message": "xxx') and len(rejects[0].raw_prefix) == 200
    assert len(events) == 3
    assert peak < 6 * 1024 * 1024  # a few 1 MiB chunks at most: the 10 MB line was never one object


def test_ten_megabyte_line_gzipped_and_unterminated(tmp_path: Path) -> None:
    path = tmp_path / "big.ndjson.gz"
    path.write_bytes(gzip.compress(GOOD + b"\n" + b"[" * (10 * 1024 * 1024)))
    events, rejects = read(path)
    assert [(r.reason, r.line_no) for r in rejects] == [("line_too_long", 2)] and len(events) == 1


def test_line_cap_is_inclusive(tmp_path: Path) -> None:
    path = tmp_path / "cap.ndjson"
    path.write_bytes(GOOD + b"\n" + GOOD + b"   \n")
    events, rejects = read(path, max_line=len(GOOD) + 1)  # the first line fits with its newline
    assert len(events) == 1 and [r.reason for r in rejects] == ["line_too_long"]


def test_gz_that_is_not_gzip(tmp_path: Path) -> None:
    path = tmp_path / "plain.ndjson.gz"
    path.write_bytes(GOOD + b"\n")
    events, rejects = read(path)
    assert events == [] and [(r.reason, r.line_no) for r in rejects] == [("not_gzip", 0)]


def test_gzip_without_gz_name_is_read(tmp_path: Path) -> None:
    path = tmp_path / "compressed.ndjson"
    path.write_bytes(gzip.compress(GOOD + b"\n"))
    assert len(read(path)[0]) == 1


def test_truncated_gzip(tmp_path: Path) -> None:
    """Everything before the cut is yielded, then one truncated_gzip reject."""
    lines = [orjson.dumps({**orjson.loads(GOOD), "n": i}) + b"\n" for i in range(20000)]
    whole = gzip.compress(b"".join(lines))
    path = tmp_path / "cut.ndjson.gz"
    path.write_bytes(whole[: len(whole) // 2])
    events, rejects = read(path)
    assert [r.reason for r in rejects] == ["truncated_gzip"]
    assert 1000 < len(events) < 20000
    assert rejects[0].line_no == len(events) + 1 or rejects[0].line_no == len(events) + 2


def test_truncated_gzip_yields_every_line_before_the_cut(tmp_path: Path) -> None:
    """A file cut just after a full flush: every line written before the flush comes out, then the reject."""
    import zlib

    lines = [orjson.dumps({**orjson.loads(GOOD), "n": i}) + b"\n" for i in range(300)]
    packer = zlib.compressobj(wbits=31)
    head = packer.compress(b"".join(lines[:200])) + packer.flush(zlib.Z_FULL_FLUSH)
    path = tmp_path / "cut.ndjson.gz"
    path.write_bytes(head + packer.compress(b"".join(lines[200:]))[:10])
    events, rejects = read(path)
    assert len(events) == 200
    assert [(r.reason, r.line_no) for r in rejects] == [("truncated_gzip", 201)]


def test_gzip_members_and_zero_padding(tmp_path: Path) -> None:
    """``cat a.gz b.gz`` and a member followed by zero padding read as ``gzip`` reads them."""
    one = gzip.compress(b"".join(GOOD + b"\n" for _ in range(3)))
    two = gzip.compress(orjson.dumps(FLY) + b"\n" + GOOD)  # the last line without its newline
    path = tmp_path / "cat.ndjson.gz"
    path.write_bytes(one + b"\x00" * 70_000 + two + b"\x00" * 10)
    events, rejects = read(path)
    assert rejects == [] and [e.source for e in events] == ["litellm"] * 3 + ["fly", "litellm"]
    path.write_bytes(one + b"garbage after the member")
    events, rejects = read(path)
    assert len(events) == 3 and [r.reason for r in rejects] == ["corrupt_gzip"]


def test_corrupt_gzip(tmp_path: Path) -> None:
    whole = bytearray(gzip.compress(b"".join(GOOD + b"\n" for _ in range(20000))))
    middle = len(whole) // 2
    whole[middle:middle + 64] = os.urandom(64)
    path = tmp_path / "corrupt.ndjson.gz"
    path.write_bytes(bytes(whole))
    events, rejects = read(path)
    assert rejects and rejects[-1].reason in ("corrupt_gzip", "truncated_gzip")
    assert len(events) > 100  # what came before the damage


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(UnreadableFile) as missing:
        list(iter_file(tmp_path / "missing.ndjson"))
    assert isinstance(missing.value, OSError) and "missing.ndjson" in str(missing.value)
    with pytest.raises(OSError):
        open_input(tmp_path)  # a directory


def test_truncated_indented_object(tmp_path: Path) -> None:
    """A flyctl object cut short, then more records: one not_json for it, the rest parsed."""
    indented = orjson.dumps(orjson.loads(GOOD), option=orjson.OPT_INDENT_2)
    cut = indented[: len(indented) // 2]
    path = tmp_path / "flyctl.json"
    path.write_bytes(indented + b"\n" + cut + b"\n" + GOOD + b"\n" + indented + b"\n" + cut)
    events, rejects = read(path)
    assert len(events) == 3
    assert [r.reason for r in rejects] == ["not_json", "not_json"]


def test_blank_lines_bom_and_crlf_are_not_rejects(tmp_path: Path) -> None:
    path = tmp_path / "windows.ndjson"
    path.write_bytes(b"\xef\xbb\xbf" + GOOD + b"\r\n\r\n   \n" + GOOD + b"\r\n")
    events, rejects = read(path)
    assert len(events) == 2 and rejects == []


def test_rejects_are_counted_by_reason(tmp_path: Path) -> None:
    path = tmp_path / "mixed.ndjson"
    path.write_bytes(b"\n".join(line for _, line, _ in BAD_LINES) + b"\n" + GOOD + b"\n")
    events, rejects = read(path)
    expected = collections.Counter(reason for _, _, reason in BAD_LINES)
    # a truncated line starts an indented object that the next column-0 line ends: still one not_json
    assert collections.Counter(r.reason for r in rejects) == expected
    assert len(events) == 1
