"""Errors of the file readers that are exceptions, not rejects.

Kept apart from ``connectors/files.py``, which is compiled (setup.py): a compiled module cannot
define a subclass of a built-in exception such as ``OSError``.
"""

from __future__ import annotations

__all__ = ["UnreadableFile"]


class UnreadableFile(OSError):
    """The file is missing, a directory, or not readable."""
