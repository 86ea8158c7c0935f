"""What a replica reports in ``/status``: its databases and its view of the primary."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from litecluster.engine.apply import Replica
from litecluster.replication.stats import Stats


class _Upstream(Protocol):
    address: str
    node_id: str
    http: str
    state: str
    epoch: int
    connected_at: float
    last_message_at: float
    last_error: str
    heads: dict[str, int]


def replica_status(
    replicas: Mapping[str, Replica], up: _Upstream, stats: Stats
) -> dict[str, object]:
    """The ``/status`` view of a replica: each database's position and lag behind the heads
    the primary last announced, and the connection to the primary."""
    dbs = {}
    for name, r in replicas.items():
        pos = r.position
        head = up.heads.get(name, pos.txid)
        dbs[name] = {
            "txid": pos.txid,
            "epoch": pos.epoch,
            "checksum": f"{pos.checksum:016x}",
            "lag_records": max(0, head - pos.txid),
            "diverged": r.diverged is not None,
        }
    return {
        "databases": dbs,
        "upstream": {
            "primary": up.address,
            "primary_id": up.node_id,
            "primary_http": up.http,
            "state": up.state,
            "epoch": up.epoch,
            "connected_at": up.connected_at,
            "last_message_at": up.last_message_at,
            "last_error": up.last_error,
            "snapshot_progress": [stats.snapshot_bytes_received, stats.snapshot_bytes_expected],
        },
    }
