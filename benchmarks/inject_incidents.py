#!/usr/bin/env python3
"""Write a copy of a labelled scenario with one new incident injected, of a kind the shared
scenarios do not hold: a runaway agent, a team's traffic surge, Langfuse ingestion lag, a gateway that stops answering.

usage: inject_incidents.py SRC_DIR OUT_DIR --kind runaway|surge|lag|blackout --at HH:MM --minutes M
                           [--team T] [--factor F] [--cost USD] [--lag S] [--category C] [--seed N]

The incident is built from the scenario's own records (``perturb_scenarios.py`` clones them, each
request with its Fly access line and its Langfuse observation), so it stays in the real formats:

* ``runaway``: a new key of team T (``<T>-agent``) sends F times the team's own calls of the
  window, each costing about USD (the gateway's reported team spend follows). Labelled ``cost``
  (or ``--category budget``: a team heading past its daily budget), labels ``{team: T}``.
* ``surge``: every call of team T in the window is sent F times more (new ids, ±20 s jitter).
  Labelled ``traffic``, labels ``{team: T}``.
* ``lag``: the observations of calls ending in the window are stored by Langfuse S seconds late
  (± 30 %). Labelled ``tracing``.
* ``blackout``: the gateway answers nothing in the window: its calls, their Fly lines and their
  Langfuse observations are gone (other apps keep logging). Labelled ``availability``.

The scenario's own labelled incidents are kept. Seeded: the same arguments write the same files.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

from perturb_scenarios import (
    FILES, JITTER_S, clone_fly, clone_langfuse, clone_litellm, iso_ns, link, lines_of, merge, new_uuid, ns_iso, read, save,
)


def _team(r: dict) -> str:
    return (r.get("metadata") or {}).get("user_api_key_team_alias") or ""


def clone_calls(data: dict, team: str, t0: float, t1: float, factor: int, seed: int, key: str | None = None,
                cost: float | None = None) -> None:
    """``factor`` clones of each call of ``team`` ending in [t0, t1), with its Fly and Langfuse lines."""
    fly_of, lf_of = lines_of(data)
    rng = random.Random(seed)
    lite, fly, lf = [], [], []
    for rec in [r for r in data["litellm"] if _team(r) == team and t0 <= r["endTime"] < t1]:
        for n in range(factor):
            delta = round(rng.uniform(-JITTER_S, JITTER_S), 3)
            tid = new_uuid(str(seed), "inject", rec["trace_id"], str(n))
            c = clone_litellm(rec, tid, delta)
            if key is not None:
                c["metadata"] = dict(c.get("metadata") or {}, user_api_key_alias=key,
                                     user_api_key_hash=new_uuid(key).replace("-", "") * 2)
            if cost is not None:
                c["response_cost"] = round(cost * rng.uniform(0.8, 1.2), 6)
                c["cache_hit"] = False
            lite.append(c)
            if rec["trace_id"] in lf_of:
                o = clone_langfuse(lf_of[rec["trace_id"]], tid, c["id"], delta)
                if key is not None:
                    o["name"] = "litellm:" + key
                if cost is not None:
                    o["calculatedTotalCost"] = c["response_cost"]
                    o["costDetails"] = {"total": c["response_cost"]}
                    o["metadata"] = dict(o.get("metadata") or {}, cache_hit=False, litellm_response_cost=c["response_cost"])
                lf.append(o)
            fly += [clone_fly(f, delta, rng.randint(30000, 65000)) for f in fly_of.get(rec["trace_id"], ())]
    data["litellm"] = merge(data["litellm"], lite, lambda r: r["endTime"])
    data["fly"] = merge(data["fly"], fly, lambda f: iso_ns(f["timestamp"])[0])
    data["langfuse"] = merge(data["langfuse"], lf, lambda o: iso_ns(o["createdAt"])[0])
    if cost is not None:  # the gateway's running spend of each team, as it reports it
        spent: dict[str, float] = {}
        for r in data["litellm"]:
            meta = r.get("metadata") or {}
            spent[_team(r)] = spent.get(_team(r), 0.0) + (r.get("response_cost") or 0.0)
            if "user_api_key_team_spend" in meta:
                meta["user_api_key_team_spend"] = round(spent[_team(r)], 6)


def delay_traces(data: dict, t0: float, t1: float, lag: float, seed: int) -> None:
    rng = random.Random(seed)
    for o in data["langfuse"]:
        end, digits, suffix = iso_ns(o["endTime"])
        if t0 <= end / 1e9 < t1:
            stored = end + round(lag * rng.uniform(0.7, 1.3) * 1e9)
            o["createdAt"] = ns_iso(stored, digits, suffix)
            o["updatedAt"] = ns_iso(stored + 300_000_000, digits, suffix)
    data["langfuse"].sort(key=lambda o: iso_ns(o["createdAt"])[0])


def blackout(data: dict, t0: float, t1: float) -> None:
    owners = link(data["litellm"], data["fly"])
    gone = {r["trace_id"] for r in data["litellm"] if t0 <= r["endTime"] < t1}
    data["litellm"] = [r for r in data["litellm"] if r["trace_id"] not in gone]
    data["fly"] = [f for f, o in zip(data["fly"], owners)
                   if not (o in gone or (o is not None and o.startswith("fly:") and t0 <= iso_ns(f["timestamp"])[0] / 1e9 < t1))]
    data["langfuse"] = [o for o in data["langfuse"] if o["traceId"] not in gone]


def inject(src: Path, dst: Path, kind: str, at: str, minutes: float, team: str = "support", factor: int = 3,
           cost: float = 0.02, lag: float = 300.0, category: str | None = None, seed: int = 1) -> dict:
    data = {k: read(src / f"{k}.ndjson.gz") for k in FILES}
    labels = json.loads((src / "labels.json").read_text())
    t0 = iso_ns(f"{labels['start'][:10]}T{at}:00")[0] / 1e9
    t1 = t0 + minutes * 60
    if kind == "runaway":
        clone_calls(data, team, t0, t1, factor, seed, key=f"{team}-agent", cost=cost)
        category, where = category or "cost", {"team": team}
    elif kind == "surge":
        clone_calls(data, team, t0, t1, factor, seed)
        category, where = category or "traffic", {"team": team}
    elif kind == "lag":
        delay_traces(data, t0, t1, lag, seed)
        category, where = category or "tracing", {}
    elif kind == "blackout":
        blackout(data, t0, t1)
        category, where = category or "availability", {}
    else:
        raise SystemExit(f"unknown kind {kind!r}")
    incident = {"id": f"injected-{kind}", "category": category, "start": ns_iso(round(t0 * 1e9), 3, "Z"),
                "end": ns_iso(round(t1 * 1e9), 3, "Z"), "labels": where}
    return save(dst, data, dict(labels, incidents=[*labels.get("incidents", []), incident]))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("src", type=Path)
    ap.add_argument("dst", type=Path)
    ap.add_argument("--kind", required=True, choices=("runaway", "surge", "lag", "blackout"))
    ap.add_argument("--at", required=True, help="HH:MM (UTC) on the scenario's first day")
    ap.add_argument("--minutes", type=float, required=True)
    ap.add_argument("--team", default="support")
    ap.add_argument("--factor", type=int, default=3, help="clones per call of the team (runaway, surge)")
    ap.add_argument("--cost", type=float, default=0.02, help="USD per runaway call")
    ap.add_argument("--lag", type=float, default=300.0, help="seconds Langfuse stores late (lag)")
    ap.add_argument("--category", help="the label's category (default: cost, traffic, tracing)")
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args(argv)
    labels = inject(a.src, a.dst, a.kind, a.at, a.minutes, a.team, a.factor, a.cost, a.lag, a.category, a.seed)
    print(json.dumps({"out": str(a.dst), "records": labels["records"], "incidents": len(labels["incidents"])}))


if __name__ == "__main__":
    main()
