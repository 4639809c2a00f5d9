"""Loading the YAML configuration (CONTRACT §4) from ``--config`` or ``GATEWATCH_CONFIG``.

Everything is checked before anything starts (``models.config.check``); a problem is reported
with the file, the line and the field: ``config gw.yaml, line 7, rules.GatewayHigh5xxRate.threshold:
must be at least 0, not -0.5``. The commands print it and exit 2.
"""

from __future__ import annotations

import os

import yaml

from models.config import Config, ConfigIssue


class ConfigError(ValueError):
    pass


def load_config(path: str | None = None) -> Config:
    path = path or os.environ.get("GATEWATCH_CONFIG")
    if not path:
        return Config()
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise ConfigError(f"cannot read config {path}: {e.strerror}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"config {path} is not UTF-8 text (byte {e.start})") from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"config {path}{_where_yaml(e)}: not valid YAML: {_problem(e)}") from None
    try:
        return Config.from_dict(doc)
    except ConfigIssue as e:
        raise ConfigError(f"config {path}, line {_line_of(text, e.path)}, {e}") from None
    except (TypeError, ValueError) as e:
        raise ConfigError(f"config {path}: {e}") from None


def _where_yaml(error: yaml.YAMLError) -> str:
    mark = getattr(error, "problem_mark", None)
    return f", line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""


def _problem(error: yaml.YAMLError) -> str:
    parts = [getattr(error, "context", None), getattr(error, "problem", None)]
    return ", ".join(p for p in parts if p) or str(error).splitlines()[0]


def _line_of(text: str, path: tuple) -> int:
    """The line of the deepest key of ``path`` found in the document (1 when none is)."""
    node = yaml.compose(text)
    line = 1
    for key in path:
        if not isinstance(node, yaml.MappingNode):
            break
        found = next(((k, v) for k, v in node.value if k.value == str(key)), None)
        if found is None:
            break
        line, node = found[0].start_mark.line + 1, found[1]
    return line
