"""Engine snapshots as table entries: pickled, compressed, cut into chunks, two slots.

A Kafka message is at most ~1 MiB by default and an engine of a busy gateway is more,
so a snapshot is zlib-compressed and cut into ``CHUNK`` byte pieces stored under
``s<slot>.<i>``; ``meta`` (written last) names the complete slot. Writes alternate
between two slots, so a crash in the middle of a snapshot leaves the previous one whole.
A compacted changelog keeps one message per key: restore reads O(size of one snapshot).
"""

from __future__ import annotations

import pickle
import zlib
from collections.abc import MutableMapping
from typing import Any

import orjson

__all__ = ["CHUNK", "write_snapshot", "read_snapshot"]

CHUNK = 512 * 1024
META = "meta"


def write_snapshot(table: MutableMapping[str, bytes], obj: Any) -> int:
    """Store ``obj`` in ``table``; returns the compressed size in bytes."""
    blob = zlib.compress(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL), 1)
    meta = _meta(table)
    gen = meta["gen"] + 1 if meta else 0
    slot = gen % 2
    chunks = [blob[i:i + CHUNK] for i in range(0, len(blob), CHUNK)] or [b""]
    for i, chunk in enumerate(chunks):
        table[f"s{slot}.{i}"] = chunk
    table[META] = orjson.dumps({"gen": gen, "slot": slot, "chunks": len(chunks), "bytes": len(blob)})
    return len(blob)


def read_snapshot(table: MutableMapping[str, bytes]) -> Any | None:
    meta = _meta(table)
    if not meta:
        return None
    parts = [table.get(f"s{meta['slot']}.{i}") for i in range(meta["chunks"])]
    if any(p is None for p in parts):
        return None
    blob = b"".join(parts)  # type: ignore[arg-type]
    if len(blob) != meta["bytes"]:
        return None
    return pickle.loads(zlib.decompress(blob))


def _meta(table: MutableMapping[str, bytes]) -> dict | None:
    raw = table.get(META)
    return orjson.loads(raw) if raw else None
