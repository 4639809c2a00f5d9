"""``gatewatch worker``: the always-on service, one Faust worker over Kafka.

Run several (same brokers, same ``GATEWATCH_TOPIC_PREFIX``) to split the raw partitions;
detection and delivery run on whichever worker holds their single partition, and move to
a survivor (restoring the engine snapshot) when it dies. SIGTERM/SIGINT stop gracefully:
agents finish the message in hand, offsets of what was processed are committed, the
producer is flushed.
"""

from __future__ import annotations

import argparse
import sys

HELP = "the always-on service: a Faust worker over Kafka (ingest, detect, deliver)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--brokers", help="Kafka bootstrap servers (default GATEWATCH_KAFKA_BROKERS)")
    parser.add_argument("--config", help="YAML config, CONTRACT §4 (default GATEWATCH_CONFIG)")
    parser.add_argument("--state-dir", help="outbox, history and Faust data (default GATEWATCH_STATE_DIR)")
    parser.add_argument("--web-port", type=int,
                        help="/health and /metrics port, 0: off (default GATEWATCH_WEB_PORT or 6066)")
    parser.add_argument("--topic-prefix", help="topics are <prefix>.raw.<family>, ... (default GATEWATCH_TOPIC_PREFIX)")
    parser.add_argument("--idle-seconds", type=float,
                        help="an input partition quiet this long no longer holds the watermark (default 30)")
    parser.add_argument("--log-level", default="INFO")


def _settings(args: argparse.Namespace):  # -> WorkerSettings
    from streams.app import WorkerSettings

    update = {"kafka_brokers": args.brokers, "config": args.config, "state_dir": args.state_dir,
              "web_port": args.web_port, "topic_prefix": args.topic_prefix, "idle_seconds": args.idle_seconds}
    return WorkerSettings().model_copy(update={k: v for k, v in update.items() if v is not None})


def _create_raw_topics(settings) -> None:
    """Raw topics with their partition count, even before any source ran (Faust creates only
    its own topics, and a broker with auto-creation off would leave the agent nothing to read)."""
    import asyncio

    from connectors.kafka import ensure_topics

    for attempt in range(30):  # Kafka may start after us (docker compose)
        try:
            asyncio.run(ensure_topics(settings.brokers, settings.topic_prefix, settings.raw_partitions))
            return
        except Exception as exc:
            print(f"gatewatch worker: Kafka not ready ({exc}); retrying", file=sys.stderr)
            import time

            time.sleep(min(2 ** attempt, 10))


def run(args: argparse.Namespace) -> int:
    from gatewatch.commands.deliver import load_raw_config
    from gatewatch.config import ConfigError

    settings = _settings(args)
    try:
        config_raw = load_raw_config(settings.config)
    except (ConfigError, OSError) as exc:
        print(f"gatewatch worker: {exc}", file=sys.stderr)
        return 2

    import faust

    from streams.app import create_app

    _create_raw_topics(settings)
    app = create_app(settings, config_raw=config_raw)
    print(f"gatewatch worker: {settings.masked()}", file=sys.stderr)
    worker = faust.Worker(app, loglevel=args.log_level.upper(), quiet=True, redirect_stdouts=False)
    try:
        worker.execute_from_commandline()  # exits the process (sys.exit) when the worker stops
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0
