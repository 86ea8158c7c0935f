"""End-to-end: writes on a primary reach a replica through capture, the log and apply."""

from __future__ import annotations

from litecluster.engine.verify import verify_replica
from support import Cluster, checksum


def test_writes_replicate_and_files_match(cluster: Cluster) -> None:
    rep = cluster.add_replica()
    w = cluster.writer
    w.execute("CREATE TABLE kv(k TEXT PRIMARY KEY, v BLOB)")
    for i in range(200):
        w.execute(
            "INSERT OR REPLACE INTO kv VALUES (?, ?)", (f"k{i % 37}", bytes([i % 251]) * (i * 13))
        )
    assert cluster.sync() > 0
    assert rep.position == cluster.capture.position
    assert checksum(rep.db_path) == checksum(cluster.primary_path)
    result = verify_replica(cluster.primary_path, rep.db_path)
    assert result.equal, result
    assert result.replica_position == cluster.capture.position
