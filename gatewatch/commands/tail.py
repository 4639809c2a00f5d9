"""``gatewatch tail SOURCE``: tail one live source into its raw Kafka topic.

Sources: ``fly`` (Fly.io NATS log stream), ``litellm-http`` (generic_api callback
receiver), ``litellm-db`` (SpendLogs in PostgreSQL, or a SQLite ``request_log``),
``langfuse`` (public API), ``redis`` / ``postgres`` (resource metrics), ``probe``
(gateway health endpoint), ``file`` (NDJSON files, optionally followed).
SIGTERM/SIGINT stop the source, flush the producer and write the checkpoint.
Secrets come from the environment only (see ``gatewatch.settings``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
import time
from datetime import datetime, timedelta, timezone
from typing import Any

from gatewatch.settings import Settings, load_settings
from models.redaction import redact

HELP = "tail one live source (fly, litellm-http, litellm-db, langfuse, redis, postgres, probe, file) into Kafka"
log = logging.getLogger("gatewatch.tail")


def _since(value: str) -> datetime:
    """ISO 8601 time, or a look-back such as ``15m`` / ``2h`` / ``1d``."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if value[-1:] in units and value[:-1].replace(".", "", 1).isdigit():
        return datetime.now(timezone.utc) - timedelta(seconds=float(value[:-1]) * units[value[-1]])
    ts = datetime.fromisoformat(value)
    return ts if ts.tzinfo else ts.replace(tzinfo=timezone.utc)


def _common(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("Kafka and runtime")
    g.add_argument("--brokers", help="Kafka bootstrap servers (default: GATEWATCH_KAFKA_BROKERS)")
    g.add_argument("--topic-prefix", help="raw topics are <prefix>.raw.<family> (default: GATEWATCH_TOPIC_PREFIX)")
    g.add_argument("--state-dir", help="checkpoint directory (default: GATEWATCH_STATE_DIR)")
    g.add_argument("--name", help="checkpoint name, to run two tails of one kind (default: the source)")
    g.add_argument("--batch-records", type=int, default=500, help="records per Kafka message (default 500)")
    g.add_argument("--batch-kb", type=int, default=256, help="KiB per Kafka message (default 256)")
    g.add_argument("--linger", type=float, default=0.5, help="seconds a partial batch waits (default 0.5)")
    g.add_argument("--delivery-timeout", type=float, default=30.0, help="seconds to wait for a Kafka ack")
    g.add_argument("--compression", choices=["gzip"], default=None, help="Kafka message compression")
    g.add_argument("--partitions", type=int, default=4, help="create missing raw topics with N partitions; 0: don't")
    g.add_argument("--metrics-port", type=int, default=0, help="serve /health and /metrics here (0: off)")
    g.add_argument("--metrics-host", default="0.0.0.0")
    g.add_argument("--log-level", default="INFO")


def _poll(parser: argparse.ArgumentParser, interval: float) -> None:
    parser.add_argument("--interval", type=float, default=interval, help=f"seconds between polls (default {interval})")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="source", metavar="SOURCE", required=True)
    p = sub.add_parser("fly", help="Fly.io NATS log stream (FLY_ACCESS_TOKEN, FLY_ORG)")
    p.add_argument("--nats-url", action="append", help="NATS server (default GATEWATCH_FLY_NATS_URL, [fdaa::3]:4223)")
    p.add_argument("--org", help="Fly org slug = NATS user (default FLY_ORG or 'personal')")
    p.add_argument("--app", help="only this app: subject logs.<app>.>")
    p.add_argument("--subject", default="logs.>", help="NATS subject (default logs.>)")
    p.add_argument("--queue", default="", help="NATS queue group, to run several tails for HA")
    p.add_argument("--durable", help="JetStream durable consumer name (resume after restart)")
    p.add_argument("--stream", help="JetStream stream name (default: looked up by subject)")
    p = sub.add_parser("litellm-http", help="receiver for LiteLLM's generic_api callback")
    p.add_argument("--host", default="0.0.0.0")
    p.add_argument("--port", type=int, default=4318)
    p.add_argument("--no-auth", action="store_true", help="accept requests without GATEWATCH_RECEIVER_SECRET")
    p = sub.add_parser("litellm-db", help='tail "LiteLLM_SpendLogs" (DATABASE_URL) or a SQLite request_log')
    p.add_argument("--dsn", help="PostgreSQL DSN (default DATABASE_URL)")
    p.add_argument("--table", default='"LiteLLM_SpendLogs"', help="table, may be schema-qualified")
    p.add_argument("--sqlite", metavar="PATH", help="tail request_log of this SQLite file instead")
    p.add_argument("--overlap", type=float, default=120.0, help="seconds re-read behind the newest row")
    p.add_argument("--since", type=_since, help="first run: start here (ISO time or 15m/2h/1d back)")
    _poll(p, 5.0)
    p = sub.add_parser("langfuse", help="Langfuse observations (LANGFUSE_HOST, _PUBLIC_KEY, _SECRET_KEY)")
    p.add_argument("--host", help="Langfuse base URL (default LANGFUSE_HOST)")
    p.add_argument("--api", choices=["auto", "v1", "v2"], default="auto")
    p.add_argument("--overlap", type=float, default=300.0, help="seconds re-read behind the newest start time")
    p.add_argument("--since", type=_since, help="first run: start here (ISO time or 15m/2h/1d back)")
    _poll(p, 30.0)
    p = sub.add_parser("redis", help="Redis INFO metrics (REDIS_URL)")
    p.add_argument("--url", help="redis:// URL (default REDIS_URL or redis://localhost:6379)")
    _poll(p, 15.0)
    p = sub.add_parser("postgres", help="PostgreSQL connection/query metrics (DATABASE_URL)")
    p.add_argument("--dsn", help="PostgreSQL DSN (default DATABASE_URL)")
    p.add_argument("--long-query-s", type=float, default=60.0, help="a query active this long counts as long")
    _poll(p, 15.0)
    p = sub.add_parser("probe", help="poll gateway health endpoints")
    p.add_argument("urls", nargs="+", metavar="URL", help="e.g. https://gw.fly.dev/health/liveliness")
    p.add_argument("--timeout", type=float, default=5.0)
    _poll(p, 10.0)
    p = sub.add_parser("file", help="NDJSON(.gz) files into the raw topics")
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("--follow", "-F", action="store_true", help="keep reading, across rotation and truncation")
    p.add_argument("--poll", type=float, default=0.5, help="seconds between checks for new data when following")
    for name, action in sub.choices.items():
        _common(action)


def _secret(value: Any) -> str | None:
    return value.get_secret_value() if value is not None else None


def _build_source(args: argparse.Namespace, settings: Settings, producer: Any, checkpoint: Any) -> Any:
    from connectors import file_source, http_receiver, infra_source, langfuse_source, nats_source
    from connectors import probe_source, spendlogs_source

    if args.source == "fly":
        subject = f"logs.{args.app}.>" if args.app else args.subject
        return nats_source.NatsSource(nats_source.NatsConfig(
            servers=args.nats_url or [settings.fly_nats_url], subject=subject, user=args.org or settings.fly_org,
            password=_secret(settings.fly_access_token), queue=args.queue, durable=args.durable,
            stream=args.stream), producer)
    if args.source == "litellm-http":
        secret = _secret(settings.receiver_secret)
        if not secret and not args.no_auth:
            raise SystemExit("gatewatch tail litellm-http: set GATEWATCH_RECEIVER_SECRET (or pass --no-auth)")
        return http_receiver.ReceiverSource(producer, secret, args.host, args.port)
    if args.source == "litellm-db":
        if args.sqlite:
            return spendlogs_source.RequestLogSource(args.sqlite, producer, checkpoint, interval=args.interval)
        return spendlogs_source.SpendLogsSource(spendlogs_source.SpendLogsConfig(
            dsn=_required(args.dsn or _secret(settings.database_url), "--dsn or DATABASE_URL"), table=args.table,
            overlap=args.overlap, interval=args.interval, since=args.since), producer, checkpoint)
    if args.source == "langfuse":
        return langfuse_source.LangfuseSource(langfuse_source.LangfuseConfig(
            host=args.host or settings.langfuse_host,
            public_key=_required(settings.langfuse_public_key, "LANGFUSE_PUBLIC_KEY"),
            secret_key=_required(_secret(settings.langfuse_secret_key), "LANGFUSE_SECRET_KEY"),
            api=args.api, overlap=args.overlap, interval=args.interval, since=args.since), producer, checkpoint)
    if args.source == "redis":
        url = args.url or _secret(settings.redis_url) or "redis://localhost:6379"
        return infra_source.MetricPoller("redis", lambda: infra_source.redis_metrics(url, {}),
                                         {"system": "redis"}, producer, args.interval)
    if args.source == "postgres":
        dsn = _required(args.dsn or _secret(settings.database_url), "--dsn or DATABASE_URL")
        return infra_source.MetricPoller("postgres", lambda: infra_source.postgres_metrics(dsn, args.long_query_s),
                                         {"system": "postgres"}, producer, args.interval)
    if args.source == "probe":
        return probe_source.ProbeSource(args.urls, producer, interval=args.interval, timeout=args.timeout)
    return file_source.FileSource(args.paths, producer, checkpoint, follow=args.follow, poll=args.poll)


def _required(value: str | None, what: str) -> str:
    if not value:
        raise SystemExit(f"gatewatch tail: missing {what}")
    return value


class _JsonLogFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {"ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
               "level": record.levelname, "logger": record.name, "msg": record.getMessage()}
        out.update(getattr(record, "kv", {}) or {})
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return redact(json.dumps(out, default=str))  # an exception text may quote a key or a DSN


def _setup_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonLogFormatter())
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
    logging.getLogger("aiokafka").setLevel(logging.WARNING)


async def _start_producer(producer: Any, stop: asyncio.Event) -> bool:
    """Wait for the broker (it may start after us), until stopped."""
    delay = 1.0
    while not stop.is_set():
        try:
            await producer.start()
            return True
        except Exception as exc:
            log.warning("kafka not reachable, retrying", extra={"kv": {"error": str(exc), "retry_s": delay}})
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)
    return False


async def _main(args: argparse.Namespace) -> int:
    from connectors.checkpoint import Checkpoint, checkpoint_path
    from connectors.kafka import BatchProducer, ensure_topics
    from connectors.metrics import SourceMetrics, start_health_server

    settings = load_settings()
    brokers = [b.strip() for b in (args.brokers or settings.kafka_brokers).split(",") if b.strip()]
    prefix = args.topic_prefix or settings.topic_prefix
    metrics = SourceMetrics(args.source)
    producer = BatchProducer(brokers, args.source, prefix=prefix, max_records=args.batch_records,
                             max_bytes=args.batch_kb * 1024, linger=args.linger,
                             delivery_timeout=args.delivery_timeout, compression=args.compression, metrics=metrics)
    checkpoint = Checkpoint(checkpoint_path(args.state_dir or settings.state_dir, args.name or args.source))
    source = _build_source(args, settings, producer, checkpoint)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    if not await _start_producer(producer, stop):
        return 0
    if args.partitions:
        await ensure_topics(brokers, prefix, args.partitions)
    health = None
    if args.metrics_port:
        health = await start_health_server(args.metrics_host, args.metrics_port,
                                           lambda: {"ok": True, "source": args.source, **metrics.totals})
    started = time.monotonic()
    log.info("tail started", extra={"kv": {"source": args.source, "brokers": brokers, "prefix": prefix}})
    try:
        await source.run(stop)
        return 0
    except Exception as exc:
        log.error("source failed", exc_info=True, extra={"kv": {"source": args.source, "error": str(exc)}})
        return 1
    finally:
        await producer.stop()
        if health:
            await health.cleanup()
        elapsed = max(time.monotonic() - started, 1e-9)
        log.info("tail stopped", extra={"kv": {"source": args.source, **metrics.totals,
                                               "records_per_s": round(metrics.totals["records_out"] / elapsed)}})


def run(args: argparse.Namespace) -> int:
    _setup_logging(args.log_level)
    return asyncio.run(_main(args))
