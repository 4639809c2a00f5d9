"""Shared fixtures. Each block below is registered by the module that owns it."""

# Kafka (Tansu) broker fixtures: kafka_bootstrap (session), tansu_factory, lossy_kafka (function).
from tests.kafka_broker import kafka_bootstrap, lossy_kafka, tansu_factory  # noqa: F401


def pytest_configure(config) -> None:
    """Refuse to test old code: in a source checkout installed with ``pip install -e .``, the hot-path
    modules run compiled (gatewatch/compiled.py), and a module edited since runs its old version."""
    import pytest

    from gatewatch import compiled

    stale = [name for name, state in compiled.status().items() if state == compiled.STALE]
    if stale:
        raise pytest.UsageError(f"{', '.join(stale)} changed since compiled: the old code would run. "
                                "Run `pip install -e .` again (or reinstall with GATEWATCH_PURE=1).")
