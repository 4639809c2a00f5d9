"""Secrets out of text before it is stored, logged or sent.

LiteLLM error strings repeat what the provider said, and providers quote the key they were given
("Incorrect API key provided: sk-proj-abc…"); log lines carry ``Authorization`` headers, database
URLs carry passwords. Every string gatewatch keeps from its inputs (log messages, Langfuse status
messages, reject lines, notifications) goes through ``redact`` first.

Cheap on the hot path: a message is scanned for a few short markers (``sk-``, ``earer``, ``key``,
…; a handful of C-level substring searches) and the regex runs only when one is there, which is
rare for real log text. What is kept of a secret is its kind (``sk-***``), never a prefix of
its value: a prefix narrows a brute force, and key aliases are what name a key in an alert.
"""

from __future__ import annotations

import re

__all__ = ["MASK", "redact", "redact_bytes", "redact_value"]

MASK = "***"

# The markers that must be present for any pattern below to match (checked before the regex).
_MARKERS = ("sk-", "pk-lf-", "earer", "EARER", "key", "Key", "KEY", "oken", "OKEN", "assword", "ASSWORD", "ecret",
            "ECRET", "AKIA", "AIza", "FlyV1", "fm1", "fm2_", "xox", "://", "ghp_", "glpat-")
_PATTERN = re.compile(
    r"""
    (?P<kept>sk-lf-|pk-lf-|sk-ant-|sk-proj-|sk-)[A-Za-z0-9_\-]{8,}        # OpenAI, Anthropic, Langfuse keys
    | (?P<kept2>(?i:bearer|basic)\s+)[A-Za-z0-9._~+/=\-]{8,}             # Authorization: Bearer <token>
    | (?P<kept3>FlyV1\s+)[A-Za-z0-9_,.+/=\-]{8,}                          # Fly macaroon tokens
    | (?P<kept4>fm[12]_)[A-Za-z0-9_+/=\-]{8,}
    | (?P<kept5>AKIA)[0-9A-Z]{16}                                         # AWS access key id
    | (?P<kept6>AIza)[0-9A-Za-z_\-]{30,}                                  # Google API key
    | (?P<kept7>xox[abposr]-)[A-Za-z0-9\-]{8,}                            # Slack tokens
    | (?P<kept8>ghp_|glpat-)[A-Za-z0-9_\-]{16,}                           # GitHub, GitLab tokens
    | (?P<kept9>[a-z][a-z0-9+.\-]*://[^:/@\s"']+:)[^@\s"']+(?=@)           # scheme://user:PASSWORD@host
    | (?P<kept10>(?i:api[_\-]?key|x-api-key|secret[_\-]?key|access[_\-]?token|auth[_\-]?token|password|passwd
                  |secret|token)["']?\s*[:=]\s*["']?)(?!\*\*\*)[^\s"',;&}]{4,}  # key=value, "key": "value"
    """,
    re.VERBOSE,
)


def _mask(match: re.Match[str]) -> str:
    kept = next(group for group in match.groups() if group is not None)
    return kept + MASK


def redact(text: str) -> str:
    """``text`` with every secret it holds replaced by its kind and ``***``."""
    for marker in _MARKERS:
        if marker in text:
            return _PATTERN.sub(_mask, text)
    return text


def redact_bytes(raw: bytes) -> bytes:
    """``redact`` for raw lines (invalid UTF-8 is kept as it is, around the secrets)."""
    text = raw.decode("utf-8", "surrogateescape")
    clean = redact(text)
    return raw if clean is text else clean.encode("utf-8", "surrogateescape")


def redact_value(value: object) -> object:
    """``redact`` over every string in a JSON-like value (a notification, a record)."""
    if type(value) is str:
        return redact(value)
    if type(value) is dict:
        return {k: redact_value(v) for k, v in value.items()}
    if type(value) is list:
        return [redact_value(v) for v in value]
    return value
