"""docker-compose.yml can't run here (no Docker engine): keep it right by reading it.

Every container command must parse with the CLI it calls, every variable the compose file
and .env.example name must be one the code reads, and the worker must be scalable.
"""

from __future__ import annotations

import argparse
import importlib
import pathlib
import re

import pytest
import yaml

from gatewatch.cli import COMMANDS

ROOT = pathlib.Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = {name: s for name, s in COMPOSE["services"].items() if name != "kafka"}


def _source_text() -> str:
    files = [p for d in ("gatewatch", "connectors", "streams", "models") for p in (ROOT / d).rglob("*.py")]
    return "\n".join(p.read_text() for p in files)


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_service_command_parses(name):
    command = SERVICES[name]["command"]
    assert command[0] in COMMANDS, f"{name}: unknown command {command[0]!r}"
    module = importlib.import_module(COMMANDS[command[0]])
    parser = argparse.ArgumentParser(prog=f"gatewatch {command[0]}", exit_on_error=False)
    module.add_arguments(parser)
    args = parser.parse_args(command[1:])  # raises on an unknown option or a bad value
    assert args is not None


def test_every_variable_named_is_read_by_the_code():
    code = _source_text()
    named = set(re.findall(r"^([A-Z][A-Z0-9_]+)=", (ROOT / ".env.example").read_text(), re.M))
    for service in COMPOSE["services"].values():
        env = service.get("environment") or {}
        named |= {k for k in env if k.startswith(("GATEWATCH_", "SLACK_", "LANGFUSE_", "FLY_"))}
    named |= set(re.findall(r"\b((?:GATEWATCH|SLACK|LANGFUSE|FLY)_[A-Z0-9_]+)=", (ROOT / "docker-compose.yml").read_text()))
    unread = sorted(v for v in named if f'"{v}"' not in code and f"'{v}'" not in code)
    assert not unread, f"named in compose/.env.example but read nowhere: {unread}"


def test_worker_scales_and_sources_keep_state():
    worker = SERVICES["worker"]
    for port in worker.get("ports", []):
        host = str(port).split(":")[0]
        assert "-" in host or ":" not in str(port), "a fixed host port clashes on --scale worker=2"
    for name, service in SERVICES.items():
        assert any(str(v).endswith(":/var/lib/gatewatch") for v in service.get("volumes", [])), name
    kafka = COMPOSE["services"]["kafka"]["environment"]
    assert any(str(v).endswith(":" + kafka["KAFKA_LOG_DIRS"]) for v in COMPOSE["services"]["kafka"]["volumes"])
