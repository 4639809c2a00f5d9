"""Which source a decoded JSON record comes from, and its events (CONTRACT.md §2).

Detection reads only which keys are present, a few dict lookups per record (this is the hot
path of replay and of every ingest agent). Keys tested, most frequent source first:

==========================  ===============================================================
``fly``                     Fly NATS envelope (SOURCES.md §3a)
``response_cost``           LiteLLM ``StandardLoggingPayload`` (§1a)
``traceId``                 Langfuse observation (§2b, §2c)
``spend`` + ``request_id``  ``"LiteLLM_SpendLogs"`` row (§1b)
``message`` + ``meta``      ``flyctl logs --json`` object (§3b)
``message`` + ``level``     LiteLLM JSON log line (§1c)
``attributes``              Fly logs HTTP API item (§3c): its ``attributes`` as a flyctl entry
``timestamp`` + ``id``      Langfuse trace (§2a)
==========================  ===============================================================

A JSON array is a batch of records (the ``generic_api`` callback posts arrays); an object with
a ``data`` list is an API page (Langfuse ``{data, meta}``, Fly ``{data, meta}``).
"""

from __future__ import annotations

from io import BytesIO
from typing import Any, Callable, Final

import orjson

from connectors.fly import parse_flyctl, parse_nats
from connectors.langfuse import parse_observation, parse_trace
from connectors.litellm import parse_json_log, parse_payload, parse_spendlog
from connectors.infra import parse_metric, parse_probe, parse_request_log
from models.clock import FUTURE
from models.events import REQUEST, Event, Rejected
from models.partials import ByCloseMinute

__all__ = ["fold_batch", "parse_bytes", "parse_one", "parse_record", "parser_for", "records", "route"]

Parser = Callable[[dict[str, Any]], Event]
# A wrong type anywhere in a record shows up as one of these inside a parser.
_TYPE_ERRORS = (TypeError, ValueError, AttributeError, KeyError, OverflowError)


def parser_for(obj: dict[str, Any]) -> Parser | None:
    """The parser for one record, from its keys; ``None`` when no format has these keys."""
    if "fly" in obj:
        return parse_nats
    if "response_cost" in obj:
        return parse_payload
    if "traceId" in obj:
        return parse_observation
    if "spend" in obj and "request_id" in obj:
        return parse_spendlog
    if "message" in obj:
        if "meta" in obj:
            return parse_flyctl
        return parse_json_log if "level" in obj else None
    if "attributes" in obj:
        return _parse_fly_api_item
    if "gatewatch_metric" in obj:
        return parse_metric
    if "gatewatch_probe" in obj:
        return parse_probe
    if "request_log" in obj:
        return parse_request_log
    if "timestamp" in obj and "id" in obj:
        return parse_trace
    return None


def parse_one(obj: object) -> Event:
    """One record (a JSON object) → its event. Raises ``Rejected`` (never anything else)."""
    if type(obj) is not dict:
        raise Rejected("unknown_format", f"a record is a JSON {_json_type(obj)}, not an object")
    parser = parser_for(obj)
    if parser is None:
        raise Rejected("unknown_format", "keys: " + ",".join(list(obj)[:8]))
    try:
        event = parser(obj)
    except Rejected:
        raise
    except _TYPE_ERRORS as error:
        raise Rejected("wrong_type", f"{parser.__name__}: {error}"[:200]) from None
    _check_labels(event)
    return event


def records(value: object) -> list[Any]:
    """The records in one decoded JSON value: itself, an array's items, or a page's ``data``."""
    if type(value) is dict:
        data = value.get("data")
        if type(data) is list and parser_for(value) is None:
            return data
        return [value]
    if type(value) is list:
        return value
    raise Rejected("unknown_format", f"a JSON {_json_type(value)}")


def parse_record(value: object) -> list[Event]:
    """Every event in one decoded JSON value (see ``records``); the first bad record raises."""
    if type(value) is dict and "data" not in value:
        return [parse_one(value)]
    return [parse_one(record) for record in records(value)]


def parse_bytes(raw: bytes | str) -> list[Event]:
    """One raw message (a Kafka value, an HTTP body, a line) → its events; raises ``Rejected``."""
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise Rejected("not_json", str(error)[:200]) from None
    return parse_record(value)


def _parse_fly_api_item(obj: dict[str, Any]) -> Event:
    attributes = obj["attributes"]
    if type(attributes) is not dict or parser_for(attributes) is not parse_flyctl:
        raise Rejected("unknown_format", "attributes is not a Fly log entry")
    return parse_flyctl(attributes)


def fold_batch(value: bytes, folder: ByCloseMinute, not_after: float | None = None,
               duplicate: Callable[[Event], bool] | None = None) -> tuple[int, list[tuple[bytes, Rejected]]]:
    """Parse one raw batch (NDJSON: ``connectors.kafka.encode_batch``) and fold its events into
    ``folder``: the per-line loop of the worker's ingest (``streams.stages.ingest_batch``), here so
    that it runs compiled. Returns how many records (lines not blank) the batch held, and each line
    that was rejected (without its newline), with why: a line no parser takes, or an event stamped
    after ``not_after`` (``future_timestamp``). ``duplicate(ev)``, asked of each request, drops the
    ones already counted.

    Lines are cut by iterating a ``BytesIO`` (memchr), not by ``bytes.split``, whose one-byte
    separator loop goes byte by byte; orjson takes a line with its newline.
    """
    rejected: list[tuple[bytes, Rejected]] = []
    records = 0
    for line in BytesIO(value):
        if line.isspace():  # a blank line ("\n" is space): not a record
            continue
        records += 1
        try:
            events = parse_bytes(line)  # orjson takes a line with its newline
        except Rejected:
            line = _unterminated(line)
            try:  # again, as the line alone: a reason worded as for any other line
                events = parse_bytes(line)
            except Rejected as rej:
                rejected.append((line, rej))
                continue
        for ev in events:
            if not_after is not None and ev.ts > not_after:
                rejected.append((_unterminated(line), Rejected(
                    FUTURE, f"{ev.kind} at {ev.ts:.3f} is ahead of the service's clock ({not_after:.0f})")))
                continue
            if duplicate is not None and ev.kind == REQUEST and duplicate(ev):
                continue
            folder.add(ev)
    return records, rejected


def _unterminated(line: bytes) -> bytes:
    return line[:-1] if line.endswith(b"\n") else line


def _check_labels(event: Event) -> None:
    # Labels become dict keys downstream: a list or an object there would crash an aggregator.
    # (Compiled, ``Event`` itself refuses a non-string there; plain Python, this is the check.)
    if not (type(event.provider) is str and type(event.model) is str and type(event.team) is str
            and type(event.key) is str and type(event.app) is str and type(event.instance) is str
            and type(event.region) is str and type(event.error_class) is str and type(event.call_type) is str
            and type(event.request_id) is str and type(event.trace_id) is str and type(event.level) is str
            and type(event.message) is str):
        raise Rejected("wrong_type", "a label or id field (provider, model, team, key, request_id, ...) "
                                     "is not a string")
    _check_numbers(event)


# Plausible event times: 2000-01-01 to 2100-01-01. Beyond them a timestamp is a unit or clock error
# (epoch microseconds, a year 9999), and one such event would move event time years ahead.
MIN_TS: Final = 946684800.0
MAX_TS: Final = 4102444800.0


_MAX_SQUARE: Final = 1e26  # |each number| < 1e13: no request costs $10^13 or takes 10^13 tokens; a TB gauge is 1e12


def _check_numbers(event: Event) -> None:
    # One comparison for the time and one bounded sum for the rest: NaN fails every comparison, and
    # a sum holding NaN, ±inf or an absurd magnitude is out of bounds. One such value would poison a
    # window (inf - inf is NaN when it slides out) or overflow a sum of many.
    ts = event.ts
    if not MIN_TS <= ts <= MAX_TS:
        raise Rejected("bad_timestamp", f"event time {ts!r} is not between 2000 and 2100")
    # Squares, not abs(): no call per field, and no cancelling of a huge positive by a huge negative.
    cost, latency, ttft, lag = event.cost, event.latency or 0.0, event.ttft or 0.0, event.lag or 0.0
    value, budget, spend, tokens = event.value or 0.0, event.budget or 0.0, event.team_spend or 0.0, event.tokens
    try:
        total = (cost * cost + latency * latency + ttft * ttft + lag * lag + value * value + budget * budget
                 + spend * spend + tokens * tokens)
    except OverflowError:  # an integer beyond any float (a string of 400 digits)
        total = float("inf")
    if not total < _MAX_SQUARE:
        raise Rejected("wrong_type", "a number (cost, tokens, latency, lag, value, budget, spend) is NaN, "
                                     "infinite or beyond 1e13")


def _json_type(value: object) -> str:
    names = {str: "string", int: "number", float: "number", bool: "boolean", list: "array", dict: "object"}
    return names.get(type(value), "null")


# --- which source family a raw line belongs to (``gatewatch tail file``, ``replay --jobs``) ----
# Ordered: the first marker found decides. Strong, format-specific keys come first, so a
# LiteLLM payload that happens to carry an "event" key deep inside still goes to litellm,
# and a Langfuse observation whose metadata holds LiteLLM's request_id goes to langfuse.
# Inner JSON in a Fly envelope's "message" is escaped (\"request_id\"), so it never matches.
_ROUTES: tuple[tuple[bytes, str], ...] = (
    (b'"gatewatch_metric":', "infra"), (b'"gatewatch_probe":', "infra"), (b'"fly":{', "fly"),
    (b'"traceId"', "langfuse"), (b'"projectId"', "langfuse"), (b'"call_type"', "litellm"),
    (b'"request_id"', "litellm"), (b'"fly"', "fly"), (b'"event"', "fly"), (b'"instance"', "fly"),
    (b'"spend"', "litellm"), (b'"data"', "langfuse"),
)


def route(line: bytes) -> str:
    """The source family (``fly``, ``litellm``, ``langfuse``, ``infra``) of a raw line, by a byte
    sniff of its keys: no parse. Unknown lines go to ``litellm``, whose parsers try every format."""
    for marker, family in _ROUTES:
        if marker in line:
            return family
    return "litellm"
