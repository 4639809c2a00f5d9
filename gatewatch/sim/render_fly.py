"""Fly.io NATS log-stream envelopes for the gateway and the Langfuse worker, by timestamp.

Per request: a uvicorn access line with the status the client saw, a LiteLLM Proxy ERROR line
for failures, a Router line for failures hidden by a fallback, a Fly proxy error for requests that
never reached a machine. Besides: health checks, worker batches, and the incidents' own lines.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import numpy as np
import orjson

from gatewatch.sim.render_litellm import CHUNK, IPS, error_text
from gatewatch.sim.rows import US
from gatewatch.sim.state import Sim, down_at
from gatewatch.sim.text import iso, iso_ns, template
from gatewatch.sim.world import Machine, World

ACCESS, EXC, ROUTER, PROXY, HEALTH, WORKER, MISC = range(7)
PROXY_ERROR = ("could not find a good candidate within 40 attempts at load balancing. "
               "last error: [PC05] timed out waiting for machine to be reachable")


def _envelope(machine: Machine, provider: str, level: str, message_literal: str) -> str:
    head = {"event": {"provider": provider}, "fly": {"app": {"instance": machine.instance, "name": machine.app},
                                                     "region": machine.region}, "host": machine.host,
            "log": {"level": level}}
    return orjson.dumps(head).decode()[:-1] + ',"message":' + message_literal + ',"timestamp":"@ts@Z"}'


def _app_log(machine: Machine, message: str, level: str, component: str, logger: str) -> str:
    inner = json.dumps({"message": message, "level": level, "timestamp": "@inner@", "component": component,
                        "logger": logger})
    return template(_envelope(machine, "app", "info", orjson.dumps(inner).decode()))


class Templates:
    def __init__(self, world: World):
        gw = world.gateway
        self.access = [_app_log(m, '@ip@:@port@ - "@verb@ @path@ HTTP/1.1" @status@', "INFO", "uvicorn.access",
                                "h11_impl.py:473") for m in gw]
        self.proxy = [template(_envelope(m, "proxy", "error", orjson.dumps(PROXY_ERROR).decode())) for m in gw]
        self.worker = template(_envelope(world.langfuse_worker, "app", "info",
                                         '"Processed ingestion queue batch"'))
        self.exc, self.router, self.world = {}, {}, world

    def exception(self, mach: int, err: int, model: int) -> str:
        if (mach, err, model) not in self.exc:
            m = self.world.models[model]
            route = "embeddings" if m.call_type == "aembedding" else "chat_completion"
            text = f"litellm.proxy.proxy_server.{route}(): Exception occured - {error_text(err, m)}"
            self.exc[mach, err, model] = _app_log(self.world.gateway[mach], text, "ERROR", "LiteLLM Proxy",
                                                  "proxy_server.py:4321")
        return self.exc[mach, err, model]

    def fallback(self, mach: int, err: int, model: int) -> str:
        if (mach, err, model) not in self.router:
            m = self.world.models[model]
            text = (f"litellm.{m.call_type}(model={m.model}) Exception {error_text(err, m)}. Received Model Group="
                    f"{m.name} Available Model Group Fallbacks=['{m.fallback}']")
            self.router[mach, err, model] = _app_log(self.world.gateway[mach], text, "INFO", "LiteLLM Router",
                                                     "router.py:1046")
        return self.router[mach, err, model]


def _periodic(sim: Sim) -> list[tuple[np.ndarray, int, np.ndarray]]:
    """Health checks every 15 s per running machine; worker batches about once a minute."""
    out, rng = [], sim.rng
    for m in range(len(sim.world.gateway)):
        t = np.arange(sim.start_us + int(rng.integers(0, 15 * US)), sim.end_us, 15 * US)
        t = t[~down_at(sim, m, t)]
        out.append((t * 1000 + rng.integers(0, 1000, len(t)), HEALTH, np.full(len(t), m)))
    n = int((sim.end_us - sim.start_us) / (60 * US)) + 2
    t = sim.start_us + np.cumsum(rng.uniform(54, 66, n) * US).astype(np.int64)
    for start, stop in sim.stalls:
        t = t[(t < start) | (t >= stop)]
        t = np.concatenate([t, stop + np.arange(1, 8) * 12 * US])  # the backlog drains
    t = np.sort(t[t < sim.end_us])
    out.append((t * 1000 + rng.integers(0, 1000, len(t)), WORKER, np.zeros(len(t), dtype=np.int64)))
    return out


def fly_events(sim: Sim) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(timestamp ns, kind, argument) of every Fly line, sorted by timestamp."""
    c = sim.rows.cols
    live, end_ns = ~c["dropped"], (c["t0"] + c["dur"]) * 1000
    jitter = (c["uid"] % 997).astype(np.int64)
    parts = [(end_ns + 1_000_000 + jitter, ACCESS, live & (c["client"] != 0)),
             (end_ns + 300_000 + jitter, EXC, live & (c["client"] >= 400)),
             (end_ns + 100_000 + jitter, ROUTER, live & (c["err"] > 0) & (c["client"] == 0)),
             (c["t0"] * 1000 + (c["uid"] % (3 * US)).astype(np.int64) * 1000, PROXY, c["dropped"])]
    ts = [p[0][p[2]] for p in parts]
    kinds = [np.full(len(t), p[1], dtype=np.int8) for t, p in zip(ts, parts)]
    args = [np.flatnonzero(p[2]) for p in parts]
    for t, kind, arg in _periodic(sim) + [(np.array([f.ts_ns for f in sim.fly], dtype=np.int64), MISC,
                                           np.arange(len(sim.fly)))]:
        ts.append(t.astype(np.int64))
        kinds.append(np.full(len(t), kind, dtype=np.int8))
        args.append(arg.astype(np.int64))
    ts_all = np.concatenate(ts)
    order = np.argsort(ts_all, kind="stable")
    return ts_all[order], np.concatenate(kinds)[order], np.concatenate(args)[order]


def render_fly(sim: Sim, events: tuple[np.ndarray, np.ndarray, np.ndarray]) -> Iterator[str]:
    tpl = Templates(sim.world)
    ts, kinds, args = events
    for a in range(0, len(ts), CHUNK):
        yield "\n".join(_chunk(sim, tpl, ts[a:a + CHUNK], kinds[a:a + CHUNK], args[a:a + CHUNK])) + "\n"


def _chunk(sim: Sim, tpl: Templates, ts: np.ndarray, kinds: np.ndarray, args: np.ndarray) -> list[str]:
    c = sim.rows.cols
    row = np.where(kinds <= PROXY, args, 0)
    inner = iso(ts // 1000 - 1000, "us")
    fields = zip(iso_ns(ts), inner, kinds.tolist(), args.tolist(), c["mach"][row].tolist(),
                 c["model"][row].tolist(), c["err"][row].tolist(), c["client"][row].tolist(),
                 c["ip"][row].tolist())
    models, out = sim.world.models, []
    for outer, inner_ts, kind, arg, mach, model, err, client, ip in fields:
        if kind == ACCESS:
            path = "/embeddings" if models[model].call_type == "aembedding" else "/chat/completions"
            out.append(tpl.access[mach] % (IPS[ip & 4095], 30000 + (ip >> 12) % 30000, "POST", path, client,
                                           inner_ts, outer))
        elif kind == EXC:
            out.append(tpl.exception(mach, err, model) % (inner_ts, outer))
        elif kind == ROUTER:
            out.append(tpl.fallback(mach, err, model) % (inner_ts, outer))
        elif kind == PROXY:
            out.append(tpl.proxy[mach] % outer)
        elif kind == HEALTH:
            out.append(tpl.access[arg] % ("127.0.0.1", 0, "GET", "/health/liveliness", 200, inner_ts, outer))
        elif kind == WORKER:
            out.append(tpl.worker % outer)
        else:
            out.append(_misc(sim.fly[arg], outer))
    return out


def _misc(line, outer: str) -> str:
    return template(_envelope(line.machine, line.provider, line.level, orjson.dumps(line.message).decode())) % outer

