"""Loading the YAML configuration (CONTRACT §4) from ``--config`` or ``GATEWATCH_CONFIG``."""

from __future__ import annotations

import os

import yaml

from models.config import Config


class ConfigError(ValueError):
    pass


def load_config(path: str | None = None) -> Config:
    path = path or os.environ.get("GATEWATCH_CONFIG")
    if not path:
        return Config()
    try:
        with open(path, encoding="utf-8") as f:
            doc = yaml.safe_load(f)
    except OSError as e:
        raise ConfigError(f"cannot read config {path}: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"config {path} is not valid YAML: {e}") from None
    try:
        return Config.from_dict(doc)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"config {path}: {e}") from None
