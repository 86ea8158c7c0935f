"""The local follower: a replica kept current from the txlog in a background thread."""

from __future__ import annotations

from litecluster.engine.follow import LocalFollower
from litecluster.engine.sqlite import connect
from litecluster.errors import LocalWriteError
from support import Cluster, checksum, wait_for


def test_follower_keeps_up_and_stops_with_the_reason(cluster: Cluster) -> None:
    rep = cluster.add_replica()
    fol = LocalFollower(rep, cluster.log, batch=7)
    cluster.capture.start()
    fol.start()
    try:
        w = cluster.writer
        w.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)")
        for _ in range(100):
            with cluster.capture.writer_lock:
                w.execute("INSERT INTO t(v) VALUES (randomblob(300))")
            cluster.capture.notify()
            fol.notify()
        cluster.capture.poll()  # everything committed is now in the log (the thread may lag)
        wait_for(lambda: rep.position == cluster.capture.position, what="follower to catch up")
        assert checksum(rep.db_path) == checksum(cluster.primary_path)
        assert fol.error is None

        intruder = connect(rep.db_path)
        intruder.execute("INSERT INTO t(v) VALUES (x'00')")
        intruder.close()
        with cluster.capture.writer_lock:
            w.execute("INSERT INTO t(v) VALUES (x'01')")
        cluster.capture.notify()
        wait_for(lambda: fol.error is not None, what="follower to stop")
        assert isinstance(fol.error, LocalWriteError)
        assert rep.position.txid < cluster.capture.position.txid
    finally:
        fol.stop()
        cluster.capture.stop()


def test_catch_up_applies_everything_in_batches(cluster: Cluster) -> None:
    rep = cluster.add_replica()
    cluster.writer.execute("CREATE TABLE t(v)")
    for i in range(50):
        cluster.writer.execute("INSERT INTO t VALUES (?)", (i,))
    cluster.capture_all()
    behind = cluster.log.durable_txid - rep.position.txid
    assert LocalFollower(rep, cluster.log, batch=8).catch_up() == behind
    assert rep.position == cluster.capture.position
