"""LiteLLM ``StandardLoggingPayload`` lines (generic_api callback), in callback (endTime) order."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import orjson

from gatewatch.sim.rows import ERRORS, US, Rows
from gatewatch.sim.text import hex_strings, mix, uuids
from gatewatch.sim.world import PROVIDER_EXCEPTION, ModelGroup, World

CHUNK = 20_000
IPS = [f"172.19.{i // 256}.{i % 256}" for i in range(4096)]

LINE = (
    '{"id":"%s","trace_id":"%s","litellm_call_id":"%s",%s,"stream":%s,"response_cost":%.8f,%s,'
    '"total_tokens":%d,"prompt_tokens":%d,"completion_tokens":%d,'
    '"startTime":%d.%06d,"endTime":%d.%06d,"completionStartTime":%d.%06d,"response_time":%d.%06d,'
    '"metadata":{%s,"user_api_key_team_spend":%.6f,"requester_ip_address":"%s"},'
    '"cache_hit":%s,"cache_key":%s,"saved_cache_cost":%.8f,%s,"requester_ip_address":"%s",%s,"model_parameters":{},'
    '"hidden_params":{"model_id":%s,%s,"response_cost":%.8f,"litellm_overhead_time_ms":%.2f},'
    '"guardrail_information":null,"standard_built_in_tools_params":null}'
)


def _frag(obj: dict) -> str:
    """A JSON object's members without the braces, to splice into a line."""
    return orjson.dumps(obj).decode()[1:-1]


def error_text(err: int, model: ModelGroup) -> str:
    status, cls, msg = ERRORS[err]
    return f"litellm.{cls}: " + msg.format(exc=PROVIDER_EXCEPTION[model.provider])


def _status_frags(world: World) -> list[list[tuple[str, str]]]:
    """[err][model] -> (status members, error members)."""
    ok = (_frag({"status": "success", "status_fields": {"llm_api_status": "success", "guardrail_status": "not_run"}}),
          _frag({"error_str": None, "error_information": {"error_code": "", "error_class": "", "llm_provider": "",
                                                          "traceback": "", "error_message": ""}}))
    table = [[ok] * len(world.models)]
    for err in range(1, len(ERRORS)):
        row = []
        for m in world.models:
            text = error_text(err, m)
            info = {"error_code": str(ERRORS[err][0]), "error_class": ERRORS[err][1], "llm_provider": m.provider,
                    "traceback": "", "error_message": text.split(": ", 1)[1]}
            row.append((_frag({"status": "failure", "status_fields": {"llm_api_status": "failure",
                                                                      "guardrail_status": "not_run"}}),
                        _frag({"error_str": text, "error_information": info})))
        table.append(row)
    return table


class Tables:
    """Constant fragments of a run, looked up by index in the hot loop."""

    def __init__(self, world: World):
        self.model = [_frag({"call_type": m.call_type, "custom_llm_provider": m.provider, "model": m.model,
                             "model_id": m.model_id, "model_group": m.name, "api_base": m.api_base,
                             "model_map_information": {"model_map_key": m.model.split("/")[-1],
                                                       "model_map_value": None}}) for m in world.models]
        self.hidden = [(_frag({"api_base": m.api_base, "litellm_model_name": m.model}), f'"{m.model_id}"')
                       for m in world.models]
        self.status = _status_frags(world)
        self.max_keys = max(len(t.keys) for t in world.teams)
        self.meta, self.tail = [], []
        for t in world.teams:
            for k in t.keys + [t.keys[0]] * (self.max_keys - len(t.keys)):
                self.meta.append(_frag({"user_api_key_hash": k.hash, "user_api_key_alias": k.alias,
                                        "user_api_key_team_id": t.team_id, "user_api_key_team_alias": t.alias,
                                        "user_api_key_user_id": None, "user_api_key_org_id": None,
                                        "user_api_key_team_max_budget": t.budget}))
                self.tail.append(_frag({"request_tags": [*k.tags, f"User-Agent: {k.user_agent}"],
                                        "end_user": "", "user_agent": k.user_agent}))


def litellm_order(rows: Rows) -> np.ndarray:
    live = np.flatnonzero(~rows.dropped)
    return live[np.argsort((rows.t0 + rows.dur)[live], kind="stable")]


def render_litellm(world: World, rows: Rows) -> Iterator[str]:
    tables, order = Tables(world), litellm_order(rows)
    for a in range(0, len(order), CHUNK):
        yield "\n".join(_chunk(tables, rows, order[a:a + CHUNK])) + "\n"


def _chunk(tb: Tables, rows: Rows, idx: np.ndarray) -> list[str]:
    c = {k: v[idx] for k, v in rows.cols.items()}
    uid, tuid = c["uid"], rows.uid[c["trace"]]
    shown = np.where(c["stream"], c["ttft"], c["dur"])
    cache = c["cache"].tolist()
    keys = hex_strings([mix(uid, 5), mix(uid, 6), mix(uid, 7), mix(uid, 8)])
    cache_key = ["null" if h < 0 else f'"{k}"' for h, k in zip(cache, keys)]
    tk = (c["team"].astype(np.int64) * tb.max_keys + c["key"]).tolist()
    end = c["t0"] + c["dur"]
    cols = zip(uuids(uid, mix(uid, 1)), uuids(mix(tuid, 2), mix(tuid, 3)), uuids(mix(uid, 4), uid),
               c["model"].tolist(), c["stream"].tolist(), c["cost"].tolist(), c["err"].tolist(),
               c["ptok"].tolist(), c["ctok"].tolist(), *_seconds(c["t0"]), *_seconds(end),
               *_seconds(c["t0"] + shown), *_seconds(shown), tk, c["spend"].tolist(),
               (c["ip"] & 4095).tolist(), cache, cache_key, c["saved"].tolist(),
               (3 + (uid % 1500) / 100).tolist())
    return [_line(tb, *values) for values in cols]


_HIT = {-1: "null", 0: "false", 1: "true"}


def _seconds(us: np.ndarray) -> tuple[list[int], list[int]]:
    """Epoch µs as (seconds, microseconds), printed ``%d.%06d`` (cheaper than a float repr)."""
    s, frac = np.divmod(us, US)
    return s.tolist(), frac.tolist()


def _line(tb, rid, trace, call, m, stream, cost, err, ptok, ctok, s0, u0, s1, u1, s2, u2, s3, u3, tk, spend, ip,
          cache, cache_key, saved, overhead) -> str:
    status, error = tb.status[err][m]
    hidden, model_id = tb.hidden[m]
    if cache == 1:
        rid, model_id = f"chatcmpl-{rid}_cache_hit{s0}.{u0:06d}", "null"
    elif cache < 0:  # embeddings: no response id, LiteLLM uses its call id
        rid = call
    else:
        rid = "chatcmpl-" + rid
    return LINE % (rid, trace, call, tb.model[m], "true" if stream else "null", cost, status,
                   ptok + ctok, ptok, ctok, s0, u0, s1, u1, s2, u2, s3, u3, tb.meta[tk], spend, IPS[ip],
                   _HIT[cache], cache_key, saved, tb.tail[tk], IPS[ip], error, model_id, hidden, cost,
                   overhead)
