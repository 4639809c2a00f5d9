"""The worker's topics, by name; partition counts are the design, not a tuning knob.

==============================  ==========  ===============================================
``<prefix>.raw.<family>``       many        NDJSON batches from ``gatewatch tail`` (read)
``<prefix>.partials``           1           minute buckets pre-aggregated per raw batch (a
                                            JSON list of a fetch's batches per message)
``<prefix>.notifications``      1           CONTRACT §3 bodies, keyed by incident id
``<prefix>.rejects``            1           records that did not parse, with stage and reason
==============================  ==========  ===============================================

Detection is per-minute work over a few hundred buckets, so it runs on one partition (one
``Engine``); the raw topics carry the volume and are split across workers.
"""

from __future__ import annotations

from dataclasses import dataclass

from connectors.kafka import FAMILIES, raw_topic

__all__ = ["TopicNames", "topic_names"]


@dataclass(frozen=True, slots=True)
class TopicNames:
    raw: tuple[str, ...]
    partials: str
    notifications: str
    rejects: str


def topic_names(prefix: str = "gatewatch") -> TopicNames:
    return TopicNames(raw=tuple(raw_topic(f, prefix) for f in FAMILIES), partials=f"{prefix}.partials",
                      notifications=f"{prefix}.notifications", rejects=f"{prefix}.rejects")
