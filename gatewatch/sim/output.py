"""Writing the rendered lines: gzip with a fixed header, one process per file when we can fork."""

from __future__ import annotations

import multiprocessing
import os
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

Render = Callable[[], Iterator[str]]
_JOBS: dict[str, Render] = {}  # read by forked workers


def write_gzip(path: Path, chunks: Iterator[str], level: int = 3) -> int:
    """Writes the chunks gzipped (mtime 0, no name: same input, same bytes); returns the line count."""
    lines = 0
    z = zlib.compressobj(level, zlib.DEFLATED, 31)  # wbits 31: gzip container, zero mtime
    with open(path, "wb") as f:
        for chunk in chunks:
            lines += chunk.count("\n")
            f.write(z.compress(chunk.encode()))
        f.write(z.flush())
    return lines


def _write_job(name: str, path: str, level: int) -> int:
    return write_gzip(Path(path), _JOBS[name](), level)


def write_all(jobs: dict[str, tuple[Path, Render]], level: int = 3, workers: int | None = None) -> dict[str, int]:
    """Renders and writes every job, in parallel forked processes when more than one CPU is there."""
    workers = min(len(jobs), os.cpu_count() or 1) if workers is None else workers
    if workers <= 1 or "fork" not in multiprocessing.get_all_start_methods():
        return {name: write_gzip(path, render(), level) for name, (path, render) in jobs.items()}
    _JOBS.clear()
    _JOBS.update({name: render for name, (_, render) in jobs.items()})
    try:
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
            futures = {name: pool.submit(_write_job, name, str(path), level) for name, (path, _) in jobs.items()}
            return {name: f.result() for name, f in futures.items()}
    finally:
        _JOBS.clear()
