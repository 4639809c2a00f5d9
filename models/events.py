"""The normalised event every source is parsed into.

One flat record with optional fields, so that the hot path (parse → window
aggregate) allocates one small object per log line and never validates twice.
The parsers in ``connectors/`` fill it; nothing in ``models/`` knows the raw formats.

Three kinds:

``request``
    one LLM call through the gateway (LiteLLM ``StandardLoggingPayload`` or a
    ``LiteLLM_SpendLogs`` row). Event time is the call's ``endTime``: that is when
    the gateway knows the outcome and when the callback fires.
``log``
    one platform or application log line (Fly.io NATS stream, ``flyctl logs --json``,
    a LiteLLM JSON log line). ``signal`` says what the line means for alerting.
``metric``
    one sampled gauge (``gatewatch tail redis|postgres|probe``): ``message`` is the metric
    name (``redis_used_memory_bytes``, ``probe_reachable``, ...), ``value`` its reading.
``trace``
    one Langfuse observation or trace. Event time is ``createdAt`` (when Langfuse
    stored it); ``lag`` is ``createdAt - endTime``, the ingestion delay.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

REQUEST: Final = "request"
LOG: Final = "log"
TRACE: Final = "trace"
METRIC: Final = "metric"  # a sampled gauge: infrastructure polls (Redis, PostgreSQL) and health probes

# What a log line means. Parsers set one of these in ``Event.signal``.
SIG_ACCESS: Final = "access"  # uvicorn access line; ``status`` holds the HTTP status code
SIG_PROXY_EXCEPTION: Final = "proxy_exception"  # LiteLLM Proxy logged an exception for a call
SIG_OOM: Final = "oom"  # the kernel OOM-killed the gateway process
SIG_CRASH: Final = "crash"  # machine exited with a non-zero code (and is restarting)
SIG_CLEAN_EXIT: Final = "clean_exit"  # orderly stop (deploy, scale-down): not an alarm
SIG_START: Final = "start"  # machine/app starting
SIG_PROXY_ERROR: Final = "proxy_error"  # Fly proxy could not reach a machine
SIG_CLICKHOUSE_ERROR: Final = "clickhouse_error"  # Langfuse worker failed to insert into ClickHouse
SIG_INGEST_BATCH: Final = "ingest_batch"  # Langfuse worker heartbeat: processed a batch
SIG_APP_ERROR: Final = "app_error"  # any other line at level ERROR/CRITICAL
SIG_OTHER: Final = "other"


@dataclass(slots=True, init=False)  # __init__ below: compiled (setup.py), a generated one is not
class Event:
    ts: float  # event time, epoch seconds (UTC)
    kind: str  # REQUEST | LOG | TRACE
    source: str  # litellm | spendlogs | fly | flyctl | langfuse | sqlite | probe ...

    # where: the dimensions metrics are kept per
    provider: str = ""  # custom_llm_provider: openai, anthropic, groq ...
    model: str = ""  # model group (the public name clients ask for), else model
    team: str = ""  # team alias, else team id
    key: str = ""  # virtual key alias, else a short prefix of its hash
    app: str = ""  # Fly app name
    instance: str = ""  # Fly machine id
    region: str = ""

    # request outcome
    ok: bool = True
    status: int = 0  # HTTP-like status: 200 on success, error code on failure, access-log status
    error_class: str = ""
    latency: float | None = None  # seconds, end - start
    ttft: float | None = None  # seconds, time to first token (streaming)
    tokens: int = 0
    cost: float = 0.0  # USD
    cache_hit: bool | None = None  # None when the call was not cacheable (cache off)
    call_type: str = ""
    budget: float | None = None  # the team's max budget as the gateway reports it
    team_spend: float | None = None  # the team's spend as the gateway reports it
    request_id: str = ""
    trace_id: str = ""

    # logs and traces
    signal: str = ""
    level: str = ""
    message: str = ""
    lag: float | None = None  # Langfuse ingestion lag, seconds
    value: float | None = None  # METRIC: the sampled value; ``message`` holds the metric name

    def __init__(
        self, ts: float, kind: str, source: str, provider: str = "", model: str = "", team: str = "",
        key: str = "", app: str = "", instance: str = "", region: str = "", ok: bool = True,
        status: int = 0, error_class: str = "", latency: float | None = None, ttft: float | None = None,
        tokens: int = 0, cost: float = 0.0, cache_hit: bool | None = None, call_type: str = "",
        budget: float | None = None, team_spend: float | None = None, request_id: str = "",
        trace_id: str = "", signal: str = "", level: str = "", message: str = "", lag: float | None = None,
        value: float | None = None,
    ) -> None:
        self.ts = ts
        self.kind = kind
        self.source = source
        self.provider = provider
        self.model = model
        self.team = team
        self.key = key
        self.app = app
        self.instance = instance
        self.region = region
        self.ok = ok
        self.status = status
        self.error_class = error_class
        self.latency = latency
        self.ttft = ttft
        self.tokens = tokens
        self.cost = cost
        self.cache_hit = cache_hit
        self.call_type = call_type
        self.budget = budget
        self.team_spend = team_spend
        self.request_id = request_id
        self.trace_id = trace_id
        self.signal = signal
        self.level = level
        self.message = message
        self.lag = lag
        self.value = value


class Rejected(ValueError):
    """A record that no parser accepts. ``reason`` is short and stable (it is counted by)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail
