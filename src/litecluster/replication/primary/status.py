"""What a primary reports in ``/status``: its databases, its replicas and its writers."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from litecluster.replication.primary.primary import Primary


def primary_status(primary: Primary) -> dict[str, object]:
    dbs = {
        name: {
            # One consistent pair, from the end of capture's last round.
            "txid": db.capture.published.txid,
            "checksum": f"{db.capture.published.checksum:016x}",
            "epoch": primary.epoch,
            "txlog_bytes": db.txlog.stats().bytes,
            "txlog_first_txid": db.txlog.first_txid,
        }
        for name, db in primary.dbs.items()
    }
    replicas = []
    for s in [*primary.sessions.values(), *primary.departed.values()]:
        per_db = {}
        for name, db in primary.dbs.items():
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
                "state": s.state,
                "snapshot_db": s.snapshotting or None,
                "connected_at": s.connected_at,
                "acked_at": s.acked_at,
                "databases": per_db,
            }
        )
    writers = {
        name: {
            "groups": sum(w.group_sizes.values()),
            "requests": sum(k * v for k, v in w.group_sizes.items()),
            "largest_group": max(w.group_sizes, default=0),
            "group_sizes": {str(k): v for k, v in sorted(w.group_sizes.items())},
        }
        for name, w in primary.writers.items()
    }
    return {"databases": dbs, "replicas": replicas, "writers": writers}
