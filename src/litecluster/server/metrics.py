"""Prometheus metrics, computed from the node's state when scraped (nothing on the hot path
but the integer counters in :class:`~litecluster.replication.stats.Stats`)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from litecluster.ha.roles import HeadDb
from litecluster.replication.stats import Stats


class PrimaryStatus(Protocol):
    """The primary role as metrics read it (``primary.Primary`` fits)."""

    @property
    def dbs(self) -> Mapping[str, HeadDb]: ...

    def status(self) -> dict[str, object]:
        """``databases`` (each with ``txlog_bytes``) and ``replicas`` (each with ``node_id``
        and per-database ``lag_records`` and ``lag_ms``)."""


class ReplicaStatus(Protocol):
    """The replica role as metrics read it (``follower.Follower`` fits)."""

    def status(self) -> dict[str, object]:
        """``databases``, each with ``txid`` and ``lag_records``."""


class QueueStatus(Protocol):
    """The node's write queue as metrics read it (``drain.Drain`` fits)."""

    def status(self) -> dict[str, Any]:
        """``queued``, ``oldest_age`` and the counters ``applied``, ``duplicates``, ``failed``,
        ``retries``."""


class MetricsSource(Protocol):
    """What the metrics are computed from when scraped."""

    @property
    def node_id(self) -> str: ...

    @property
    def epoch(self) -> int: ...

    @property
    def stats(self) -> Stats: ...

    @property
    def primary(self) -> PrimaryStatus | None: ...

    @property
    def follower(self) -> ReplicaStatus | None: ...

    @property
    def queue(self) -> QueueStatus | None:
        """The queued writes (None: the node keeps no queue)."""


class NodeCollector:
    def __init__(self, node: MetricsSource) -> None:
        self.node = node

    def collect(self) -> Iterator[Metric]:
        node, stats = self.node, self.node.stats
        role = GaugeMetricFamily("litecluster_role_primary", "1 on the primary, 0 on replicas")
        role.add_metric([], 1.0 if node.primary is not None else 0.0)
        yield role
        epoch = GaugeMetricFamily("litecluster_epoch", "Epoch this node follows")
        epoch.add_metric([], float(node.epoch))
        yield epoch
        for name, doc, value in (
            ("records_shipped", "Txlog records sent to replicas", stats.records_shipped),
            ("bytes_shipped", "Record bytes sent to replicas", stats.bytes_shipped),
            ("records_applied", "Records applied on this replica", stats.records_applied),
            ("bytes_applied", "Record bytes applied on this replica", stats.bytes_applied),
            ("snapshots_sent", "Snapshots sent to replicas", stats.snapshots_sent),
            ("snapshots_installed", "Snapshots installed here", stats.snapshots_installed),
            ("reconnects", "Connections to the primary lost or refused", stats.reconnects),
            ("replicas_left", "Replicas that closed cleanly (deregistered)", stats.replicas_left),
            (
                "replicas_expired",
                "Disconnected replicas dropped from status and metrics past replica_retention",
                stats.replicas_expired,
            ),
        ):
            c = CounterMetricFamily(f"litecluster_{name}", doc)
            c.add_metric([], float(value))
            yield c
        errors = CounterMetricFamily("litecluster_errors", "Errors by type", labels=["type"])
        for kind, count in sorted(stats.errors.items()):
            errors.add_metric([kind], float(count))
        yield errors
        progress = GaugeMetricFamily(
            "litecluster_snapshot_progress_ratio", "Share of the snapshot being received"
        )
        got, want = stats.snapshot_bytes_received, stats.snapshot_bytes_expected
        progress.add_metric([], got / want if want else 1.0)
        yield progress
        pos = GaugeMetricFamily("litecluster_position_txid", "Applied txid", labels=["db"])
        size = GaugeMetricFamily("litecluster_txlog_bytes", "Txlog size on disk", labels=["db"])
        lag_r = GaugeMetricFamily(
            "litecluster_replication_lag_records",
            "Records not yet applied",
            labels=["db", "replica"],
        )
        lag_s = GaugeMetricFamily(
            "litecluster_replication_lag_seconds",
            "Age of the oldest record not yet applied",
            labels=["db", "replica"],
        )
        if node.primary is not None:
            status = node.primary.status()
            for name, db in node.primary.dbs.items():
                pos.add_metric([name], float(db.head))
            for name, d in status["databases"].items():  # type: ignore[attr-defined]
                size.add_metric([name], float(d["txlog_bytes"]))
            for rep in status["replicas"]:  # type: ignore[attr-defined]
                for name, d in rep["databases"].items():
                    lag_r.add_metric([name, rep["node_id"]], float(d["lag_records"]))
                    lag_s.add_metric([name, rep["node_id"]], d["lag_ms"] / 1000)
        if node.follower is not None:
            for name, d in node.follower.status()["databases"].items():  # type: ignore[attr-defined]
                pos.add_metric([name], float(d["txid"]))
                lag_r.add_metric([name, node.node_id], float(d["lag_records"]))
        yield from (pos, size, lag_r, lag_s)
        if node.queue is not None:
            yield from _queue_metrics(node.queue.status())


def _queue_metrics(st: dict[str, Any]) -> Iterator[Metric]:
    entries = GaugeMetricFamily("litecluster_queue_entries", "Queued writes not applied yet")
    entries.add_metric([], float(st["queued"]))
    age = GaugeMetricFamily("litecluster_queue_oldest_age_seconds", "Age of the oldest one")
    age.add_metric([], float(st["oldest_age"]))
    yield from (entries, age)
    for name, doc in (("applied", "Queued writes applied"),
                      ("duplicates", "Queued writes found applied already"),
                      ("failed", "Queued writes that failed as SQL (not retried)"),
                      ("retries", "Queue drain attempts that will be retried")):  # fmt: skip
        c = CounterMetricFamily(f"litecluster_queue_{name}", doc)
        c.add_metric([], float(st[name]))
        yield c


def registry_for(node: MetricsSource) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(NodeCollector(node))
    return registry


def render(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
