"""Every input format (CONTRACT.md §2) parsed into the normalised Event.

One table row per format or message shape: the example records of reference/SOURCES.md
(invented values, real field names) and lines copied from the scenario files. Each row
checks only the fields the normalisation rules decide for that shape.
"""

from __future__ import annotations

from datetime import datetime, timezone

import orjson
import pytest

from connectors.fields import iso_epoch, to_epoch
from connectors.files import iter_file
from connectors.formats import parse_bytes, parse_record, parser_for
from models import events as ev


def epoch(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp()


# --- example records (SOURCES.md) ---------------------------------------------------------------

PAYLOAD = {  # §1a, trimmed to the fields the parser reads plus a few it must ignore
    "id": "chatcmpl-9f1c2e7a-3b4d-4c1e-9a55-2d3e4f5a6b7c", "trace_id": "5b0e2f5e-8a41-4d2b-a0c9-1f0a7e2c9d11",
    "call_type": "acompletion", "stream": None, "response_cost": 0.00041325, "status": "success",
    "custom_llm_provider": "openai", "total_tokens": 1551, "prompt_tokens": 1150, "completion_tokens": 401,
    "startTime": 1787311387.102, "endTime": 1787311389.934, "completionStartTime": 1787311389.934,
    "response_time": 2.832, "model": "gpt-4o-mini", "model_id": "3f9e4c1a0d", "model_group": "chat-default",
    "metadata": {"user_api_key_hash": "88dc28d0f030c55ed4ab77ed8faf098196cb1c05df778539800c9f1243fe6b4b",
                 "user_api_key_alias": "svc-support-bot", "user_api_key_team_id": "team-7c1d",
                 "user_api_key_team_alias": "support", "user_api_key_spend": 12.53},
    "cache_hit": False, "cache_key": None, "saved_cache_cost": 0.0, "error_str": None,
    "error_information": {"error_code": "", "error_class": "", "llm_provider": "", "traceback": "",
                          "error_message": ""},
    "model_parameters": {}, "hidden_params": {"model_id": "3f9e4c1a0d"}, "guardrail_information": None,
}


def payload(**changes: object) -> dict:
    return {**PAYLOAD, **changes}


def failure(code: str, error_class: str, **changes: object) -> dict:
    error = {"error_code": code, "error_class": error_class, "llm_provider": "openai"}
    return payload(status="failure", error_str=f"litellm.{error_class}: …", error_information=error,
                   response_cost=0.0, total_tokens=0, **changes)


SPENDLOG = {  # §1b
    "request_id": "chatcmpl-9f1c2e7a-3b4d-4c1e-9a55-2d3e4f5a6b7c", "call_type": "acompletion",
    "api_key": "88dc28d0f030c55ed4ab77ed8faf098196cb1c05df778539800c9f1243fe6b4b", "spend": 0.00041325,
    "total_tokens": 1551, "prompt_tokens": 1150, "completion_tokens": 401,
    "startTime": "2026-08-21T14:03:07.102Z", "endTime": "2026-08-21T14:03:09.934Z", "request_duration_ms": 2832,
    "completionStartTime": "2026-08-21T14:03:09.934Z", "model": "gpt-4o-mini", "model_id": "3f9e4c1a0d",
    "model_group": "chat-default", "custom_llm_provider": "openai", "api_base": "https://api.openai.com/v1",
    "user": "u_1042", "metadata": {"user_api_key_alias": "svc-support-bot", "user_api_key_team_id": "team-7c1d",
                                   "user_api_key_team_alias": "support", "status": "success"},
    "cache_hit": "False", "cache_key": "Cache OFF", "request_tags": ["prod"], "team_id": "team-7c1d",
    "session_id": "5b0e2f5e-8a41-4d2b-a0c9-1f0a7e2c9d11", "status": "success",
}

JSON_ACCESS = {"message": '10.0.1.5:40312 - "POST /chat/completions HTTP/1.1" 200', "level": "INFO",
               "timestamp": "2026-08-21T14:03:09.951210", "component": "uvicorn.access",
               "logger": "h11_impl.py:473"}
JSON_PROXY_EXCEPTION = {
    "message": "litellm.proxy.proxy_server.chat_completion(): Exception occured - litellm.RateLimitError: "
               "RateLimitError: OpenAIException - Rate limit reached",
    "level": "ERROR", "timestamp": "2026-08-21T14:03:11.004733", "component": "LiteLLM Proxy",
    "logger": "proxy_server.py:4321", "stacktrace": "Traceback (most recent call last): ...",
}

NATS_ACCESS = (  # §3a, first example
    r'{"event":{"provider":"app"},"fly":{"app":{"instance":"148ed193b95e89","name":"llm-gateway"},'
    r'"region":"iad"},"host":"7a2f","log":{"level":"info"},"message":"{\"message\": \"10.0.1.5:40312 - '
    r'\\\"POST /chat/completions HTTP/1.1\\\" 429\", \"level\": \"INFO\", \"timestamp\": '
    r'\"2026-08-21T14:03:11.004733\", \"component\": \"uvicorn.access\", \"logger\": \"h11_impl.py:473\"}",'
    r'"timestamp":"2026-08-21T14:03:11.005120331Z"}'
)
FLYCTL = {  # §3b
    "level": "info", "instance": "148ed193b95e89", "message": "Starting LiteLLM Proxy Server", "region": "iad",
    "timestamp": "2026-08-21T14:00:01.220331907Z",
    "meta": {"Instance": "148ed193b95e89", "Region": "iad", "Event": {"Provider": "app"},
             "HTTP": {"Request": {"ID": "", "Method": "", "Version": ""}, "Response": {"status_code": 0}},
             "Error": {"Code": 0, "Message": ""}, "URL": {"Full": ""}},
}

OBSERVATION_V1 = {  # §2b
    "id": "time-14-03-07-102000_chatcmpl-9f1c2e7a", "projectId": "cm1proj0001",
    "traceId": "0b8a7c66-1e2f-4a3b-9c4d-5e6f7a8b9c0d", "parentObservationId": None,
    "name": "litellm:svc-support-bot", "type": "GENERATION", "environment": "production",
    "startTime": "2026-08-21T14:03:07.102Z", "endTime": "2026-08-21T14:03:09.934Z",
    "completionStartTime": "2026-08-21T14:03:09.934Z", "createdAt": "2026-08-21T14:03:10.210Z",
    "updatedAt": "2026-08-21T14:03:10.480Z",
    "metadata": {"cache_hit": False, "litellm_response_cost": 0.00041325, "api_base": "https://api.openai.com/v1"},
    "level": "DEFAULT", "statusMessage": None, "model": "gpt-4o-mini",
    "usageDetails": {"input": 1150, "output": 401, "total": 1551, "cache_read_input_tokens": 1024},
    "costDetails": {"input": 0.0001725, "output": 0.00024075, "total": 0.00041325},
    "promptTokens": 2174, "completionTokens": 401, "totalTokens": 1551,
    "calculatedTotalCost": 0.00041325, "latency": 2.832, "timeToFirstToken": 2.832,
}
OBSERVATION_V2 = {  # §2c (fields=basic,usage,metrics,model); prices as decimal strings
    "id": "time-14-03-07-102000_chatcmpl-9f1c2e7a", "traceId": "0b8a7c66-…",
    "startTime": "2026-08-21T14:03:07.102Z", "endTime": "2026-08-21T14:03:09.934Z", "projectId": "cm1proj0001",
    "parentObservationId": None, "type": "GENERATION", "isRootObservation": True,
    "name": "litellm:svc-support-bot", "level": "ERROR", "statusMessage": "litellm.RateLimitError: …",
    "providedModelName": "gpt-4o-mini", "internalModelId": "clm-gpt-4o-mini", "modelParameters": {},
    "usageDetails": {"input": 0, "output": 0, "total": 0}, "costDetails": {}, "totalCost": 0,
    "latency": 0.41, "timeToFirstToken": None, "inputPrice": "0.00000015", "totalPrice": None,
}
TRACE = {  # §2a
    "id": "0b8a7c66-1e2f-4a3b-9c4d-5e6f7a8b9c0d", "externalId": None, "timestamp": "2026-08-21T14:03:07.102Z",
    "name": "litellm-acompletion", "userId": None, "metadata": {}, "projectId": "cm1proj0001",
    "environment": "production", "tags": ["prod"], "sessionId": "5b0e2f5e-8a41-4d2b-a0c9-1f0a7e2c9d11",
    "createdAt": "2026-08-21T14:03:10.210Z", "updatedAt": "2026-08-21T14:03:10.480Z",
    "htmlPath": "/project/cm1proj0001/traces/0b8a7c66-…", "latency": 2.832, "totalCost": 0.00041325,
    "observations": ["time-14-03-07-102000_chatcmpl-9f1c…"], "scores": [],
}

# --- lines copied from the scenario files -------------------------------------------------------

REAL_PAYLOAD_FAILURE = (
    '{"id":"chatcmpl-b3362691-6977-ccb5-38bf-0d2e4ae2fe84","trace_id":"72e43a1b-9aba-cf88-2a45-a9e3a7b18084",'
    '"call_type":"acompletion","stream":null,"response_cost":0.0,"status":"failure","status_fields":'
    '{"llm_api_status":"failure","guardrail_status":"not_run"},"custom_llm_provider":"openai","total_tokens":0,'
    '"prompt_tokens":0,"completion_tokens":0,"startTime":1789365751.783238,"endTime":1789365753.939852,'
    '"completionStartTime":1789365753.939852,"response_time":2.156614,"model":"gpt-4o-mini","model_id":'
    '"08ff60bacc","model_group":"gpt-4o-mini","api_base":"https://api.openai.com/v1","metadata":'
    '{"user_api_key_hash":"42d6b78f0129c93c709179ebe32c77281b3eedd2778690439d30bc23d384f6d7",'
    '"user_api_key_alias":"support-svc2","user_api_key_team_id":"team-5a15db","user_api_key_team_alias":'
    '"support","user_api_key_user_id":null,"user_api_key_org_id":null,"user_api_key_team_spend":0.008231,'
    '"user_api_key_team_max_budget":35.33,"requester_ip_address":"172.19.7.85"},"cache_hit":false,"cache_key":'
    '"5c64be26081b5bf11b92de23cce614a47b13488b881b31d10b78e6d76f38bae2","saved_cache_cost":0.0,"request_tags":[],'
    '"end_user":"","error_str":"litellm.APIError: openai returned 503","error_information":{"error_code":"503",'
    '"error_class":"APIError","llm_provider":"openai","traceback":"","error_message":"APIError from openai"},'
    '"model_parameters":{},"hidden_params":{"model_id":null,"api_base":"https://api.openai.com/v1",'
    '"response_cost":0.0,"litellm_overhead_time_ms":10.31}}'
)
REAL_OBSERVATION_ERROR = (
    '{"id":"time-06-02-31-783_chatcmpl-b3362691-69","projectId":"cm1proj0001","traceId":'
    '"72e43a1b-9aba-cf88-2a45-a9e3a7b18084","parentObservationId":null,"name":"litellm:support-svc2","type":'
    '"GENERATION","environment":"production","startTime":"2026-09-14T06:02:31.783Z","endTime":'
    '"2026-09-14T06:02:33.939Z","completionStartTime":"2026-09-14T06:02:32.759Z","createdAt":'
    '"2026-09-14T06:02:39.282Z","updatedAt":"2026-09-14T06:02:39.582Z","metadata":{"cache_hit":false,'
    '"litellm_response_cost":0.0,"api_base":"https://api.openai.com/v1","user_api_key_team_alias":"support"},'
    '"level":"ERROR","statusMessage":"litellm.APIError: openai returned 503","model":"gpt-4o-mini",'
    '"usageDetails":{"input":0,"output":0,"total":0},"costDetails":{},"calculatedTotalCost":0.0,"latency":2.157,'
    '"timeToFirstToken":null}'
)


def nats(message: str, provider: str = "app", level: str = "info", app: str = "llm-gateway") -> str:
    """A Fly NATS line shaped like the scenario files' (§3a)."""
    return orjson.dumps({
        "event": {"provider": provider}, "fly": {"app": {"instance": "e2865015c19d48", "name": app},
                                                  "region": "ord"},
        "host": "e286", "log": {"level": level}, "message": message,
        "timestamp": "2026-09-14T10:00:00.400000751Z",
    }).decode()


def inner(message: str, level: str = "ERROR", component: str | None = "LiteLLM Proxy") -> str:
    line = {"message": message, "level": level, "timestamp": "2026-09-14T06:37:56.126566"}
    if component:
        line |= {"component": component, "logger": "proxy_server.py:4321"}
    return orjson.dumps(line).decode()


FLY_TS = 1789365600.0 + 4 * 3600 + 0.400000  # 2026-09-14T10:00:00.400000(751)Z, truncated to µs

CASES = [
    # (id, record, expected fields)
    ("payload-success", PAYLOAD, dict(
        kind=ev.REQUEST, source="litellm", ts=1787311389.934, provider="openai", model="chat-default",
        team="support", key="svc-support-bot", ok=True, status=200, error_class="", latency=pytest.approx(2.832),
        ttft=None,
        tokens=1551, cost=0.00041325, cache_hit=False, call_type="acompletion", budget=None, team_spend=None,
        request_id=PAYLOAD["id"], trace_id=PAYLOAD["trace_id"])),
    ("payload-failure-429", failure("429", "RateLimitError"), dict(
        ok=False, status=429, error_class="RateLimitError", tokens=0, cost=0.0)),
    ("payload-code-not-numeric", failure("rate_limit_exceeded", "RateLimitError"), dict(ok=False, status=429)),
    ("payload-timeout-no-code", failure("", "Timeout"), dict(status=408, error_class="Timeout")),
    ("payload-unknown-class", failure("", "APIConnectionError"), dict(status=500)),
    ("payload-context-window", failure("", "ContextWindowExceededError"), dict(status=400)),
    ("payload-stream-ttft", payload(stream=True, completionStartTime=1787311387.602), dict(
        ttft=pytest.approx(0.5), latency=pytest.approx(2.832))),
    ("payload-cache-off", payload(cache_key="Cache OFF", cache_hit=None), dict(cache_hit=None)),
    ("payload-cache-hit", payload(cache_key="abc", cache_hit=True), dict(cache_hit=True)),
    ("payload-cache-none", payload(cache_hit=None), dict(cache_hit=None)),
    ("payload-fallbacks", payload(custom_llm_provider=None, model_group=None, model="bedrock/claude",
                                  metadata={"user_api_key_hash": "0123456789abcdef", "user_api_key_team_id": "t1",
                                            "user_api_key_team_max_budget": 25.5,
                                            "user_api_key_team_spend": 3.25}),
     dict(provider="bedrock", model="bedrock/claude", team="t1", key="0123456789ab", budget=25.5,
          team_spend=3.25)),
    ("payload-no-end-time", payload(endTime=None), dict(ts=1787311387.102, latency=None)),
    ("payload-real-failure", orjson.loads(REAL_PAYLOAD_FAILURE), dict(
        ts=1789365753.939852, provider="openai", model="gpt-4o-mini", team="support", key="support-svc2",
        ok=False, status=503, error_class="APIError", latency=pytest.approx(2.156614), budget=35.33,
        team_spend=0.008231, cache_hit=False)),
    ("spendlog", SPENDLOG, dict(
        kind=ev.REQUEST, source="spendlogs", ts=epoch("2026-08-21T14:03:09.934"), provider="openai",
        model="chat-default", team="support", key="svc-support-bot", ok=True, status=200, latency=2.832,
        tokens=1551, cost=0.00041325, cache_hit=None, call_type="acompletion", request_id=SPENDLOG["request_id"],
        trace_id=SPENDLOG["session_id"])),
    ("spendlog-failure", {**SPENDLOG, "status": "failure", "cache_key": "k", "cache_hit": "True",
                          "request_duration_ms": None, "endTime": "2026-08-21T16:03:10.934+02:00",
                          "metadata": {"error_information": {"error_code": "", "error_class": "NotFoundError"}}},
     dict(ok=False, status=404, error_class="NotFoundError", cache_hit=True, team="team-7c1d",
          key="88dc28d0f030", ts=epoch("2026-08-21T14:03:10.934"), latency=pytest.approx(3.832))),
    ("spendlog-naive-times", {**SPENDLOG, "endTime": "2026-08-21 14:03:09.934"},
     dict(ts=epoch("2026-08-21T14:03:09.934"))),
    ("json-log-access", JSON_ACCESS, dict(
        kind=ev.LOG, source="litellm", signal=ev.SIG_ACCESS, status=200, ok=True, message="/chat/completions",
        level="INFO", ts=epoch("2026-08-21T14:03:09.951210"))),
    ("json-log-proxy-exception", JSON_PROXY_EXCEPTION, dict(
        signal=ev.SIG_PROXY_EXCEPTION, status=429, error_class="RateLimitError", ok=False, level="ERROR")),
    ("json-log-start", {"message": "Starting LiteLLM Proxy Server", "level": "INFO",
                        "timestamp": "2026-09-14T10:00:06.000"}, dict(signal=ev.SIG_START, ok=True)),
    ("json-log-app-error", {"message": "DB connection lost", "level": "CRITICAL",
                            "timestamp": "2026-09-14T10:00:06.000", "component": "LiteLLM"},
     dict(signal=ev.SIG_APP_ERROR, ok=False)),
    ("json-log-other", {"message": "Received request", "level": "INFO", "timestamp": "2026-09-14T10:00:06"},
     dict(signal=ev.SIG_OTHER, ok=True, message="Received request")),
    ("nats-access-429", NATS_ACCESS, dict(
        kind=ev.LOG, source="fly", ts=epoch("2026-08-21T14:03:11.005120"), app="llm-gateway",
        instance="148ed193b95e89", region="iad", signal=ev.SIG_ACCESS, status=429, ok=False,
        message="/chat/completions", level="INFO")),
    ("nats-oom", nats("Out of memory: Killed process 512 (litellm) total-vm:2911232kB", "runner"),
     dict(signal=ev.SIG_OOM, ok=False, ts=FLY_TS, level="INFO", region="ord", instance="e2865015c19d48")),
    ("nats-crash", nats("machine exited with exit code 137, restarting", "runner"),
     dict(signal=ev.SIG_CRASH, ok=False)),
    ("nats-exit-0", nats("machine exited with exit code 0, restarting", "runner"), dict(signal=ev.SIG_CLEAN_EXIT)),
    ("nats-main-child", nats("Main child exited normally with code: 0", "runner"), dict(signal=ev.SIG_CLEAN_EXIT)),
    ("nats-sigint", nats("Sending signal SIGINT to main child", "runner"), dict(signal=ev.SIG_OTHER)),
    ("nats-start", nats("Starting machine", "runner"), dict(signal=ev.SIG_START)),
    ("nats-clean-up", nats("Starting clean up.", "runner"), dict(signal=ev.SIG_OTHER)),
    ("nats-proxy", nats("could not find a good candidate within 40 attempts at load balancing. last error: "
                        "[PC05] timed out waiting for machine to be reachable", "proxy", "error"),
     dict(signal=ev.SIG_PROXY_ERROR, ok=False, level="ERROR")),
    ("nats-proxy-prefixed", nats("[PR04] could not find a good candidate within 2 attempts", "proxy", "error"),
     dict(signal=ev.SIG_PROXY_ERROR)),
    ("nats-proxy-other-error", nats("[PU02] unreachable", "proxy", "error"), dict(signal=ev.SIG_PROXY_ERROR)),
    ("nats-clickhouse", nats("ClickHouse INSERT error: Code: 241. DB::Exception: Memory limit (total) exceeded. "
                             "(MEMORY_LIMIT_EXCEEDED)", app="hotdash-langfuse-worker"),
     dict(signal=ev.SIG_CLICKHOUSE_ERROR, ok=False, app="hotdash-langfuse-worker")),
    ("nats-ingest-batch", nats("Processed ingestion queue batch"), dict(signal=ev.SIG_INGEST_BATCH, ok=True)),
    ("nats-text-error", nats("Traceback (most recent call last): ..."), dict(signal=ev.SIG_APP_ERROR)),
    ("nats-text-info", nats("GET / 200"), dict(signal=ev.SIG_OTHER, ok=True)),
    ("nats-app-not-runner", nats("Starting machine learning job"), dict(signal=ev.SIG_OTHER)),
    ("nats-text-brace", nats("{not json at all"), dict(signal=ev.SIG_OTHER, message="{not json at all")),
    ("nats-proxy-exception", nats(inner("litellm.proxy.proxy_server.chat_completion(): Exception occured - "
                                        "litellm.APIError: openai returned 503")),
     dict(signal=ev.SIG_PROXY_EXCEPTION, status=503, provider="openai", error_class="APIError", ok=False,
          level="ERROR", ts=FLY_TS)),
    ("nats-json-start", nats(inner("Starting LiteLLM Proxy Server", "INFO", None)), dict(signal=ev.SIG_START)),
    ("nats-long-message", nats("x" * 1000), dict(message="x" * 300)),
    ("flyctl", FLYCTL, dict(kind=ev.LOG, source="flyctl", app="", instance="148ed193b95e89", region="iad",
                            signal=ev.SIG_START, ts=epoch("2026-08-21T14:00:01.220331"), level="INFO")),
    ("flyctl-runner", {**FLYCTL, "message": "machine exited with exit code 1, restarting",
                       "meta": {"Event": {"Provider": "runner"}}}, dict(signal=ev.SIG_CRASH)),
    ("fly-api-item", {"id": "x", "attributes": FLYCTL}, dict(source="flyctl", signal=ev.SIG_START)),
    ("observation-v1", OBSERVATION_V1, dict(
        kind=ev.TRACE, source="langfuse", ts=epoch("2026-08-21T14:03:10.210"), lag=pytest.approx(0.276),
        model="gpt-4o-mini", key="svc-support-bot", level="DEFAULT", ok=True, status=200, latency=2.832,
        ttft=2.832, tokens=1551, cost=0.00041325, cache_hit=False, request_id=OBSERVATION_V1["id"],
        trace_id=OBSERVATION_V1["traceId"])),
    ("observation-v2-error", OBSERVATION_V2, dict(
        ts=epoch("2026-08-21T14:03:09.934"), lag=None, ok=False, status=500, error_class="RateLimitError",
        latency=0.41, ttft=None, tokens=0, cost=0.0, cache_hit=None, level="ERROR")),
    ("observation-legacy-totals", {**OBSERVATION_V1, "usageDetails": {}, "costDetails": {}, "latency": None},
     dict(tokens=1551, cost=0.00041325, latency=pytest.approx(2.832))),
    ("observation-real-error", orjson.loads(REAL_OBSERVATION_ERROR), dict(
        ts=epoch("2026-09-14T06:02:39.282"), lag=pytest.approx(5.343), team="support", ok=False, status=500,
        error_class="APIError", latency=2.157, cache_hit=False, message="litellm.APIError: openai returned 503")),
    ("trace", TRACE, dict(
        kind=ev.TRACE, source="langfuse", ts=epoch("2026-08-21T14:03:10.210"), lag=pytest.approx(0.276),
        latency=2.832, cost=0.00041325, trace_id=TRACE["id"])),
    ("trace-without-metrics", {**TRACE, "latency": -1, "totalCost": -1, "createdAt": None},
     dict(ts=epoch("2026-08-21T14:03:07.102"), latency=None, cost=0.0, lag=None)),
]


@pytest.mark.parametrize("record, expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_format(record: dict | str, expected: dict) -> None:
    raw = record if isinstance(record, str) else orjson.dumps(record)
    [event] = parse_bytes(raw)
    assert isinstance(event, ev.Event)
    got = {name: getattr(event, name) for name in expected}
    assert got == expected


def test_array_and_page() -> None:
    assert [e.ts for e in parse_record([PAYLOAD, failure("429", "RateLimitError")])] == [1787311389.934] * 2
    page = {"data": [OBSERVATION_V1, OBSERVATION_V1], "meta": {"page": 1, "limit": 50, "totalItems": 2}}
    assert [e.source for e in parse_record(page)] == ["langfuse", "langfuse"]
    assert parse_record([]) == []


def test_detection_is_by_keys() -> None:
    assert parser_for(PAYLOAD).__name__ == "parse_payload"
    assert parser_for(SPENDLOG).__name__ == "parse_spendlog"
    assert parser_for(orjson.loads(NATS_ACCESS)).__name__ == "parse_nats"
    assert parser_for(FLYCTL).__name__ == "parse_flyctl"
    assert parser_for(JSON_ACCESS).__name__ == "parse_json_log"
    assert parser_for(OBSERVATION_V2).__name__ == "parse_observation"
    assert parser_for(TRACE).__name__ == "parse_trace"
    assert parser_for({"hello": "world"}) is None


@pytest.mark.parametrize("text, expected", [
    ("2026-09-14T06:00:02.695576414Z", epoch("2026-09-14T06:00:02.695576")),  # Fly: nanoseconds
    ("2026-09-14T06:00:02.694576", epoch("2026-09-14T06:00:02.694576")),  # LiteLLM JSON log: naive = UTC
    ("2026-08-21T16:03:07.102+02:00", epoch("2026-08-21T14:03:07.102")),
    ("2026-08-21 14:03:07+00:00", epoch("2026-08-21T14:03:07")),
    ("2026-08-21T14:03:07Z", epoch("2026-08-21T14:03:07")),
])
def test_iso_timestamps(text: str, expected: float) -> None:
    assert iso_epoch(text) == pytest.approx(expected, abs=1e-6)


def _datetime_epoch(text: str) -> float | str:
    """What ``iso_epoch`` answered before its same-minute shortcut: datetime alone."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return "rejected"
    if moment.tzinfo is None:
        return (moment - datetime(1970, 1, 1)).total_seconds()
    return moment.timestamp()


def _iso_or_rejected(text: str) -> float | str:
    try:
        return iso_epoch(text)
    except ValueError:
        return "rejected"


# Seconds, fractions and the characters around them, valid and not: the shortcut must answer
# exactly as datetime does (or leave the text to it), to the last bit of the float.
_TAILS = ["00Z", "59Z", "60Z", "5Z", "07.Z", "07.1Z", "07.123456Z", "07.1234567Z", "07.602910512Z",
          "07.0000001Z", "07,5Z", "07.5z", "07.5", "07.5+00:00", "07.5+01:00", "07..5Z", "07.5 Z", "0٧.5Z",
          "07.١Z", "07.-5Z", "7.5Z", "07.5ZZ", "070Z", "07.9999999999999Z", ""]


@pytest.mark.parametrize("minute", ["2026-09-14T06:00", "1969-12-31T23:59", "2255-06-05T23:47", "9999-12-31T23:59",
                                    "2026-W37-1T06:00", "2026-09-14 06:00"])
def test_iso_same_minute_shortcut_is_datetime(minute: str) -> None:
    # Each minute first through datetime (which teaches the shortcut the minute), then every tail
    # after it twice: the second time the shortcut answers whenever it can.
    for tail in ["00Z", *_TAILS, *_TAILS]:
        text = f"{minute}:{tail}"
        assert _iso_or_rejected(text) == _datetime_epoch(text), text


def test_iso_same_minute_shortcut_random_times() -> None:
    import random

    rng = random.Random(7)
    for _ in range(20_000):
        moment = datetime.fromtimestamp(rng.uniform(0, 4e9), timezone.utc)
        digits = str(rng.randrange(10**9)).zfill(9)[: rng.randrange(0, 10)]
        text = moment.strftime("%Y-%m-%dT%H:%M:%S") + ("." + digits if digits else "") + "Z"
        assert iso_epoch(text) == _datetime_epoch(text), text
        text = text[:17] + f"{rng.randrange(60):02d}" + text[19:]  # another second of the same minute
        assert iso_epoch(text) == _datetime_epoch(text), text



def test_iso_same_minute_shortcut_across_alternating_minutes() -> None:
    """Two times per record a few seconds apart (a Langfuse observation's ``createdAt`` and
    ``endTime``) alternate between two minutes at each minute's end; now and then a third comes."""
    import random

    rng = random.Random(9)
    start = rng.uniform(1.7e9, 1.8e9)
    for i in range(20_000):
        end = start + i * 0.37
        for ts in (end, end + rng.uniform(0.0, 5.0), end - 3600.0 if i % 97 == 0 else end):
            moment = datetime.fromtimestamp(ts, timezone.utc)
            fraction = str(rng.randrange(10**6)).zfill(6)[: rng.randrange(1, 7)]
            text = moment.strftime("%Y-%m-%dT%H:%M:%S.") + fraction + "Z"
            assert iso_epoch(text) == _datetime_epoch(text), text

def test_epoch_values() -> None:
    assert to_epoch(1787311389.934, "t") == 1787311389.934
    assert to_epoch(1787311389934, "t") == pytest.approx(1787311389.934)  # milliseconds
    assert to_epoch("1787311389.934", "t") == 1787311389.934
    assert to_epoch(None, "t") is None and to_epoch("", "t") is None


def test_flyctl_indented_output(tmp_path) -> None:
    """``flyctl logs --json`` writes 4-space indented objects one after another (SOURCES.md §3b)."""
    indented = b"".join(orjson.dumps(FLYCTL, option=orjson.OPT_INDENT_2).replace(b"\n  ", b"\n    ") + b"\n"
                        for _ in range(3))
    path = tmp_path / "flyctl.json"
    path.write_bytes(indented + NATS_ACCESS.encode() + b"\n" + indented)
    items = list(iter_file(path))
    assert all(isinstance(item, list) for item in items), items
    assert [e.source for item in items for e in item] == ["flyctl"] * 3 + ["fly"] + ["flyctl"] * 3


def test_concatenated_objects_on_one_line(tmp_path) -> None:
    path = tmp_path / "x.ndjson"
    path.write_bytes(orjson.dumps(JSON_ACCESS) + orjson.dumps(JSON_ACCESS) + b"\n")
    [events] = list(iter_file(path))
    assert [e.signal for e in events] == [ev.SIG_ACCESS, ev.SIG_ACCESS]


def test_scenario_files_parse_without_rejects() -> None:
    """A slice of each real file: every line is a known format (no reject), and times are ordered sanely."""
    import glob
    import gzip
    import itertools

    paths = sorted(glob.glob("/work/shared/scenarios/*/*.ndjson.gz"))
    if not paths:
        pytest.skip("scenario files not present")
    for path in paths[:3]:
        with gzip.open(path) as lines:
            for line in itertools.islice(lines, 2000):
                [event] = parse_bytes(line)
                assert 1.7e9 < event.ts < 1.9e9
