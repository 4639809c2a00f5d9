"""LiteLLM records → ``Event``.

Three formats, specified field by field in reference/SOURCES.md:

* §1a ``StandardLoggingPayload``: one LLM call, as the ``generic_api`` callback posts it
  (epoch-second floats, ``error_information.error_code`` as a string);
* §1b a ``"LiteLLM_SpendLogs"`` row as JSON (ISO times, ``cache_hit`` as ``"True"``/``"False"``);
* §1c a JSON log line (``json_logs: true``): ``message``, ``level``, naive ``timestamp``,
  ``component``; standalone, or decoded from a Fly log envelope's ``message``.

Parsers are lenient about missing or unknown keys. A record that cannot be placed in time
raises ``Rejected``; other wrong types surface as TypeError/ValueError/AttributeError, which
``connectors.formats`` turns into ``Rejected("wrong_type")``.
"""

from __future__ import annotations

import re
from typing import Any, Final

import orjson

from connectors.fields import flag, number, real, to_epoch, whole
from models.events import (
    LOG,
    REQUEST,
    SIG_ACCESS,
    SIG_APP_ERROR,
    SIG_OTHER,
    SIG_PROXY_EXCEPTION,
    SIG_START,
    Event,
    Rejected,
)
from models.redaction import redact

__all__ = ["error_class_in", "http_status", "log_event", "parse_json_log", "parse_payload", "parse_spendlog",
           "provider_status_in"]

_EMPTY: Final[dict[str, Any]] = {}
MESSAGE_CHARS: Final = 300  # enough to explain an alert; a stack trace is not

# Exception class → HTTP status when the record carries no numeric code (LiteLLM's exception
# mapping: litellm/exceptions.py). Anything else is a 500.
_STATUS_BY_CLASS = {
    "RateLimitError": 429,
    "Timeout": 408,
    "AuthenticationError": 401,
    "PermissionDeniedError": 403,
    "NotFoundError": 404,
    "BadRequestError": 400,
    "ContentPolicyViolationError": 400,
    "ContextWindowExceededError": 400,
    "ServiceUnavailableError": 503,
}
_ERROR_LEVELS: Final = frozenset({"ERROR", "CRITICAL", "FATAL"})
_PROXY_COMPONENTS: Final = frozenset({"LiteLLM Proxy", "LiteLLM Router"})
_ACCESS: Final = re.compile(r'"([A-Z]+) ([^ "?]+)[^ "]* HTTP/[\d.]+" (\d{3})')


def http_status(error_code: object, error_class: str | None) -> int:
    """The HTTP status of a failed call: its numeric error code, else one mapped from its class."""
    if type(error_code) is str and error_code.isdigit():
        error_code = int(error_code)
    if type(error_code) is int and 100 <= error_code <= 599:
        return error_code
    return _STATUS_BY_CLASS.get(error_class or "", 500)


def error_class_in(text: str) -> str:
    r"""The first exception class named in an error text (``litellm.RateLimitError: …``), or "":
    what ``re.search(r"\b([A-Z]\w*(?:Error|Timeout))\b", text)`` finds.

    Read with ``str.find`` and character tests: the regex tried a capital and a backtracking
    ``\w*`` at every word of the text (about 2.4 µs a proxy exception line, which a provider
    outage writes per failed call). A match of ``\b[A-Z]\w*(?:Error|Timeout)\b`` is a whole word
    (a run of ``\w``) that starts with an ASCII capital and ends with the suffix; the first such
    word is the one ``search`` returns.
    """
    first, found = -1, ""
    for suffix, shortest in _CLASS_SUFFIXES:
        at = text.find(suffix)
        while at >= 0:
            end = at + len(suffix)
            if end == len(text) or not _is_word(text, end):
                start = _word_start(text, at)
                if end - start >= shortest and 65 <= ord(text[start]) <= 90:  # A-Z
                    if first < 0 or start < first:
                        first, found = start, text[start:end]
                    break
            at = text.find(suffix, at + 1)
    return found


def provider_status_in(text: str) -> tuple[str, int] | None:
    r"""``openai returned 503`` in an error text → ("openai", 503): the groups of
    ``re.search(r"(\w+) returned (\d{3})\b", text)``, or None.

    Read with ``str.find`` and character tests: the regex, whose ``(\w+)`` comes first, tried every
    position of the text (about 18 µs a proxy exception line). A match ends a word (a run of
    ``\w``) just before `` returned `` and takes the whole word; the first occurrence followed by
    three digits and a word boundary gives the one ``search`` returns.
    """
    n = len(text)
    at = text.find(" returned ")
    while at >= 0:
        digits = at + 10
        if (digits + 3 <= n and text[digits].isdecimal() and text[digits + 1].isdecimal()
                and text[digits + 2].isdecimal() and (digits + 3 == n or not _is_word(text, digits + 3))):
            start = _word_start(text, at)
            if start < at:
                return text[start:at], int(text[digits:digits + 3])
        at = text.find(" returned ", at + 1)
    return None


# Exception class suffixes and the shortest word each ends (a capital, then the suffix).
_CLASS_SUFFIXES: Final = (("Error", 6), ("Timeout", 8))


def _is_word(text: str, i: int) -> bool:
    r"""Whether ``text[i]`` is a regex ``\w`` character: alphanumeric (Unicode) or ``_``."""
    code = ord(text[i])
    if code < 128:
        return 97 <= code <= 122 or 65 <= code <= 90 or 48 <= code <= 57 or code == 95
    return text[i].isalnum()


def _word_start(text: str, end: int) -> int:
    r"""Where the run of ``\w`` characters ending just before ``end`` starts (``end`` if none)."""
    start = end
    while start > 0 and _is_word(text, start - 1):
        start -= 1
    return start


def parse_payload(obj: dict[str, Any]) -> Event:
    """A ``StandardLoggingPayload`` (SOURCES.md §1a) → a ``request`` event."""
    start = to_epoch(obj.get("startTime"), "startTime")
    end = to_epoch(obj.get("endTime"), "endTime")
    # Typed, so that compiled (setup.py) their lookups are dict lookups, not method calls; a
    # value of another type is then a TypeError here, as it is an AttributeError plain.
    meta: dict[str, Any] = obj.get("metadata") or _EMPTY
    error: dict[str, Any] = obj.get("error_information") or _EMPTY
    ok = _succeeded(obj.get("status"), error)
    provider = obj.get("custom_llm_provider") or error.get("llm_provider") or _prefix(obj.get("model"))
    model = obj.get("model_group") or obj.get("model") or ""
    team = meta.get("user_api_key_team_alias") or meta.get("user_api_key_team_id") or ""
    key = meta.get("user_api_key_alias") or (meta.get("user_api_key_hash") or "")[:12]
    status = 200 if ok else http_status(error.get("error_code"), error.get("error_class"))
    error_class = "" if ok else error.get("error_class") or ""
    latency = None if start is None or end is None else end - start
    ttft = _ttft(obj, start) if obj.get("stream") is True else None
    cache_hit = None if obj.get("cache_key") == "Cache OFF" else flag(obj.get("cache_hit"))
    return Event(  # positional, in EVENT_ORDER (connectors/fields.py)
        _event_time(end, start), REQUEST, "litellm", provider, model, team, key, "", "", "",
        ok, status, error_class, latency, ttft,
        whole(obj.get("total_tokens")), real(obj.get("response_cost")), cache_hit,
        obj.get("call_type") or "",
        number(meta.get("user_api_key_team_max_budget")), number(meta.get("user_api_key_team_spend")),
        obj.get("id") or "", obj.get("trace_id") or "",
    )


def parse_spendlog(obj: dict[str, Any]) -> Event:
    """A ``"LiteLLM_SpendLogs"`` row as JSON (SOURCES.md §1b) → a ``request`` event."""
    start = to_epoch(obj.get("startTime"), "startTime")
    end = to_epoch(obj.get("endTime"), "endTime")
    meta = _spendlog_metadata(obj.get("metadata"))
    error: dict[str, Any] = meta.get("error_information") or _EMPTY
    ok = _succeeded(obj.get("status") or meta.get("status"), error)
    provider = obj.get("custom_llm_provider") or error.get("llm_provider") or _prefix(obj.get("model"))
    model = obj.get("model_group") or obj.get("model") or ""
    team = meta.get("user_api_key_team_alias") or obj.get("team_id") or meta.get("user_api_key_team_id") or ""
    key = meta.get("user_api_key_alias") or _hash_prefix(obj.get("api_key"))
    status = 200 if ok else http_status(error.get("error_code"), error.get("error_class"))
    error_class = "" if ok else error.get("error_class") or ""
    duration_ms = number(obj.get("request_duration_ms"))
    latency = duration_ms / 1000.0 if duration_ms is not None else _span(start, end)
    cache_hit = None if obj.get("cache_key") == "Cache OFF" else flag(obj.get("cache_hit"))
    return Event(  # positional, in EVENT_ORDER (connectors/fields.py)
        _event_time(end, start), REQUEST, "spendlogs", provider, model, team, key, "", "", "",
        ok, status, error_class, latency, None,
        whole(obj.get("total_tokens")), real(obj.get("spend")), cache_hit,
        obj.get("call_type") or "",
        number(meta.get("user_api_key_team_max_budget")), number(meta.get("user_api_key_team_spend")),
        obj.get("request_id") or "", obj.get("session_id") or "",
    )


def log_event(ts: float, source: str, app: str, instance: str, region: str, level: str, trace_id: str = "") -> Event:
    """An unclassified ``log`` event: the classifiers then set signal, status, ok and message."""
    return Event(ts, LOG, source, "", "", "", "", app, instance, region, True, 0, "", None, None, 0, 0.0,
                 None, "", None, None, "", trace_id, SIG_OTHER, level)


def parse_json_log(
    obj: dict[str, Any],
    ts: float | None = None,
    source: str = "litellm",
    app: str = "",
    instance: str = "",
    region: str = "",
    level: str = "",
) -> Event:
    """A LiteLLM JSON log line (SOURCES.md §1c) → a ``log`` event with its ``signal``.

    When the line came inside an envelope (Fly), the envelope's fields are passed in and its
    ``ts`` wins over the line's naive ``timestamp``; ``level`` is the envelope's, used only when
    the line has none.
    """
    if ts is None:
        ts = _event_time(to_epoch(obj.get("timestamp"), "timestamp"), None)
    event = log_event(ts, source, app, instance, region, (obj.get("level") or level).upper(),
                      obj.get("trace_id") or "")
    _classify(event, obj.get("message") or "", obj.get("component") or "")
    return event


def _classify(event: Event, message: str, component: str) -> None:
    if component == "uvicorn.access" or (not component and "HTTP/" in message):
        access = access_line(message)
        if access is not None:
            event.signal, event.status, event.message = SIG_ACCESS, access[1], access[0]
            event.ok = event.status < 400
            return
    event.message = redact(message)[:MESSAGE_CHARS]  # provider errors quote the key they were given
    if component in _PROXY_COMPONENTS and event.level in _ERROR_LEVELS:
        _proxy_exception(event, message)
    elif "Starting LiteLLM Proxy Server" in message:
        event.signal = SIG_START
    elif event.level in _ERROR_LEVELS:
        event.signal, event.ok = SIG_APP_ERROR, False


def access_line(message: str) -> tuple[str, int] | None:
    """The path and status of a uvicorn access line (``… "POST /chat/completions HTTP/1.1" 200``):
    ``_ACCESS.search``'s groups 2 and 3, or ``None`` where it finds no match.

    One access line per request: read with ``str.find`` and a few character tests where the line
    has the usual shape (the regex cost about five times more), by the regex itself otherwise.
    A match read at the first quote is the leftmost one, the one ``search`` returns.
    """
    found = _access_at(message, message.find('"'))
    if found is not None:
        return found
    match = _ACCESS.search(message)
    return None if match is None else (match[2], int(match[3]))


def _access_at(line: str, quote: int) -> tuple[str, int] | None:
    # '"([A-Z]+) ([^ "?]+)[^ "]* HTTP/[\d.]+" (\d{3})' at ``quote``, in ASCII only (the regex's \d
    # takes other digits too: such a line goes to the regex). Characters are read as ``ord(line[i])``,
    # which compiled is a native read; comparing one-character strings is not.
    if quote < 0:
        return None
    n = len(line)
    i = quote + 1
    while i < n and 65 <= ord(line[i]) <= 90:  # A-Z
        i += 1
    if i == quote + 1 or i >= n or ord(line[i]) != 32:
        return None
    start = i + 1
    end = line.find(" ", start)
    if end < 0 or end + 6 > n or line.find('"', start, end) >= 0:  # a quote first: no " HTTP/" follows
        return None
    if not (ord(line[end + 1]) == 72 and ord(line[end + 2]) == 84 and ord(line[end + 3]) == 84
            and ord(line[end + 4]) == 80 and ord(line[end + 5]) == 47):  # "HTTP/"
        return None
    cut = line.find("?", start, end)
    if cut == start or end == start:
        return None
    path = line[start:end if cut < 0 else cut]
    i = version = end + 6
    while i < n and (ord(line[i]) == 46 or 48 <= ord(line[i]) <= 57):  # [.0-9]
        i += 1
    if i == version or i + 5 > n or ord(line[i]) != 34 or ord(line[i + 1]) != 32:  # '" '
        return None
    a, b, c = ord(line[i + 2]) - 48, ord(line[i + 3]) - 48, ord(line[i + 4]) - 48
    if not (0 <= a <= 9 and 0 <= b <= 9 and 0 <= c <= 9):
        return None
    return path, a * 100 + b * 10 + c


def _proxy_exception(event: Event, message: str) -> None:
    """``… Exception occured - litellm.APIError: openai returned 503``: status, class, provider."""
    event.signal, event.ok = SIG_PROXY_EXCEPTION, False
    event.error_class = error_class_in(message)
    returned = provider_status_in(message)
    if returned is not None:
        event.provider, event.status = returned
    elif event.error_class:
        event.status = _STATUS_BY_CLASS.get(event.error_class, 500)


def _succeeded(status: object, error: dict[str, Any]) -> bool:
    # Old payloads carry no status: then the presence of an error class decides.
    return status == "success" if status else not error.get("error_class")


def _event_time(end: float | None, start: float | None) -> float:
    if end is not None:
        return end
    if start is not None:
        return start
    raise Rejected("missing_field", "no event time (endTime/startTime/timestamp)")


def _span(start: float | None, end: float | None) -> float | None:
    return None if start is None or end is None else end - start


def _ttft(obj: dict[str, Any], start: float | None) -> float | None:
    return _span(start, to_epoch(obj.get("completionStartTime"), "completionStartTime"))


def _prefix(model: object) -> str:
    """``bedrock/anthropic.claude…`` → ``bedrock``: LiteLLM model names carry the provider."""
    if type(model) is str and "/" in model:
        return model.split("/", 1)[0]
    return ""


def _spendlog_metadata(meta: object) -> dict[str, Any]:
    # Json columns come back as objects from psycopg, but as text from some exports.
    if type(meta) is str:
        meta = orjson.loads(meta) if meta else None
    return meta or _EMPTY  # type: ignore[return-value]


def _hash_prefix(api_key: object) -> str:
    # SpendLogs store the hashed token; an export that holds the raw ``sk-…`` key must not leak 12 of its characters.
    if not api_key:
        return ""
    return "sk-" + "***" if api_key[:3] == "sk-" else api_key[:12]  # type: ignore[index]
