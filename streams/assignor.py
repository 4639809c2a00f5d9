"""Raw partitions for the ingest group, weighted by who also runs detection.

Detection (one partials partition) is about an eighth of the work of a busy worker pair. With
every member taking an equal share of the raw partitions, the worker that also detects is the
slowest, and two workers are less than twice one. Each member says in its group metadata
whether it detects now; the leader deals the raw partitions so that a detecting member gets
``DETECT_WEIGHT`` of a share. When a worker gains or loses detection it asks the ingest group
to rebalance (``IngestLoop.set_detecting``).
"""

from __future__ import annotations

import collections
from collections.abc import Iterable, Mapping

from aiokafka.cluster import ClusterMetadata
from aiokafka.coordinator.assignors.abstract import AbstractPartitionAssignor
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment, ConsumerProtocolMemberMetadata

__all__ = ["DETECT_WEIGHT", "deal", "weighted_assignor"]

# Measured (benchmarks/RESULTS.md): catching up on the bench input, detect is ~1/8 of the CPU of
# two workers together, ingest ~7/8 (it was ~1/4 before the partials went as rows, a fetch's in
# one message). With two members the detecting one balances the other at a share x of ingest
# where x * 7/8 + 1/8 = (1 - x) * 7/8, x = 3/7: weight 3/4 against the other's 1 (7 of the 16
# raw partitions of four 4-partition topics, 5 with weight 1/2). Detect's share grows as the
# rate falls (its minute closes cost per minute, not per line), but then no worker is busy.
DETECT_WEIGHT = 0.75
DETECTING = b"detect"


def deal(partitions: list[int], weights: Mapping[str, float]) -> dict[str, list[int]]:
    """Partitions to members in proportion to their weights (largest remainder, stable)."""
    members = sorted(weights)
    total = sum(weights.values()) or 1.0
    quota = {m: len(partitions) * weights[m] / total for m in members}
    counts = {m: int(quota[m]) for m in members}
    for m in sorted(members, key=lambda m: (counts[m] - quota[m], m))[:len(partitions) - sum(counts.values())]:
        counts[m] += 1
    out, start = {}, 0
    for m in members:
        out[m] = partitions[start:start + counts[m]]
        start += counts[m]
    return out


def weighted_assignor(state: dict) -> type[AbstractPartitionAssignor]:
    """An assignor class whose metadata reads ``state["detecting"]`` (aiokafka wants classes)."""

    class WeightedAssignor(AbstractPartitionAssignor):
        name = "gatewatch-weighted"
        version = 0

        @classmethod
        def assign(cls, cluster: ClusterMetadata, members: Mapping[str, ConsumerProtocolMemberMetadata],
                   ) -> dict[str, ConsumerProtocolMemberAssignment]:
            weights = {m: DETECT_WEIGHT if md.user_data == DETECTING else 1.0 for m, md in members.items()}
            topics: set[str] = set().union(*(md.subscription for md in members.values()))
            # Partition-major (p0 of every topic, then p1, ...): a member's slice holds a part of
            # every source, and the weights act on all the partitions, not four at a time.
            tps = sorted((p, t) for t in topics for p in cluster.partitions_for_topic(t) or ())
            assignment: dict[str, dict[str, list[int]]] = collections.defaultdict(lambda: collections.defaultdict(list))
            for member, indices in deal(list(range(len(tps))), weights).items():
                for i in indices:
                    partition, topic = tps[i]
                    assignment[member][topic].append(partition)
            return {m: ConsumerProtocolMemberAssignment(cls.version, sorted(assignment[m].items()), b"")
                    for m in members}

        @classmethod
        def metadata(cls, topics: Iterable[str]) -> ConsumerProtocolMemberMetadata:
            return ConsumerProtocolMemberMetadata(cls.version, list(topics),
                                                  DETECTING if state.get("detecting") else b"")

        @classmethod
        def on_assignment(cls, assignment: ConsumerProtocolMemberAssignment) -> None:
            return None

    return WeightedAssignor
