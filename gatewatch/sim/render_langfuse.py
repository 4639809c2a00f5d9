"""Langfuse observations (v1 list items) in the order Langfuse stored them (``createdAt``)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import orjson

from gatewatch.sim.render_litellm import CHUNK, error_text
from gatewatch.sim.rows import ERRORS, Rows
from gatewatch.sim.text import iso, mix, uuids
from gatewatch.sim.world import World

LINE = (
    '{"id":"time-%s_chatcmpl-%s","projectId":"%s","traceId":"%s","parentObservationId":null,"name":"litellm:%s",'
    '"type":"GENERATION","environment":"production","startTime":"%sZ","endTime":"%sZ",'
    '"completionStartTime":"%sZ","createdAt":"%sZ","updatedAt":"%sZ",'
    '"metadata":{"cache_hit":%s,"litellm_response_cost":%.8f,%s},"level":"%s","statusMessage":%s,"model":"%s",'
    '"usageDetails":{"input":%d,"output":%d,"total":%d},"costDetails":%s,"calculatedTotalCost":%.8f,'
    '"latency":%.3f,"timeToFirstToken":%s}'
)
_HIT = {-1: "null", 0: "false", 1: "true"}


def langfuse_order(rows: Rows) -> np.ndarray:
    live = np.flatnonzero(~rows.dropped)
    created_ms = (rows.t0 + rows.dur + rows.lf_delay)[live] // 1000
    return live[np.argsort(created_ms, kind="stable")]


def _tables(world: World):
    models = [m.model.split("/")[-1] for m in world.models]
    meta = [[orjson.dumps({"api_base": m.api_base, "user_api_key_team_alias": t.alias}).decode()[1:-1]
             for m in world.models] for t in world.teams]
    names = [[k.alias for k in t.keys] for t in world.teams]
    messages = [["null"] * len(world.models)] + [[orjson.dumps(error_text(e, m)).decode() for m in world.models]
                                                 for e in range(1, len(ERRORS))]
    return models, meta, names, messages


def render_langfuse(world: World, rows: Rows) -> Iterator[str]:
    tables, order = _tables(world), langfuse_order(rows)
    for a in range(0, len(order), CHUNK):
        yield "\n".join(_chunk(world, tables, rows, order[a:a + CHUNK])) + "\n"


def _chunk(world: World, tables, rows: Rows, idx: np.ndarray) -> list[str]:
    models, meta, names, messages = tables
    c = {k: v[idx] for k, v in rows.cols.items()}
    uid, tuid = c["uid"], rows.uid[c["trace"]]
    end = c["t0"] + c["dur"]
    created = (end + c["lf_delay"]) // 1000 * 1000
    first = np.where(c["stream"], c["t0"] + c["ttft"], end)
    starts = iso(c["t0"], "ms")
    cols = zip(starts, uuids(uid, mix(uid, 1)), uuids(mix(tuid, 2), mix(tuid, 3)), c["team"].tolist(),
               c["key"].tolist(), c["model"].tolist(), iso(end, "ms"), iso(first, "ms"), iso(created, "ms"),
               iso(created + 300_000, "ms"), c["cache"].tolist(), c["cost"].tolist(), c["err"].tolist(),
               c["ptok"].tolist(), c["ctok"].tolist(), (c["dur"] // 1000 / 1000).tolist(),
               np.where(c["stream"], c["ttft"] // 1000, -1).tolist())
    pid = world.project_id
    out = []
    for st, rid, trace, team, key, m, en, fi, cr, up, cache, cost, err, ptok, ctok, latency, ttft in cols:
        out.append(LINE % (
            st[11:23].replace(":", "-").replace(".", "-"), rid[:11], pid, trace, names[team][key], st, en, fi, cr,
            up, _HIT[cache], cost, meta[team][m], "ERROR" if err else "DEFAULT", messages[err][m], models[m],
            ptok, ctok, ptok + ctok, f'{{"total":{cost:.8f}}}' if cost else "{}", cost, latency,
            "null" if ttft < 0 else "%.3f" % (ttft / 1000)))
    return out
