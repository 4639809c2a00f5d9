"""Infrastructure and probe records (``gatewatch tail redis|postgres|probe``) and SQLite
``request_log`` rows: parsed, aggregated as gauges, judged by the runbook's rules."""

from __future__ import annotations

from datetime import datetime, timezone

from connectors.formats import parse_record
from models.events import METRIC, REQUEST
from tests.engine_helpers import T0, fired, run, traffic


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat().replace("+00:00", "Z")


def metric(ts: float, name: str, value: float) -> dict:
    return {"gatewatch_metric": name, "value": value, "labels": {"system": "redis"}, "timestamp": iso(ts)}


def probe(ts: float, status: int | None) -> dict:
    return {"gatewatch_probe": "http://gw/health/liveliness", "ok": status == 200, "status": status,
            "latency_ms": 12.0, "timestamp": iso(ts)}


def events(records: list[dict]):
    return [ev for r in records for ev in parse_record(r)]


def test_records_parse_into_metric_events():
    (m,) = parse_record(metric(T0, "redis_used_memory_bytes", 1e6))
    (p,) = parse_record(probe(T0, None))
    (r,) = parse_record({"request_log": True, "id": 7, "timestamp": iso(T0), "user_id": "u1", "model": "gpt-4o",
                         "total_tokens": 10, "cost": 0.01, "latency": 1.5, "status_code": 500})
    assert (m.kind, m.message, m.value) == (METRIC, "redis_used_memory_bytes", 1e6)
    assert (p.kind, p.status, p.value) == (METRIC, 0, 0.0)
    assert (r.kind, r.ok, r.status, r.team, r.latency) == (REQUEST, False, 500, "u1", 1.5)


def test_redis_memory_over_220_mb_warns():
    recs = [metric(T0 + i * 15, "redis_used_memory_bytes", 150e6) for i in range(40)]
    recs += [metric(T0 + 600 + i * 15, "redis_used_memory_bytes", 260e6) for i in range(40)]
    notes = run(events(recs) + traffic(25, 10))
    assert "RedisMemoryHigh" in fired(notes)
    first = next(n for n in notes if n["status"] == "firing" and n["category"] == "resource")
    assert first["severity"] == "warning"


def test_gateway_down_for_two_minutes_is_critical_but_a_blip_is_not():
    up = [probe(T0 + i * 10, 200) for i in range(60)]
    blip = [probe(T0 + 600 + i * 10, None) for i in range(6)]  # one minute unreachable
    recovered = [probe(T0 + 660 + i * 10, 200) for i in range(60)]
    assert "GatewayUnreachable" not in fired(run(events(up + blip + recovered)))
    down = [probe(T0 + 600 + i * 10, None) for i in range(30)]  # five minutes unreachable
    notes = run(events(up + down + [probe(T0 + 900 + i * 10, 200) for i in range(60)]))
    pages = [n for n in notes if n["status"] == "firing" and "GatewayUnreachable" in {a["name"] for a in n["alerts"]}]
    assert pages and pages[0]["severity"] == "critical" and pages[0]["category"] == "availability"
