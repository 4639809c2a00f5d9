"""The Faust app, built from settings (CONTRACT §5 names plus the worker's own knobs).

``create_app(settings)`` returns a ``faust.App`` whose topics, tables, agents and web
pages are registered (``streams.agents.register``); ``gatewatch worker`` runs it. Nothing
is created at import time, so tests and benchmarks build as many apps as they need.

Faust's defaults that matter here, and why they are changed:

- ``processing_guarantee`` stays ``at_least_once``: Tansu (the test broker) refuses
  transactions, and every effect is idempotent anyway (``streams.stages``, the outbox).
- ``broker_session_timeout``: a consumer group's first join waits half of it (30 s at
  Faust's default); ``GATEWATCH_SESSION_TIMEOUT`` shortens it for tests.
- ``store="memory://"``: tables are rebuilt from their changelog; the only big table is
  the engine snapshot, stored compacted in chunks (``streams.snapshot``).
- the web server serves ``/health`` (JSON) and Prometheus ``/metrics``.
"""

from __future__ import annotations

from pathlib import Path

import faust
from pydantic import Field

from gatewatch.settings import Settings

__all__ = ["WorkerSettings", "create_app"]


class WorkerSettings(Settings):
    """``Settings`` plus what only the worker reads (same tree, same environment rules)."""

    web_port: int = Field(6066, validation_alias="GATEWATCH_WEB_PORT")
    web_host: str = Field("0.0.0.0", validation_alias="GATEWATCH_WEB_HOST")
    raw_partitions: int = Field(4, validation_alias="GATEWATCH_RAW_PARTITIONS")
    idle_seconds: float = Field(30.0, validation_alias="GATEWATCH_IDLE_SECONDS")
    snapshot_seconds: float = Field(10.0, validation_alias="GATEWATCH_SNAPSHOT_SECONDS")
    tick_seconds: float = Field(1.0, validation_alias="GATEWATCH_TICK_SECONDS")
    session_timeout: float = Field(60.0, validation_alias="GATEWATCH_SESSION_TIMEOUT")
    app_id: str = Field("gatewatch-worker", validation_alias="GATEWATCH_APP_ID")
    # The online anomaly models, as `gatewatch replay` runs them (off: rules only, like --no-models).
    models: bool = Field(True, validation_alias="GATEWATCH_MODELS")
    # How much of a raw.litellm partition ingest reads again when it takes it over, to recall the
    # request ids counted there (streams.ingest.LookBack: why 300 s); 0 turns it off.
    dedup_lookback_seconds: float = Field(300.0, validation_alias="GATEWATCH_DEDUP_LOOKBACK_SECONDS")
    dedup_lookback_messages: int = Field(2000, validation_alias="GATEWATCH_DEDUP_LOOKBACK_MESSAGES")


def create_app(settings: WorkerSettings, *, register: bool = True, config_raw: dict | None = None) -> faust.App:
    state = Path(settings.state_dir)
    state.mkdir(parents=True, exist_ok=True)
    session = settings.session_timeout
    app = faust.App(
        f"{settings.app_id}-{settings.topic_prefix}",
        broker=[f"kafka://{b}" for b in settings.brokers],
        store="memory://",
        datadir=str(state / "faust"),
        web_enabled=settings.web_port > 0,
        web_port=settings.web_port or 6066,
        web_bind=settings.web_host,
        web_in_thread=False,
        topic_replication_factor=1,
        topic_partitions=1,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=session,
        broker_heartbeat_interval=max(session / 10, 0.5),
        broker_rebalance_timeout=session,
        broker_commit_every=1000,
        broker_commit_interval=1.0,
        producer_acks=-1,
        stream_wait_empty=False,
        table_cleanup_interval=3600.0,
        logging_config=None,
    )
    if register:
        from streams.agents import register as register_agents

        register_agents(app, settings, config_raw)
    return app
