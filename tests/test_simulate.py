"""``gatewatch simulate``: determinism, file shapes and order, and incidents that show in the data."""

from __future__ import annotations

import gzip
import json
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from gatewatch.cli import main
from gatewatch.sim.rows import US
from gatewatch.simulate import build, simulate

FILES = ("litellm.ndjson.gz", "fly.ndjson.gz", "langfuse.ndjson.gz")
CATEGORIES = {"error_rate", "rate_limit", "latency", "cache", "cost", "budget", "traffic", "availability",
              "tracing", "resource"}
RUN = dict(start="2026-09-14T06:00:00Z", hours=2.0, rps=1.5, seed=7,
           incidents="provider_outage,cache_collapse,crash_loop,tracing_stall")


def ts(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def read(run: Path, name: str) -> list[dict]:
    with gzip.open(run / name, "rt") as f:
        return [json.loads(line) for line in f]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sim") / "a"
    simulate(out, workers=1, **RUN)
    return out


@pytest.fixture(scope="module")
def labels(run) -> dict:
    return json.loads((run / "labels.json").read_text())


@pytest.fixture(scope="module")
def litellm(run) -> list[dict]:
    return read(run, "litellm.ndjson.gz")


@pytest.fixture(scope="module")
def fly(run) -> list[dict]:
    return read(run, "fly.ndjson.gz")


@pytest.fixture(scope="module")
def langfuse(run) -> list[dict]:
    return read(run, "langfuse.ndjson.gz")


def window(labels: dict, kind: str) -> tuple[float, float]:
    inc = next(i for i in labels["incidents"] if i["type"] == kind)
    return ts(inc["start"]), ts(inc["end"])


def test_same_seed_same_bytes_also_in_parallel(run, tmp_path):
    simulate(tmp_path / "b", workers=3, **RUN)
    for name in (*FILES, "labels.json"):
        assert (tmp_path / "b" / name).read_bytes() == (run / name).read_bytes(), name


def test_another_seed_other_data(run, tmp_path):
    simulate(tmp_path / "c", workers=1, **{**RUN, "seed": 8})
    assert (tmp_path / "c" / FILES[0]).read_bytes() != (run / FILES[0]).read_bytes()


def test_label_file_shape(labels, litellm, fly, langfuse):
    assert labels["start"] == "2026-09-14T06:00:00.000Z" and labels["end"] == "2026-09-14T08:00:00.000Z"
    assert labels["records"] == {"litellm": len(litellm), "fly": len(fly), "langfuse": len(langfuse)}
    teams = {r["metadata"]["user_api_key_team_alias"] for r in litellm}
    assert teams <= set(labels["budgets_usd_per_day"]) and all(v > 0 for v in labels["budgets_usd_per_day"].values())
    assert [i["type"] for i in labels["incidents"]] == RUN["incidents"].split(",")
    for i, inc in enumerate(labels["incidents"], 1):
        assert set(inc) >= {"id", "category", "start", "end", "labels"} and inc["id"] == f"inc{i}"
        assert inc["category"] in CATEGORIES and ts(inc["start"]) < ts(inc["end"])
    assert {b["type"] for b in labels["benign"]} == {"rolling_deploy", "new_team"}


def test_each_file_in_its_source_order(litellm, fly, langfuse):
    assert all(a["endTime"] <= b["endTime"] for a, b in zip(litellm, litellm[1:]))
    assert all(a["timestamp"] <= b["timestamp"] for a, b in zip(fly, fly[1:]))
    assert all(a["createdAt"] <= b["createdAt"] for a, b in zip(langfuse, langfuse[1:]))


def test_litellm_lines_are_standard_logging_payloads(litellm):
    keys = {"id", "trace_id", "call_type", "stream", "response_cost", "status", "custom_llm_provider",
            "total_tokens", "startTime", "endTime", "response_time", "model_group", "metadata", "cache_hit",
            "error_information", "hidden_params"}
    for r in litellm:
        assert keys <= set(r)
        assert {"user_api_key_team_alias", "user_api_key_team_max_budget", "user_api_key_team_spend",
                "user_api_key_alias", "user_api_key_hash"} <= set(r["metadata"])
        assert r["startTime"] <= r["endTime"] and (r["status"] == "failure") == bool(r["error_str"])
    hits = [r for r in litellm if r["cache_hit"]]
    assert hits and all("_cache_hit" in r["id"] and r["response_cost"] == 0 for r in hits)
    share = len(hits) / sum(r["cache_hit"] is not None for r in litellm)
    assert 0.25 < share < 0.45
    assert {r["custom_llm_provider"] for r in litellm} >= {"openai", "anthropic", "groq", "azure"}
    assert {r["call_type"] for r in litellm} == {"acompletion", "aembedding"} and any(r["stream"] for r in litellm)


def test_fly_lines_are_nats_envelopes(fly):
    apps = set()
    for r in fly:
        assert {"event", "fly", "host", "log", "message", "timestamp"} <= set(r)
        assert r["timestamp"].endswith("Z") and len(r["timestamp"]) == 30
        apps.add(r["fly"]["app"]["name"])
        if r["message"].startswith("{"):
            assert {"message", "level", "timestamp"} <= set(json.loads(r["message"]))
    assert apps == {"llm-gateway", "acme-langfuse-worker"}
    text = " ".join(r["message"] for r in fly)
    for needle in ("uvicorn.access", "/health/liveliness", "Processed ingestion queue batch",
                   "Sending signal SIGINT to main child", "Main child exited normally with code: 0"):
        assert needle in text


def test_langfuse_lines_are_observations(langfuse, litellm):
    assert len(langfuse) == len(litellm)
    for r in langfuse:
        assert {"id", "traceId", "type", "startTime", "endTime", "createdAt", "usageDetails", "level",
                "calculatedTotalCost"} <= set(r)
        assert ts(r["createdAt"]) > ts(r["endTime"])
    assert {r["traceId"] for r in langfuse} == {r["trace_id"] for r in litellm}


def test_provider_outage_is_a_5xx_storm(labels, litellm):
    start, end = window(labels, "provider_outage")
    openai = [r for r in litellm if r["custom_llm_provider"] == "openai" and not r["cache_hit"]]

    def share(rows):
        return sum(r["error_information"]["error_code"].startswith("5") for r in rows) / len(rows)
    inside = [r for r in openai if start <= r["startTime"] < end]
    outside = [r for r in openai if not start - 60 <= r["startTime"] < end + 60]
    assert share(inside) > 0.3 and share(outside) < 0.01
    fallbacks = [r for r in litellm if start <= r["startTime"] < end + 30 and r["custom_llm_provider"] == "anthropic"]
    failed_traces = {r["trace_id"] for r in inside if r["status"] == "failure"}
    assert any(r["trace_id"] in failed_traces for r in fallbacks)


def test_cache_collapse_drops_the_hit_rate(labels, litellm):
    start, end = window(labels, "cache_collapse")
    rows = [r for r in litellm if start <= r["startTime"] < end and r["cache_hit"] is not None]
    assert sum(r["cache_hit"] for r in rows) / len(rows) < 0.05


def test_tracing_stall_holds_back_langfuse(labels, langfuse, fly):
    start, end = window(labels, "tracing_stall")
    assert not [r for r in langfuse if start + 1 <= ts(r["createdAt"]) < end]
    assert max(ts(r["createdAt"]) - ts(r["endTime"]) for r in langfuse) > (end - start) / 2
    inside = [r["message"] for r in fly if start <= ts(r["timestamp"]) < end]
    assert any(m.startswith("ClickHouse INSERT error") for m in inside)
    assert "Processed ingestion queue batch" not in inside


def test_crash_loop_kills_and_loses_requests(labels, fly):
    start, end = window(labels, "crash_loop")
    inside = [r for r in fly if start - 1 <= ts(r["timestamp"]) < end + 60]
    assert sum("exit code 137" in r["message"] for r in inside) >= 4
    assert any(r["event"]["provider"] == "proxy" and "good candidate" in r["message"] for r in inside)
    outside = [r for r in fly if "exit code 137" in r["message"] and not start - 1 <= ts(r["timestamp"]) < end + 60]
    assert not outside


def test_cost_incidents_in_memory():
    sim, labels = build(hours=4, rps=1.0, seed=3, incidents="runaway_agent,budget_breach")
    c = sim.rows.cols
    end = c["t0"] + c["dur"]
    runaway = next(i for i in labels if i["type"] == "runaway_agent")
    team = sim.team_index(runaway["labels"]["team"])
    s, e = int(ts(runaway["start"]) * US), int(ts(runaway["end"]) * US)
    mine = c["team"] == team
    rate_in = c["cost"][mine & (c["t0"] >= s) & (c["t0"] < e)].sum() / (e - s)
    rate_out = c["cost"][mine & ((c["t0"] < s) | (c["t0"] >= e))].sum() / (sim.end_us - sim.start_us - (e - s))
    assert 8 < rate_in / rate_out < 30
    breach = next(i for i in labels if i["type"] == "budget_breach")
    team = sim.world.teams[sim.team_index(breach["labels"]["team"])]
    spend = c["spend"][c["team"] == sim.team_index(team.alias)]
    crossed = end[c["team"] == sim.team_index(team.alias)][spend >= 0.8 * team.budget]
    assert ts(breach["start"]) * US <= np.min(crossed) <= ts(breach["end"]) * US
    assert spend.max() < team.budget  # only the 80% line is crossed


def test_cli_writes_and_rejects_unknown_incidents(tmp_path, capsys):
    assert main(["simulate", str(tmp_path / "x"), "--hours", "0.5", "--rps", "0.5", "--incidents", "none",
                 "--workers", "1"]) == 0
    assert json.loads((tmp_path / "x" / "labels.json").read_text())["incidents"] == []
    assert main(["simulate", str(tmp_path / "y"), "--incidents", "meteor_strike"]) == 2
    assert "meteor_strike" in capsys.readouterr().err and not (tmp_path / "y").exists()


@pytest.mark.slow
def test_demo_scenario_is_a_day_with_seven_incidents(tmp_path):
    result = simulate(tmp_path / "demo", scenario="demo")
    assert 100_000 <= result.labels["records"]["litellm"] <= 300_000
    assert len({i["category"] for i in result.labels["incidents"]}) == 7
