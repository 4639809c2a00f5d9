"""Config errors: a clear message naming the file, the line and the field, and a non-zero exit
before anything starts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from gatewatch.config import ConfigError, load_config

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("text, line, says", [
    ("rules:\n  GatewayHigh5xxRate:\n    for: 10\n    threshold: -0.5\n", 4,
     "rules.GatewayHigh5xxRate.threshold: must be at least 0, not -0.5"),
    ("rules:\n  CacheHitRateLow:\n    enabled: false\n    treshold: 0.2\n", 4,
     "rules.CacheHitRateLow.treshold: unknown field (did you mean 'threshold'?)"),
    ("budgets:\n  teams:\n    support: 35\n    analytics: lots\n", 4, "budgets.teams.analytics: must be a number"),
    ("lateness_seconds: 30\nincidents:\n  group_interval: 300\n  repeat_interval: -1\n", 4,
     "incidents.repeat_interval: must be at least 0"),
    ("anomaly:\n  enabled: yes please\n", 2, "anomaly.enabled: must be true or false"),
    ("anomaly: {fire_scor: 0.5}\n", 1, "anomaly.fire_scor: unknown field (did you mean 'fire_score'?)"),
    ("\n\nbudget:\n  teams: {}\n", 3, "budget: unknown field (did you mean 'budgets'?)"),
    ("rules:\n  MyRule: {threshold: 1}\n", 2, "rules.MyRule: unknown rule; a new rule needs category"),
    (("rules:\n  X:\n    category: nope\n    severity: warning\n    scopes: [gateway]\n    metric: error_rate\n"
      "    op: '>'\n    threshold: 1\n"), 3, "rules.X.category: category must be one of"),
    ("rules:\n  GatewayHigh5xxRate:\n    op: '>='\n", 3, "rules.GatewayHigh5xxRate.op: must be '>' or '<'"),
    ("cardinality:\n  max_series_per_dimension: 0\n", 2, "cardinality.max_series_per_dimension: must be at least 1"),
    ("rules: [GatewayHigh5xxRate]\n", 1, "rules: must be a mapping, not a list"),
    ("- just\n- a list\n", 1, "(document): the configuration must be a mapping"),
])
def test_each_problem_names_file_line_and_field(tmp_path: Path, text: str, line: int, says: str) -> None:
    path = tmp_path / "gatewatch.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(str(path))
    message = str(caught.value)
    assert message.startswith(f"config {path}, line {line}, ") and says in message, message


@pytest.mark.parametrize("text, where", [
    ("rules:\n  CacheHitRateLow: {enabled: false\nlateness_seconds: 30\n", "line 3, column 17"),
    ("rules:\n\tGatewayHigh5xxRate: {}\n", "line 2, column 1"),
    ("a: b: c\n", "line 1, column 5"),
])
def test_yaml_that_does_not_parse_says_where(tmp_path: Path, text: str, where: str) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=f"config {path}, {where}: not valid YAML"):
        load_config(str(path))


def test_a_good_config_still_loads(tmp_path: Path) -> None:
    path = tmp_path / "ok.yaml"
    path.write_text("budgets:\n  teams: {support: 35.33}\nrules:\n  GatewayHigh5xxRate: {threshold: 0.02, for: 10}\n"
                    "  CacheHitRateLow: {enabled: false}\nlateness_seconds: 30\nanomaly: {enabled: true}\n"
                    "cardinality: {max_series_per_dimension: 500, idle_hours: 2}\n")
    config = load_config(str(path))
    assert config.budgets == {"support": 35.33} and config.cardinality == (500, 120)
    assert not any(r.name == "CacheHitRateLow" for r in config.rules)


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "gatewatch", *args], cwd=cwd, env=env, capture_output=True,
                          timeout=120, check=False)


def test_commands_exit_2_before_starting(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules:\n  GatewayHigh5xxRate:\n    threshold: -1\n")
    data = tmp_path / "in.ndjson"
    data.write_text("{}\n")
    out = tmp_path / "notifs.ndjson"
    replay = _run("replay", str(data), "--out", str(out), "--config", str(bad), cwd=tmp_path)
    assert replay.returncode == 2 and not out.exists()  # nothing was started, nothing written
    assert f"config {bad}, line 3, rules.GatewayHigh5xxRate.threshold".encode() in replay.stderr
    worker = _run("worker", "--config", str(bad), "--brokers", "127.0.0.1:1", "--state-dir", str(tmp_path / "s"),
                  cwd=tmp_path)
    assert worker.returncode == 2 and b"line 3, rules.GatewayHigh5xxRate.threshold" in worker.stderr
    assert not (tmp_path / "s").exists()
