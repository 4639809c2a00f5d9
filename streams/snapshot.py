"""Engine snapshots as table entries: pickled, compressed, cut into chunks, two slots.

A Kafka message is at most ~1 MiB by default and an engine of a busy gateway is more,
so a snapshot is zlib-compressed, base64-encoded (Faust's changelog recovery decodes
values with the app's JSON codec, whatever the table's own serializer says) and cut into
``CHUNK``-character pieces stored under ``s<slot>.<i>``; ``meta`` (written last) names the complete slot. Writes alternate
between two slots, so a crash in the middle of a snapshot leaves the previous one whole.
A compacted changelog keeps one message per key: restore reads O(size of one snapshot).
"""

from __future__ import annotations

import base64
import pickle
import zlib
from collections.abc import MutableMapping
from typing import Any

__all__ = ["CHUNK", "write_snapshot", "read_snapshot"]

CHUNK = 512 * 1024
META = "meta"


def write_snapshot(table: MutableMapping[str, Any], obj: Any) -> int:
    """Store ``obj`` in ``table``; returns the stored size in bytes."""
    blob = base64.b64encode(zlib.compress(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL), 1)).decode()
    meta = _meta(table)
    gen = meta["gen"] + 1 if meta else 0
    slot = gen % 2
    chunks = [blob[i:i + CHUNK] for i in range(0, len(blob), CHUNK)] or [""]
    for i, chunk in enumerate(chunks):
        table[f"s{slot}.{i}"] = chunk
    table[META] = {"gen": gen, "slot": slot, "chunks": len(chunks), "bytes": len(blob)}
    return len(blob)


def read_snapshot(table: MutableMapping[str, Any]) -> Any | None:
    meta = _meta(table)
    if not meta:
        return None
    parts = [table.get(f"s{meta['slot']}.{i}") for i in range(meta["chunks"])]
    if any(p is None for p in parts):
        return None
    blob = "".join(parts)  # type: ignore[arg-type]
    if len(blob) != meta["bytes"]:
        return None
    return pickle.loads(zlib.decompress(base64.b64decode(blob)))


def _meta(table: MutableMapping[str, Any]) -> dict | None:
    meta = table.get(META)
    return meta if isinstance(meta, dict) else None
