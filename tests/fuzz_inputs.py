"""Bad-day inputs: real records of every format, and the ways they get mangled.

Shared by the property tests (tests/test_bad_days.py, a few thousand cases) and the seeded fuzz
run (benchmarks/fuzz_parsers.py, a million lines). A mutation keeps most of a real record, so
that the parsers get past format detection and meet the bad value deep inside, where it hurts.
"""

from __future__ import annotations

import gzip
import io
import random
from typing import Any, Callable

import orjson

from connectors.files import Reject, iter_lines
from models.events import Event

__all__ = ["BAD_VALUES", "SEEDS", "mutate", "mutated_line", "outcome"]

_T0 = 1787311387.102  # 2026-08-21
SEEDS: list[dict[str, Any]] = [
    {"id": "r1", "call_type": "acompletion", "response_cost": 0.1, "status": "success", "stream": True,
     "startTime": _T0, "endTime": _T0 + 2.8, "completionStartTime": _T0 + 0.4, "custom_llm_provider": "openai",
     "model": "gpt-4o-mini", "model_group": "gpt-4o-mini", "total_tokens": 812, "cache_hit": False,
     "metadata": {"user_api_key_team_alias": "support", "user_api_key_alias": "support-bot",
                  "user_api_key_team_max_budget": 35.33, "user_api_key_team_spend": 12.5}},
    {"id": "r2", "call_type": "acompletion", "response_cost": 0.0, "status": "failure",
     "startTime": _T0, "endTime": _T0 + 30.1, "custom_llm_provider": "anthropic", "model": "claude-sonnet",
     "error_information": {"error_code": "529", "error_class": "ServiceUnavailableError",
                           "llm_provider": "anthropic", "error_message": "Overloaded"},
     "metadata": {"user_api_key_team_id": "t-1", "user_api_key_hash": "88dc28d0f030c55ed4ab77ed8faf098196cb1c05df778539800c9f1243fe6b4b"}},
    {"request_id": "s1", "spend": 0.02, "startTime": "2026-08-21T14:03:07.102Z", "endTime": "2026-08-21T14:03:09.934Z",
     "model": "azure/gpt-4o", "model_group": "gpt-4o", "cache_hit": "True", "total_tokens": 55, "team_id": "t-2",
     "api_key": "88dc28d0f030c55e", "request_duration_ms": 2832,
     "metadata": {"status": "failure", "error_information": {"error_code": "429", "error_class": "RateLimitError"}}},
    {"event": {"provider": "runner"}, "fly": {"app": {"instance": "e286", "name": "gw"}, "region": "ord"},
     "log": {"level": "info"}, "message": "Out of memory: Killed process 312 (litellm)",
     "timestamp": "2026-08-21T14:03:10.123456789Z"},
    {"event": {"provider": "app"}, "fly": {"app": {"instance": "e286", "name": "gw"}, "region": "ord"},
     "log": {"level": "info"}, "timestamp": "2026-08-21T14:03:11.5Z",
     "message": '{"message": "Exception occured - litellm.APIError: openai returned 503", "level": "ERROR",'
                ' "timestamp": "2026-08-21T14:03:11.4", "component": "LiteLLM Proxy"}'},
    {"level": "info", "instance": "e286", "region": "ord", "timestamp": "2026-08-21T14:03:12Z",
     "message": "could not find a good candidate within 40 attempts at load balancing",
     "meta": {"Event": {"Provider": "proxy"}, "Instance": "e286", "Region": "ord"}},
    {"message": '10.0.1.5:40312 - "POST /chat/completions HTTP/1.1" 500', "level": "INFO",
     "timestamp": "2026-08-21T14:03:09.951210", "component": "uvicorn.access"},
    {"id": "o1", "traceId": "t1", "type": "GENERATION", "name": "litellm:support-bot", "level": "ERROR",
     "statusMessage": "litellm.RateLimitError: slow down", "startTime": "2026-08-21T14:03:07.102Z",
     "endTime": "2026-08-21T14:03:09.934Z", "createdAt": "2026-08-21T14:05:00.000Z", "latency": 2.832,
     "providedModelName": "gpt-4o-mini", "usageDetails": {"input": 10, "output": 20, "total": 30},
     "costDetails": {"total": 0.001}, "metadata": {"cache_hit": False, "user_api_key_team_alias": "support"}},
    {"id": "t9", "timestamp": "2026-08-21T14:03:07.102Z", "createdAt": "2026-08-21T14:03:12.000Z",
     "name": "litellm-acompletion", "latency": 2.1, "totalCost": 0.002, "metadata": {}},
    {"gatewatch_metric": "redis_used_memory_bytes", "value": 1.2e8, "labels": {"system": "redis"},
     "timestamp": "2026-08-21T14:03:00Z"},
    {"gatewatch_probe": "http://gw/health", "ok": False, "status": 503, "latency_ms": 12.5,
     "timestamp": "2026-08-21T14:03:00Z"},
    {"request_log": True, "id": 7, "timestamp": "2026-08-21T14:03:00Z", "user_id": "u1", "model": "openai/gpt-4o",
     "total_tokens": 12, "cost": 0.01, "latency": 1200, "status_code": 502},
]

# Values that real sources have been seen to send, or that a broken one could.
BAD_VALUES: list[Any] = [
    None, "", " ", "null", "NaN", "nan", "Infinity", "-inf", "1e999", "-1e999", 1e308, -1e308, 1.7976931348623157e308,
    10**30, -(10**30), 2**63, -(2**63) - 1, 0, -1, 1, True, False, 0.0, -0.0, 5e-324, "0", "-1", "abc", "12abc",
    "2026-13-45T99:99:99Z", "9999-12-31T23:59:59Z", "0001-01-01T00:00:00Z", "1970-01-01T00:00:00Z",
    "2026-08-21T14:03:09.934+25:00", [], [1, 2], {}, {"a": {"b": {"c": None}}}, "\u0000", "\ud800".encode("utf-8", "surrogatepass").decode("utf-8", "replace"),
    "é" * 300, "x" * 5000, "sk-proj-" + "A" * 40, 4.0e15, 1.0e11, 99999999999999.0,
]


def _deep(depth: int) -> Any:
    value: Any = "bottom"
    for _ in range(depth):
        value = {"k": value}
    return value


def _paths(obj: Any, prefix: tuple = ()) -> list[tuple]:
    out = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            out.append(prefix + (k,))
            out.extend(_paths(v, prefix + (k,)))
    return out


def _set(obj: Any, path: tuple, value: Any) -> None:
    for k in path[:-1]:
        obj = obj[k]
    obj[path[-1]] = value


def _delete(obj: Any, path: tuple) -> None:
    for k in path[:-1]:
        obj = obj[k]
    obj.pop(path[-1], None)


def _bad_value(rng: random.Random) -> Any:
    roll = rng.random()
    if roll < 0.75:
        return rng.choice(BAD_VALUES)
    if roll < 0.85:
        return _deep(rng.randint(1, 200))
    if roll < 0.95:
        return rng.uniform(-1e12, 4e12)
    return [rng.choice(BAD_VALUES) for _ in range(rng.randint(0, 5))]


def _mutate_record(rng: random.Random, record: dict[str, Any]) -> Any:
    paths = _paths(record)
    for _ in range(rng.randint(1, 3)):
        path = rng.choice(paths)
        try:
            if rng.random() < 0.2:
                _delete(record, path)
            else:
                _set(record, path, _bad_value(rng))
        except (KeyError, TypeError, AttributeError, IndexError):
            pass  # an earlier mutation replaced a parent: nothing to reach
    return record


def _flip_bytes(rng: random.Random, raw: bytes) -> bytes:
    data = bytearray(raw)
    for _ in range(rng.randint(1, 8)):
        data[rng.randrange(len(data))] = rng.randrange(256)
    return bytes(data)


def _encode(value: Any) -> bytes:
    try:
        return orjson.dumps(value)
    except (TypeError, orjson.JSONEncodeError):  # over orjson's depth or int range: write it by hand
        return repr(value).replace("'", '"').replace("None", "null").encode("utf-8", "surrogatepass")


# Whole-line manglings: (weight, function of (rng, encoded good record) -> line bytes)
_LINE_MUTATIONS: list[tuple[float, Callable[[random.Random, bytes], bytes]]] = [
    (0.10, lambda rng, raw: raw[: rng.randrange(1, len(raw))]),  # truncated
    (0.08, _flip_bytes),  # bit rot, invalid UTF-8
    (0.04, lambda rng, raw: raw.replace(b'"', b"", rng.randint(1, 3))),
    (0.03, lambda rng, raw: b"[" + b",".join([raw] * rng.randint(1, 4)) + b"]"),  # a generic_api batch
    (0.02, lambda rng, raw: b'{"data": [' + raw + b', 17, null], "meta": {}}'),  # an API page with junk items
    (0.02, lambda rng, raw: raw + raw),  # two objects on one line
    (0.02, lambda rng, raw: b"[" * rng.randint(1, 3000) + raw),  # deep nesting past every limit
    (0.02, lambda rng, raw: b'{"a":' * rng.randint(1, 3000) + raw),
    (0.02, lambda rng, raw: b"\xef\xbb\xbf" + raw),  # BOM
    (0.02, lambda rng, raw: bytes(rng.randrange(256) for _ in range(rng.randint(1, 300))).replace(b"\n", b" ")),
    (0.01, lambda rng, raw: b"{" + b" " * rng.randint(0, 5)),  # an indented object that never ends
    (0.01, lambda rng, raw: rng.choice([b"NaN", b"Infinity", b"-Infinity", b"1e999", b"123", b'"text"', b"null", b"true"])),
    (0.01, lambda rng, raw: raw.replace(b": ", b": NaN, \"x\": ", 1)),
]
_LINE_TOTAL = sum(w for w, _ in _LINE_MUTATIONS)


def mutate(rng: random.Random, seed: dict[str, Any]) -> bytes:
    """One mangled line (no newline) derived from ``seed``; deterministic for a seeded ``rng``."""
    record = orjson.loads(orjson.dumps(seed))  # a deep copy
    if rng.random() < 0.7:
        record = _mutate_record(rng, record)
    raw = _encode(record)
    roll = rng.random()
    if roll < _LINE_TOTAL:
        for weight, fn in _LINE_MUTATIONS:
            if roll < weight:
                raw = fn(rng, raw)
                break
            roll -= weight
    return raw.replace(b"\n", b" ").replace(b"\r", b" ")


def mutated_line(rng: random.Random) -> bytes:
    return mutate(rng, rng.choice(SEEDS))


def outcome(line: bytes) -> tuple[list[Event], list[Reject]]:
    """The events and rejects of one line read on its own, as replay reads a file."""
    events: list[Event] = []
    rejects: list[Reject] = []
    for item in iter_lines(io.BytesIO(line + b"\n"), "fuzz"):
        if isinstance(item, Reject):
            rejects.append(item)
        else:
            events.extend(item)
    return events, rejects


def gzip_damaged(rng: random.Random, body: bytes) -> bytes:
    """A gzip of ``body``, cut short or with a corrupted byte after the header."""
    packed = gzip.compress(body)
    if rng.random() < 0.5:
        return packed[: rng.randrange(10, len(packed))]
    data = bytearray(packed)
    data[rng.randrange(10, len(data))] ^= 0xFF
    return bytes(data)
