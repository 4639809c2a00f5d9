"""``gatewatch tune``: sweeps, labels, scoring, and the acceptance of issue 9: with the default
configuration, tune reports on each shared scenario the recall and false incidents that the
shared scorer reports on ``gatewatch replay``'s output; a sweep runs in parallel."""

from __future__ import annotations

import io
import json

import pytest
import yaml

from gatewatch.cli import main
from gatewatch.replay import replay
from gatewatch.tune import apply_setting, parse_sweep, run_settings, settings
from models.config import Config
from models.pipeline import build_engine
from models.scoring import parse_labels, score
from tests.shared_data import needs_shared, scenarios, scorer


def test_sweep_ranges_and_lists():
    assert parse_sweep("rules.RateLimitStorm.threshold=5:20:5").values == (5, 10, 15, 20)
    assert parse_sweep("rules.GatewayHigh5xxRate.threshold=0.01:0.03:0.01").values == (0.01, 0.02, 0.03)
    assert parse_sweep("anomaly.fire_score=0.3,0.5").values == (0.3, 0.5)
    grid = settings([parse_sweep("rules.RateLimitStorm.for=1,2"),
                     parse_sweep("lateness_seconds=30,60")])
    assert len(grid) == 4 and grid[0] == {"rules.RateLimitStorm.for": 1, "lateness_seconds": 30}


@pytest.mark.parametrize("bad", ["rules.NoSuchRule.threshold=1:2:1", "rules.RateLimitStorm.colour=1:2:1",
                                 "rules.RateLimitStorm.threshold=5:1:1", "rules.RateLimitStorm.threshold=1:5:0",
                                 "bogus.key=1", "rules.RateLimitStorm.threshold", "x=a,b"])
def test_bad_sweeps_are_refused_with_a_reason(bad):
    with pytest.raises(ValueError, match="--sweep"):
        parse_sweep(bad)


def test_a_setting_changes_only_its_keys_and_gives_a_valid_config():
    base = {"budgets": {"teams": {"a": 10}}, "rules": {"CacheHitRateLow": {"enabled": False}}}
    doc = apply_setting(base, {"rules.RateLimitStorm.for": 3, "incidents.group_interval": 600})
    assert doc["rules"] == {"CacheHitRateLow": {"enabled": False}, "RateLimitStorm": {"for": 3}}
    assert base["rules"] == {"CacheHitRateLow": {"enabled": False}}  # the base is not touched
    config = Config.from_dict(doc)
    assert next(r for r in config.rules if r.name == "RateLimitStorm").for_ == 3
    assert config.timing.group_interval == 600 and config.budgets == {"a": 10.0}


def test_hand_written_yaml_labels():
    doc = yaml.safe_load("""
- start: 2026-09-14T09:00:00Z
  end: 2026-09-14T09:14:00Z
  category: error_rate
  labels: {provider: openai}
- {start: "2026-09-14 12:00", end: "2026-09-14 12:12", category: rate_limit}
""")
    labels = parse_labels(doc)
    assert [t["id"] for t in labels] == ["inc1", "inc2"]
    assert labels[1]["start"].isoformat() == "2026-09-14T12:00:00+00:00"
    with pytest.raises(ValueError, match="incident 1 needs"):
        parse_labels([{"start": "2026-09-14T09:00:00Z"}])
    with pytest.raises(ValueError, match="ends before"):
        parse_labels([{"start": "2026-09-14T09:00:00Z", "end": "2026-09-14T08:00:00Z", "category": "cost"}])


def _replay_notes(files: list[str], config: Config) -> bytes:
    out = io.BytesIO()
    replay(files, out, engine=build_engine(config))
    return out.getvalue()


@needs_shared
@pytest.mark.slow
@pytest.mark.parametrize("path", scenarios(), ids=lambda p: p.name)
def test_tune_default_config_agrees_with_the_shared_scorer(path, tmp_path, capsys):
    files = sorted(str(p) for p in path.glob("*.ndjson.gz"))
    notifs = tmp_path / "notifs.ndjson"
    notifs.write_bytes(_replay_notes(files, Config()))
    shared = scorer()
    expected = shared.score(json.loads((path / "labels.json").read_text()), shared.load_incidents(str(notifs)))
    code = main(["tune", *files, "--labels", str(path / "labels.json"), "--json", "--jobs", "1",
                 "--out", str(tmp_path / "tuned.yaml")])
    assert code == 0
    got = json.loads(capsys.readouterr().out.splitlines()[0])
    assert got["setting"] == {}
    for key in ("incidents", "detected", "false_positives", "project_incidents", "median_delay_s",
                "max_pages_per_incident"):
        assert got[key] == expected[key], (key, got, expected)
    assert got["recall"] == (expected["detected"] / expected["incidents"] if expected["incidents"] else 1.0)
    assert yaml.safe_load((tmp_path / "tuned.yaml").read_text()) in (None, {})  # nothing changed


def test_the_scorer_module_matches_the_shared_scorer_on_hand_made_cases(tmp_path):
    notes = [
        {"incident": "a", "status": "firing", "severity": "warning", "category": "error_rate", "alerts": [],
         "at": "2026-09-14T09:03:00Z"},
        {"incident": "a", "status": "firing", "severity": "critical", "category": "error_rate",
         "alerts": [{"category": "latency"}], "at": "2026-09-14T09:05:00Z"},
        {"incident": "b", "status": "firing", "severity": "warning", "category": "cost", "alerts": [],
         "at": "2026-09-14T09:20:00Z"},  # inside inc1's window: not noise, not a page of it
        {"incident": "c", "status": "firing", "severity": "info", "category": "traffic", "alerts": [],
         "at": "2026-09-14T03:00:00Z"},  # info: ignored
        {"incident": "d", "status": "firing", "severity": "warning", "category": "cache", "alerts": [],
         "at": "2026-09-14T13:00:00Z"},  # noise
    ]
    labels = {"incidents": [
        {"id": "inc1", "category": "error_rate", "start": "2026-09-14T09:00:00Z", "end": "2026-09-14T09:14:00Z"},
        {"id": "inc2", "category": "latency", "start": "2026-09-14T09:01:00Z", "end": "2026-09-14T09:10:00Z"},
        {"id": "inc3", "category": "budget", "start": "2026-09-14T11:00:00Z", "end": "2026-09-14T11:10:00Z"}]}
    path = tmp_path / "n.ndjson"
    path.write_text("\n".join(json.dumps(n) for n in notes))
    shared = scorer() if scenarios() else None
    mine = score(labels, notes)
    assert (mine.detected, mine.false_positives, mine.false_incidents) == (2, 1, ["d"])
    assert [r["delay_s"] for r in mine.rows] == [180.0, 120.0, None]
    if shared is not None:
        theirs = shared.score(labels, shared.load_incidents(str(path)))
        assert theirs["detected"] == mine.detected and theirs["false_positives"] == mine.false_positives
        assert [r["delay_s"] for r in theirs["rows"]] == [r["delay_s"] for r in mine.rows]


@pytest.mark.slow
def test_a_sweep_over_two_rule_parameters_scores_what_its_single_replays_send(tmp_path):
    """The parallel sweep (2 processes) against one replay per setting. How much faster it is
    is a benchmark (benchmarks/bench_tune.py), not an assertion on a shared machine's clock."""
    from gatewatch.simulate import simulate

    result = simulate(tmp_path / "sim", scenario="default", hours=1.5, seed=3)
    files = sorted(str(p) for p in (tmp_path / "sim").glob("*.ndjson.gz"))
    grid = settings([parse_sweep("rules.RateLimitStorm.threshold=5:15:10"),
                     parse_sweep("rules.GatewayHigh5xxRate.for=3:5:2")])
    singles = [_replay_notes(files, Config.from_dict(apply_setting({}, s))) for s in grid]
    results = run_settings(files, {}, grid, result.labels, jobs=2)
    assert len(results) == len(grid) == 4
    for notes, r in zip(singles, results):  # each setting scores what its single replay sends
        expected = score(result.labels, [json.loads(x) for x in notes.splitlines()])
        assert r.score.as_dict() == expected.as_dict() and r.notifications == len(notes.splitlines())


@pytest.fixture(scope="module")
def small_input(tmp_path_factory):
    from gatewatch.simulate import simulate

    out = tmp_path_factory.mktemp("sim")
    result = simulate(out, scenario="default", hours=1, seed=5)
    (out / "labels.yaml").write_text(yaml.safe_dump(
        [{"start": "2026-09-14T09:00:00Z", "end": "2026-09-14T09:10:00Z", "category": "error_rate"}]))
    return sorted(str(p) for p in out.glob("*.ndjson.gz")), out / "labels.yaml", result


def test_tune_cli_prints_a_ranked_table_and_writes_the_best_config(small_input, tmp_path, capsys):
    files, labels, _ = small_input
    best = tmp_path / "best.yaml"
    code = main(["tune", *files, "--labels", str(labels), "--sweep", "rules.RateLimitStorm.threshold=5,50",
                 "--sweep", "rules.GatewayHigh5xxRate.for=2:4:2", "--out", str(best)])
    assert code == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line[:4].strip().isdigit()]
    assert len(rows) == 4 and "4 settings, 1 labelled incidents" in out
    doc = yaml.safe_load(best.read_text())
    assert set(doc["rules"]) == {"RateLimitStorm", "GatewayHigh5xxRate"}
    assert best.read_text().startswith("# gatewatch tune: recall ")
    Config.from_dict(doc)  # the written config loads


@pytest.mark.parametrize("args, message", [
    (["--sweep", "rules.Nope.threshold=1:2:1"], "no rule Nope"),
    (["--sweep", "rules.RateLimitStorm.threshold=-5,x"], "--sweep"),
    (["--sweep", "incidents.no_such_timing=1"], "bad setting"),
])
def test_tune_cli_refuses_bad_sweeps_with_exit_2(small_input, tmp_path, capsys, args, message):
    files, labels, _ = small_input
    assert main(["tune", *files, "--labels", str(labels), "--out", "-", "--jobs", "1", *args]) == 2
    assert message in capsys.readouterr().err


def test_tune_cli_refuses_bad_labels(small_input, tmp_path, capsys):
    files, _, _ = small_input
    bad = tmp_path / "labels.yaml"
    bad.write_text("- {start: yesterday, end: today, category: cost}\n")
    assert main(["tune", *files, "--labels", str(bad), "--out", "-"]) == 2
    assert "bad time" in capsys.readouterr().err


def test_an_input_larger_than_the_cache_is_re_read_with_the_same_results(small_input):
    files, labels, _ = small_input
    grid = [{}, {"rules.RateLimitStorm.threshold": 3}]
    cached = run_settings(files, {}, grid, parse_labels(yaml.safe_load(labels.read_text())), jobs=1)
    streamed = run_settings(files, {}, grid, parse_labels(yaml.safe_load(labels.read_text())), jobs=1,
                            cache_events=10)
    assert [(r.score.as_dict(), r.notifications) for r in cached] == \
        [(r.score.as_dict(), r.notifications) for r in streamed]
