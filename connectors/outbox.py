"""Durable local state for delivery: the outbox, small state documents, the history log.

Layout of a state directory::

    outbox/<sink>.pending.jsonl   every notification enqueued for the sink, append-only
    outbox/<sink>.acks.jsonl      one line per settled key: sent | failed | suppressed
    state/<name>.json             small documents (Slack threads, silences, active incidents)
    history.jsonl                 every send / suppress / fail / retry, for ``gatewatch incidents``

Pending = enqueued − settled, in enqueue order; so after a crash or restart the backlog
resumes where it stopped and nothing already acknowledged is sent again. Appends are
flushed and fsynced before the caller moves on; a torn last line (crash mid-write) is cut
off when the file is reopened. One process owns a state directory at a time.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Protocol

__all__ = ["Outbox", "StateStore", "MemoryOutbox", "FileOutbox", "MemoryStateStore", "FileStateStore",
           "HistoryLog", "read_jsonl", "write_json_atomic"]

SETTLED = ("sent", "failed", "suppressed")


class Outbox(Protocol):
    """What ``Delivery`` needs from a queue + ack store. In the Kafka service the
    notifications topic is the queue and a table can be the ack store."""

    def enqueue(self, sink: str, key: str, notification: dict[str, Any]) -> bool: ...
    def state_of(self, sink: str, key: str) -> str | None: ...
    def pending(self, sink: str) -> list[tuple[str, dict[str, Any]]]: ...
    def ack(self, sink: str, key: str, status: str, reason: str | None = None) -> None: ...
    def sync(self) -> None: ...


class StateStore(Protocol):
    def get(self, name: str) -> Any: ...
    def put(self, name: str, value: Any) -> None: ...


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, default=str)


def read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    """Records of a JSONL file; unparsable lines (a torn tail) are skipped."""
    if not path.exists():
        return
    with path.open("r", encoding="utf-8") as fh:
        for line in fh:
            try:
                yield json.loads(line)
            except ValueError:
                continue


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write-temp, fsync, rename: readers see the old or the new document, never half."""
    _write_atomic(path, [_dumps(obj)])


def _write_atomic(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        fh.writelines(line + "\n" for line in lines)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _cut_torn_tail(path: Path) -> None:
    if not path.exists() or path.stat().st_size == 0:
        return
    data = path.read_bytes()
    if not data.endswith(b"\n"):
        with path.open("r+b") as fh:
            fh.truncate(data.rfind(b"\n") + 1)


class MemoryOutbox:
    """The outbox semantics without persistence (tests; a base for durable variants)."""

    def __init__(self) -> None:
        self._pending: dict[str, dict[str, dict[str, Any]]] = {}
        self._settled: dict[str, dict[str, str]] = {}

    def enqueue(self, sink: str, key: str, notification: dict[str, Any]) -> bool:
        if self.state_of(sink, key) is not None:
            return False
        self._pending.setdefault(sink, {})[key] = notification
        self._persist_enqueue(sink, key, notification)
        return True

    def state_of(self, sink: str, key: str) -> str | None:
        if key in self._settled.get(sink, {}):
            return self._settled[sink][key]
        return "pending" if key in self._pending.get(sink, {}) else None

    def pending(self, sink: str) -> list[tuple[str, dict[str, Any]]]:
        return list(self._pending.get(sink, {}).items())

    def ack(self, sink: str, key: str, status: str, reason: str | None = None) -> None:
        if status not in SETTLED:
            raise ValueError(f"ack status must be one of {SETTLED}, not {status!r}")
        self._pending.get(sink, {}).pop(key, None)
        self._settled.setdefault(sink, {})[key] = status
        self._persist_ack(sink, key, status, reason)

    def sync(self) -> None:
        return None

    def _persist_enqueue(self, sink: str, key: str, notification: dict[str, Any]) -> None:
        return None

    def _persist_ack(self, sink: str, key: str, status: str, reason: str | None) -> None:
        return None


class FileOutbox(MemoryOutbox):
    """Append-only JSONL outbox with per-sink ack logs; see the module docstring."""

    def __init__(self, state_dir: str | os.PathLike[str], keep_acks: int = 100_000,
                 compact_every: int = 1000) -> None:
        super().__init__()
        self.dir = Path(state_dir) / "outbox"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.keep_acks = keep_acks
        self.compact_every = compact_every
        self._dirty: set[Path] = set()
        self._acks_since_compact: dict[str, int] = {}
        for path in sorted(self.dir.glob("*.pending.jsonl")):
            self._load(path.name.removesuffix(".pending.jsonl"))

    def _paths(self, sink: str) -> tuple[Path, Path]:
        return self.dir / f"{sink}.pending.jsonl", self.dir / f"{sink}.acks.jsonl"

    def _load(self, sink: str) -> None:
        pending_path, acks_path = self._paths(sink)
        _cut_torn_tail(pending_path)
        _cut_torn_tail(acks_path)
        settled = self._settled.setdefault(sink, {})
        for rec in read_jsonl(acks_path):
            settled[rec["key"]] = rec["status"]
        queue = self._pending.setdefault(sink, {})
        for rec in read_jsonl(pending_path):
            if rec["key"] not in settled:
                queue[rec["key"]] = rec["n"]
        self.compact(sink)

    def _append(self, path: Path, record: dict[str, Any], sync: bool) -> None:
        with path.open("a", encoding="utf-8") as fh:
            fh.write(_dumps(record) + "\n")
            fh.flush()
            if sync:
                os.fsync(fh.fileno())
            else:
                self._dirty.add(path)

    def _persist_enqueue(self, sink: str, key: str, notification: dict[str, Any]) -> None:
        self._append(self._paths(sink)[0], {"key": key, "n": notification}, sync=False)

    def _persist_ack(self, sink: str, key: str, status: str, reason: str | None) -> None:
        # fsync before the next send: an ack lost in a crash means a duplicate after restart.
        record = {"key": key, "status": status, "reason": reason, "t": _now()}
        self._append(self._paths(sink)[1], record, sync=True)
        count = self._acks_since_compact.get(sink, 0) + 1
        self._acks_since_compact[sink] = count
        if count >= self.compact_every:
            self.compact(sink)

    def sync(self) -> None:
        """fsync every file appended to since the last sync (enqueues are batched)."""
        for path in sorted(self._dirty):
            with path.open("a", encoding="utf-8") as fh:
                os.fsync(fh.fileno())
        self._dirty.clear()

    def compact(self, sink: str) -> None:
        """Rewrite the pending file with only the pending entries, and keep the newest
        ``keep_acks`` acks (older keys can then no longer be recognised as duplicates)."""
        pending_path, acks_path = self._paths(sink)
        self.sync()
        self._acks_since_compact[sink] = 0
        queue = self._pending.get(sink, {})
        _write_atomic(pending_path, [_dumps({"key": k, "n": n}) for k, n in queue.items()])
        settled = self._settled.get(sink, {})
        if len(settled) > self.keep_acks:
            keep = list(settled.items())[-self.keep_acks:]
            self._settled[sink] = dict(keep)
            _write_atomic(acks_path, [_dumps({"key": k, "status": s}) for k, s in keep])


class MemoryStateStore:
    def __init__(self) -> None:
        self._docs: dict[str, Any] = {}

    def get(self, name: str) -> Any:
        return json.loads(_dumps(self._docs[name])) if name in self._docs else None

    def put(self, name: str, value: Any) -> None:
        self._docs[name] = json.loads(_dumps(value))


class FileStateStore:
    """Small JSON documents under ``state/``, each replaced atomically on ``put``."""

    def __init__(self, state_dir: str | os.PathLike[str]) -> None:
        self.dir = Path(state_dir) / "state"

    def get(self, name: str) -> Any:
        path = self.dir / f"{name}.json"
        return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None

    def put(self, name: str, value: Any) -> None:
        write_json_atomic(self.dir / f"{name}.json", value)


class HistoryLog:
    """``history.jsonl``: one line per delivery event. Flushed, not fsynced: it is an audit
    trail, the outbox is what guarantees delivery."""

    def __init__(self, state_dir: str | os.PathLike[str] | None) -> None:
        self.path = Path(state_dir) / "history.jsonl" if state_dir is not None else None
        self.records: list[dict[str, Any]] = []  # in-memory tail when there is no directory

    def append(self, record: dict[str, Any]) -> None:
        record = {"t": _now(), **record}
        if self.path is None:
            self.records.append(record)
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(_dumps(record) + "\n")

    def read(self) -> list[dict[str, Any]]:
        return list(read_jsonl(self.path)) if self.path is not None else list(self.records)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")
