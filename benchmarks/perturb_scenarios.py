#!/usr/bin/env python3
"""Write a perturbed copy of a labelled scenario, to see how detection generalises.

usage: perturb_scenarios.py SRC_DIR OUT_DIR [--scale F] [--shift-hours H] [--rename]
                            [--milder F] [--start HH:MM] [--seed N]

SRC_DIR holds the three files of a shared scenario (``litellm.ndjson.gz`` LiteLLM
StandardLoggingPayload lines, ``fly.ndjson.gz`` Fly NATS log envelopes, ``langfuse.ndjson.gz``
Langfuse observations) and ``labels.json``. OUT_DIR gets the same four files, changed:

* ``--scale F`` (F < 1): keep a consistent subset of the traffic. A request is kept or dropped
  as a whole (its LiteLLM record, its Fly access and exception lines, its Langfuse observation)
  by a hash of its trace id. Health checks and infrastructure lines (crashes, proxy errors,
  Langfuse worker lines) are kept: they are not traffic. Labels unchanged.
* ``--scale F`` (F > 1): clone each request ``F - 1`` more times on average, each clone with new
  ids, a new client port and all its times moved by one jitter (±20 s), merged into each file in
  its own order (LiteLLM by ``endTime``, Fly by ``timestamp``, Langfuse by ``createdAt``). The
  gateway's reported team spend and the team budgets are scaled by F too: a gateway with twice
  the traffic has twice the spend and, to be in the same situation, twice the budget.
* ``--shift-hours H``: move the whole day by H hours (e.g. 14 for an evening across midnight UTC,
  72 for another weekday), labels included. The reported team spend restarts at each midnight UTC,
  as LiteLLM's daily budgets do.
* ``--rename``: teams, key aliases, model groups, providers and Fly app names replaced, the same
  way in the three files and in the labels (as whole names: ``gpt-4o`` is not renamed inside
  ``gpt-4o-mini``).
* ``--milder F``: inside each labelled incident, only a share F of what makes it an incident:
  failed calls (error_rate, rate_limit: the others dropped with their lines), crash and proxy
  error lines (availability), the excess latency over the model's normal median (latency: each
  call ends when it did and starts later), the excess trace ingestion lag and ClickHouse errors
  (tracing). Cache and cost incidents are left as they are (a milder cache collapse or spend
  spike cannot be made from the records without inventing hits or prices).
* ``--start HH:MM``: the input begins later: every line before HH:MM on the scenario's first day
  is dropped (LiteLLM by ``endTime``, Fly by ``timestamp``, Langfuse by ``createdAt``, the times
  each file is ordered by), and the labelled incidents that began before it with them. An
  incident comes soon after the first line, before the relative rules have an hour of past.

Everything is seeded (``--seed``, default 1): the same arguments write the same files.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import heapq
import json
import random
import re
import statistics
from datetime import datetime, timezone
from pathlib import Path

FILES = ("litellm", "fly", "langfuse")
JITTER_S = 20.0
_ISO = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z?)$")
_ACCESS = re.compile(r"^(\S+):(\d+) - ")
_LF_ID = re.compile(r"^time-\d\d-\d\d-\d\d-\d{3}_")


# --- time helpers -------------------------------------------------------------------------

def iso_ns(s: str) -> tuple[int, int, str]:
    """ISO text → (epoch ns, fraction digits, suffix) so that it can be written back alike."""
    m = _ISO.match(s)
    if not m:
        raise ValueError(f"not an ISO timestamp: {s!r}")
    base = datetime.fromisoformat(m.group(1)).replace(tzinfo=timezone.utc)
    frac = m.group(2) or ""
    ns = int(base.timestamp()) * 10**9 + (int(frac.ljust(9, "0")[:9]) if frac else 0)
    return ns, len(frac), m.group(3)


def ns_iso(ns: int, digits: int, suffix: str) -> str:
    sec, rem = divmod(ns, 10**9)
    text = datetime.fromtimestamp(sec, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    if digits:
        text += "." + str(rem).rjust(9, "0")[:digits]
    return text + suffix


def shift_iso(s: str | None, delta_ns: int) -> str | None:
    if not s:
        return s
    ns, digits, suffix = iso_ns(s)
    return ns_iso(ns + delta_ns, digits, suffix)


def micros(t: float) -> int:
    return round(t * 1e6)


def unit_hash(*parts: str) -> float:
    """A number in [0, 1) fixed by the parts: the same request is kept in every file."""
    h = hashlib.blake2b("|".join(parts).encode(), digest_size=8).digest()
    return int.from_bytes(h, "big") / 2**64


def new_uuid(*parts: str) -> str:
    h = hashlib.blake2b("|".join(parts).encode(), digest_size=16).hexdigest()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


# --- reading and linking ------------------------------------------------------------------

def read(path: Path) -> list[dict]:
    with gzip.open(path, "rt") as f:
        return [json.loads(line) for line in f if line.strip()]


def write(path: Path, records: list[dict]) -> None:
    with gzip.open(path, "wt") as f:
        for r in records:
            f.write(json.dumps(r, separators=(",", ":")) + "\n")


def inner(fly: dict) -> dict | None:
    """The JSON log line inside a Fly envelope's ``message``, when it is one."""
    msg = fly.get("message") or ""
    if not msg.startswith("{"):
        return None
    try:
        obj = json.loads(msg)
    except ValueError:
        return None
    return obj if isinstance(obj, dict) else None


def fly_owner(fly: dict, by_end: dict[int, dict]) -> dict | None:
    """The LiteLLM record a Fly app line belongs to: its access line or its exception line
    carries the request's end time (µs) as its own timestamp."""
    obj = inner(fly)
    if obj is None or not obj.get("timestamp"):
        return None
    ns, _, _ = iso_ns(obj["timestamp"])
    us = ns // 1000
    for d in (0, -1, 1, -2, 2):
        if us + d in by_end:
            return by_end[us + d]
    return None


def link(lite: list[dict], fly: list[dict]) -> list[str | None]:
    """For each Fly line, the trace id of the request it belongs to (None: not traffic)."""
    by_end = {micros(r["endTime"]): r for r in lite}
    owners: list[str | None] = []
    for f in fly:
        rec = fly_owner(f, by_end)
        if rec is not None:
            owners.append(rec["trace_id"])
        elif _is_access(f) and "/health" not in (inner(f) or {}).get("message", ""):
            owners.append("fly:" + f["timestamp"])  # a request the gateway did not log: itself
        else:
            owners.append(None)
    return owners


def _is_access(f: dict) -> bool:
    obj = inner(f)
    return obj is not None and obj.get("component") == "uvicorn.access"


# --- scale --------------------------------------------------------------------------------

def scale_down(data: dict, factor: float, seed: int) -> dict:
    keep = lambda tid: unit_hash(str(seed), tid) < factor  # noqa: E731
    owners = link(data["litellm"], data["fly"])
    return {
        "litellm": [r for r in data["litellm"] if keep(r["trace_id"])],
        "fly": [f for f, o in zip(data["fly"], owners) if o is None or keep(o)],
        "langfuse": [o for o in data["langfuse"] if keep(o["traceId"])],
        "labels": data["labels"],
    }


def clones_of(tid: str, factor: float, seed: int) -> int:
    extra = factor - 1
    whole = int(extra)
    return whole + (1 if unit_hash(str(seed), "clone", tid) < extra - whole else 0)


def lines_of(data: dict) -> tuple[dict[str, list[dict]], dict[str, dict]]:
    """Each request's Fly lines and its Langfuse observation, by trace id."""
    fly_of: dict[str, list[dict]] = {}
    for f, o in zip(data["fly"], link(data["litellm"], data["fly"])):
        if o is not None:
            fly_of.setdefault(o, []).append(f)
    return fly_of, {o["traceId"]: o for o in data["langfuse"]}


def scale_up(data: dict, factor: float, seed: int) -> dict:
    fly_of, lf_of = lines_of(data)
    rng = random.Random(seed)
    new_lite, new_fly, new_lf = [], [], []
    requests = [(r["trace_id"], r) for r in data["litellm"]]
    requests += [(o, None) for o in fly_of if o.startswith("fly:")]
    for tid, rec in requests:
        for n in range(clones_of(tid, factor, seed)):
            delta = round(rng.uniform(-JITTER_S, JITTER_S), 3)
            new_tid = new_uuid(str(seed), tid, str(n))
            port = rng.randint(30000, 65000)
            if rec is not None:
                new_lite.append(clone_litellm(rec, new_tid, delta))
                if tid in lf_of:
                    new_lf.append(clone_langfuse(lf_of[tid], new_tid, new_lite[-1]["id"], delta))
            new_fly += [clone_fly(f, delta, port) for f in fly_of.get(tid, ())]
    for r in data["litellm"] + new_lite:
        meta = r.get("metadata") or {}
        for k in ("user_api_key_team_spend", "user_api_key_team_max_budget"):
            if isinstance(meta.get(k), (int, float)):
                meta[k] = round(meta[k] * factor, 6)
    labels = dict(data["labels"])
    labels["budgets_usd_per_day"] = {t: round(v * factor, 2) for t, v in labels.get("budgets_usd_per_day", {}).items()}
    return {
        "litellm": merge(data["litellm"], new_lite, lambda r: r["endTime"]),
        "fly": merge(data["fly"], new_fly, lambda f: iso_ns(f["timestamp"])[0]),
        "langfuse": merge(data["langfuse"], new_lf, lambda o: iso_ns(o["createdAt"])[0]),
        "labels": labels,
    }


def merge(original: list[dict], extra: list[dict], key) -> list[dict]:
    """The clones merged into the file in its own order; the originals keep theirs."""
    extra.sort(key=key)
    return list(heapq.merge(original, extra, key=key))


def clone_litellm(rec: dict, trace_id: str, delta: float) -> dict:
    c = json.loads(json.dumps(rec))
    c["trace_id"] = trace_id
    c["id"] = "chatcmpl-" + new_uuid(trace_id, "id")
    for k in ("startTime", "endTime", "completionStartTime"):
        if isinstance(c.get(k), (int, float)):
            c[k] = round(c[k] + delta, 6)
    if "_cache_hit" in rec["id"]:
        c["id"] += f"_cache_hit{c['startTime']}"
    return c


def clone_langfuse(obs: dict, trace_id: str, litellm_id: str, delta: float) -> dict:
    c = shift_langfuse(json.loads(json.dumps(obs)), round(delta * 1e9))
    c["traceId"] = trace_id
    c["id"] = langfuse_id(c["startTime"], litellm_id)
    return c


def clone_fly(f: dict, delta: float, port: int) -> dict:
    c = shift_fly(json.loads(json.dumps(f)), round(delta * 1e9))
    obj = inner(c)
    if obj is not None and _ACCESS.match(obj.get("message", "")):
        obj["message"] = _ACCESS.sub(lambda m: f"{m.group(1)}:{port} - ", obj["message"], count=1)
        c["message"] = json.dumps(obj)
    return c


def langfuse_id(start_iso: str, litellm_id: str) -> str:
    """``time-HH-MM-SS-mmm_<first 20 chars of the LiteLLM id>``, as the LiteLLM callback names it."""
    hms = start_iso[11:23].replace(":", "-").replace(".", "-")
    return f"time-{hms}_{litellm_id[:20]}"


# --- shift --------------------------------------------------------------------------------

def shift_langfuse(o: dict, delta_ns: int) -> dict:
    for k in ("startTime", "endTime", "completionStartTime", "createdAt", "updatedAt"):
        o[k] = shift_iso(o.get(k), delta_ns)
    return o


def shift_fly(f: dict, delta_ns: int) -> dict:
    f["timestamp"] = shift_iso(f["timestamp"], delta_ns)
    obj = inner(f)
    if obj is not None and obj.get("timestamp"):
        obj["timestamp"] = shift_iso(obj["timestamp"], delta_ns)
        f["message"] = json.dumps(obj)
    return f


def shift(data: dict, hours: float) -> dict:
    delta = hours * 3600
    delta_ns = round(delta * 1e9)
    for r in data["litellm"]:
        old_start = r["startTime"]
        for k in ("startTime", "endTime", "completionStartTime"):
            if isinstance(r.get(k), (int, float)):
                r[k] = round(r[k] + delta, 6)
        if "_cache_hit" in r["id"]:
            r["id"] = r["id"].replace(f"_cache_hit{old_start}", f"_cache_hit{r['startTime']}")
    restart_spend_at_midnight(data["litellm"])
    lite_ids = {r["trace_id"]: r["id"] for r in data["litellm"]}
    for o in data["langfuse"]:
        shift_langfuse(o, delta_ns)
        if _LF_ID.match(o["id"]) and o["traceId"] in lite_ids:
            o["id"] = langfuse_id(o["startTime"], lite_ids[o["traceId"]])
    for f in data["fly"]:
        shift_fly(f, delta_ns)
    labels = dict(data["labels"])
    for k in ("start", "end"):
        labels[k] = shift_iso(labels[k], delta_ns)
    labels["incidents"] = [dict(i, start=shift_iso(i["start"], delta_ns), end=shift_iso(i["end"], delta_ns))
                           for i in labels["incidents"]]
    return dict(data, labels=labels)


def restart_spend_at_midnight(lite: list[dict]) -> None:
    """LiteLLM's reported team spend of a daily budget restarts at 00:00 UTC."""
    first_day = None
    carried: dict[str, float] = {}  # team -> spend reported before today
    last: dict[str, float] = {}
    day_of = None
    for r in lite:
        day = int(r["endTime"] // 86400)
        first_day = day if first_day is None else first_day
        if day_of is not None and day != day_of:
            carried = dict(last)
        day_of = day
        meta = r.get("metadata") or {}
        team, spend = meta.get("user_api_key_team_alias"), meta.get("user_api_key_team_spend")
        if team is None or not isinstance(spend, (int, float)):
            continue
        last[team] = spend
        if day != first_day:
            meta["user_api_key_team_spend"] = round(max(0.0, spend - carried.get(team, 0.0)), 6)


# --- rename -------------------------------------------------------------------------------

TEAM_NAMES = ("storefront", "exec-assist", "helpdesk", "data-science", "platform", "marketing", "legal", "mobile")
PROVIDER_NAMES = {"openai": "azure", "anthropic": "bedrock", "groq": "together", "mistral": "vertex_ai"}


def rename_map(data: dict) -> dict[str, str]:
    teams, keys, groups, providers = {}, set(), set(), set()
    for r in data["litellm"]:
        meta = r.get("metadata") or {}
        teams.setdefault(meta.get("user_api_key_team_alias"), None)
        keys.add(meta.get("user_api_key_alias"))
        groups.add(r.get("model_group"))
        providers.add(r.get("custom_llm_provider"))
    teams.pop(None, None)
    mapping = {t: (TEAM_NAMES[i] if i < len(TEAM_NAMES) else f"team{i}") for i, t in enumerate(sorted(teams))}
    for t in data["labels"].get("budgets_usd_per_day", {}):
        mapping.setdefault(t, f"team{len(mapping)}")
    for k in sorted(x for x in keys if x):
        team = next((t for t in sorted(teams, key=len, reverse=True) if k.startswith(t + "-")), None)
        mapping[k] = f"{mapping[team]}-{k[len(team) + 1:]}-key" if team else "key-" + new_uuid(k)[:6]
    for i, g in enumerate(sorted(x for x in groups if x)):
        mapping[g] = f"model-{chr(ord('a') + i)}"
    for p in sorted(x for x in providers if x):
        mapping[p] = PROVIDER_NAMES.get(p, p + "-eu")
    # Neutral app names: nothing may hinge on an app being called "...-gateway" or "...langfuse...".
    apps = sorted({(f.get("fly") or {}).get("app", {}).get("name") for f in data["fly"]} - {None, ""})
    for i, a in enumerate(apps):
        mapping[a] = f"svc-{chr(ord('a') + i)}"
    return mapping


def rename(data: dict) -> dict:
    mapping = rename_map(data)
    names = sorted(mapping, key=len, reverse=True)
    # Whole names only: not inside a longer name (gpt-4o in gpt-4o-mini, support in support-svc0).
    pattern = re.compile(r"(?<![\w-])(" + "|".join(map(re.escape, names)) + r")(?![\w-])")
    sub = lambda text: pattern.sub(lambda m: mapping[m.group(1)], text)  # noqa: E731
    out = {k: [json.loads(sub(json.dumps(r, separators=(",", ":")))) for r in data[k]] for k in FILES}
    out["labels"] = json.loads(sub(json.dumps(data["labels"])))
    return out


# --- milder -------------------------------------------------------------------------------

def windows(labels: dict, category: str) -> list[tuple[float, float, dict]]:
    return [(iso_ns(i["start"].replace("Z", ""))[0] / 1e9, iso_ns(i["end"].replace("Z", ""))[0] / 1e9, i["labels"])
            for i in labels["incidents"] if i["category"] == category]


def inside(t: float, spans: list) -> bool:
    return any(a <= t < b for a, b, _ in spans)


def milder(data: dict, share: float, seed: int) -> dict:
    labels = data["labels"]
    failing = windows(labels, "error_rate") + windows(labels, "rate_limit")
    drop = {r["trace_id"] for r in data["litellm"]
            if r.get("status") == "failure" and inside(r["endTime"], failing)
            and unit_hash(str(seed), "milder", r["trace_id"]) >= share}
    owners = link(data["litellm"], data["fly"])
    data = dict(data, litellm=[r for r in data["litellm"] if r["trace_id"] not in drop],
                langfuse=[o for o in data["langfuse"] if o["traceId"] not in drop],
                fly=[f for f, o in zip(data["fly"], owners) if o not in drop])
    data["fly"] = thin_infra(data["fly"], windows(labels, "availability"), windows(labels, "tracing"), share, seed)
    shrink_latency(data, windows(labels, "latency"), share)
    shrink_lag(data["langfuse"], windows(labels, "tracing"), share)
    return data


def thin_infra(fly: list[dict], avail: list, tracing: list, share: float, seed: int) -> list[dict]:
    """Keep a share of crash / OOM / proxy-error lines (availability) and ClickHouse errors (tracing)."""
    def incident_line(f: dict) -> bool:
        t = iso_ns(f["timestamp"])[0] / 1e9
        msg = f.get("message") or ""
        provider = (f.get("event") or {}).get("provider")
        if inside(t, avail) and provider in ("runner", "proxy"):
            return True
        return inside(t, tracing) and "ClickHouse" in msg

    return [f for f in fly if not incident_line(f)
            or unit_hash(str(seed), "infra", f["timestamp"], f.get("message", "")) < share]


def shrink_latency(data: dict, spans: list, share: float) -> None:
    """Only a share of the excess over the model's normal median: the call still ends when it
    did (its Fly line and Langfuse end stay), it starts later."""
    if not spans:
        return
    normal: dict[str, list[float]] = {}
    for r in data["litellm"]:
        if not inside(r["endTime"], spans):
            normal.setdefault(r.get("model_group"), []).append(r["endTime"] - r["startTime"])
    median = {g: statistics.median(v) for g, v in normal.items()}
    starts = {}
    for r in data["litellm"]:
        base = median.get(r.get("model_group"))
        took = r["endTime"] - r["startTime"]
        if base is None or not inside(r["endTime"], spans) or took <= base:
            continue
        new = base + (took - base) * share
        ttft = (r["completionStartTime"] - r["startTime"]) if isinstance(r.get("completionStartTime"), float) else None
        r["startTime"] = round(r["endTime"] - new, 6)
        if ttft is not None:
            r["completionStartTime"] = round(r["startTime"] + min(ttft * new / took, new), 6)
        r["response_time"] = round(new, 6)
        starts[r["trace_id"]] = r
    for o in data["langfuse"]:
        r = starts.get(o["traceId"])
        if r is None:
            continue
        end_ns, digits, suffix = iso_ns(o["endTime"])
        o["startTime"] = ns_iso(end_ns - round((r["endTime"] - r["startTime"]) * 1e9), digits, suffix)
        o["latency"] = round(r["endTime"] - r["startTime"], 3)


def shrink_lag(langfuse: list[dict], spans: list, share: float) -> None:
    """Only a share of the excess ingestion lag (``createdAt − endTime``) over its normal median."""
    if not spans:
        return
    lag = lambda o: (iso_ns(o["createdAt"])[0] - iso_ns(o["endTime"])[0]) / 1e9  # noqa: E731
    base = statistics.median(lag(o) for o in langfuse if not inside(iso_ns(o["endTime"])[0] / 1e9, spans))
    for o in langfuse:
        end = iso_ns(o["endTime"])[0]
        if inside(end / 1e9, spans) and lag(o) > base:
            new = base + (lag(o) - base) * share
            _, digits, suffix = iso_ns(o["createdAt"])
            o["createdAt"] = ns_iso(end + round(new * 1e9), digits, suffix)
            o["updatedAt"] = ns_iso(end + round((new + 0.3) * 1e9), digits, suffix)
    langfuse.sort(key=lambda o: o["createdAt"])


# --- main ---------------------------------------------------------------------------------

def perturb(src: Path, dst: Path, scale: float = 1.0, shift_hours: float = 0.0, rename_all: bool = False,
            mild: float = 1.0, seed: int = 1, start: str = "") -> dict:
    data = {k: read(src / f"{k}.ndjson.gz") for k in FILES}
    data["labels"] = json.loads((src / "labels.json").read_text())
    if mild < 1:
        data = milder(data, mild, seed)
    if scale < 1:
        data = scale_down(data, scale, seed)
    elif scale > 1:
        data = scale_up(data, scale, seed)
    if shift_hours:
        data = shift(data, shift_hours)
    if rename_all:
        data = rename(data)
    if start:
        data = cut_before(data, start)
    return save(dst, data, data["labels"])


def cut_before(data: dict, hhmm: str) -> dict:
    """Drop every line before ``hhmm`` of the scenario's first day, and the incidents begun by then."""
    labels = data["labels"]
    at = labels["start"][:11] + hhmm + ":00.000Z"
    cut = iso_ns(at)[0]
    data["litellm"] = [r for r in data["litellm"] if micros(r["endTime"]) * 1000 >= cut]
    data["fly"] = [f for f in data["fly"] if iso_ns(f["timestamp"])[0] >= cut]
    data["langfuse"] = [o for o in data["langfuse"] if iso_ns(o["createdAt"])[0] >= cut]
    incidents = [i for i in labels["incidents"] if iso_ns(i["start"])[0] >= cut]
    data["labels"] = dict(labels, start=at, incidents=incidents)
    return data


def save(dst: Path, data: dict, labels: dict) -> dict:
    """The three files and ``labels.json`` (with the record counts) into ``dst``."""
    labels = dict(labels, records={k: len(data[k]) for k in FILES})
    dst.mkdir(parents=True, exist_ok=True)
    for k in FILES:
        write(dst / f"{k}.ndjson.gz", data[k])
    (dst / "labels.json").write_text(json.dumps(labels, indent=1))
    return labels


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("src", type=Path)
    ap.add_argument("dst", type=Path)
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--shift-hours", type=float, default=0.0)
    ap.add_argument("--rename", action="store_true")
    ap.add_argument("--milder", type=float, default=1.0)
    ap.add_argument("--start", default="", metavar="HH:MM", help="drop every line before this time")
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args(argv)
    labels = perturb(a.src, a.dst, a.scale, a.shift_hours, a.rename, a.milder, a.seed, a.start)
    print(json.dumps({"out": str(a.dst), "records": labels["records"], "incidents": len(labels["incidents"])}))


if __name__ == "__main__":
    main()
