"""What a primary reports in ``/status``: its databases, its replicas and its writers."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from litecluster.replication.primary.database import PrimaryDb
from litecluster.replication.primary.session import Session
from litecluster.replication.primary.writer import Writer


def primary_status(
    epoch: int,
    dbs: Mapping[str, PrimaryDb],
    sessions: Iterable[Session],
    writers: Mapping[str, Writer],
) -> dict[str, object]:
    """The ``/status`` view of a primary at ``epoch``: its databases, every replica in
    ``sessions`` (connected or recently departed) and its writers' group commits."""
    databases = {
        name: {
            # One consistent pair, from the end of capture's last round.
            "txid": db.capture.published.txid,
            "checksum": f"{db.capture.published.checksum:016x}",
            "epoch": epoch,
            "txlog_bytes": db.txlog.stats().bytes,
            "txlog_first_txid": db.txlog.first_txid,
        }
        for name, db in dbs.items()
    }
    replicas = []
    for s in sessions:
        per_db = {}
        for name, db in dbs.items():
            acked = s.acked.get(name)
            txid = acked.txid if acked else 0
            per_db[name] = {
                "txid": txid,
                "checksum": f"{acked.checksum:016x}" if acked else None,
                "lag_records": max(0, db.head - txid),
                "lag_ms": round(db.lag_seconds(txid) * 1000, 1),
            }
        replicas.append(
            {
                "node_id": s.node_id,
                "peer": s.peer,
                "http": s.http,
                "kind": s.kind,
                "counts_for_sync": s.promotable,
                "state": s.state,
                "snapshot_db": s.snapshotting or None,
                "connected_at": s.connected_at,
                "acked_at": s.acked_at,
                "databases": per_db,
            }
        )
    groups = {
        name: {
            "groups": sum(w.group_sizes.values()),
            "requests": sum(k * v for k, v in w.group_sizes.items()),
            "largest_group": max(w.group_sizes, default=0),
            "group_sizes": {str(k): v for k, v in sorted(w.group_sizes.items())},
            # Groups run again because a statement rolled back their transaction.
            "replays": w.replays,
        }
        for name, w in writers.items()
    }
    return {"databases": databases, "replicas": replicas, "writers": groups}
