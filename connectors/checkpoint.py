"""Atomic JSON checkpoints in the state directory.

A source saves its position only after the producer's ``flush`` succeeded, so after a
crash it resumes from a position whose records are all in Kafka (at-least-once; the
overlap windows and batch ids absorb the repeats). The write is atomic: a temporary
file in the same directory, fsync, ``os.replace``; a reader never sees half a file.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["Checkpoint", "checkpoint_path", "sleep_or_stop"]

log = logging.getLogger("gatewatch.checkpoint")


def checkpoint_path(state_dir: str | os.PathLike[str], name: str) -> Path:
    """``<state_dir>/checkpoints/<name>.json``, with ``name`` made filesystem-safe."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "default"
    return Path(state_dir) / "checkpoints" / f"{safe}.json"


class Checkpoint:
    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def load(self) -> dict[str, Any]:
        """The saved state, or ``{}`` when there is none (or it is unreadable: logged)."""
        try:
            with open(self.path, encoding="utf-8") as f:
                state = json.load(f)
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log.error("checkpoint unreadable, starting fresh",
                      extra={"kv": {"path": str(self.path), "error": str(exc)}})
            return {}
        return state if isinstance(state, dict) else {}

    def save(self, state: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(state, f, separators=(",", ":"), default=str)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise


async def sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    """The pause between two polls (and two checkpoints), cut short by shutdown."""
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except asyncio.TimeoutError:
        pass
