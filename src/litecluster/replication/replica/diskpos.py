"""What a node's files hold, read from disk: each database's verified position.

A node between roles (just started, or a primary that stepped down) has no follower or
capture to ask, yet the election needs its positions: a node that published none could be
promoted and restart the cluster's txids from zero, and the others would then set their
identical data aside as divergent. The position of each database file is therefore read the
way a replica opens it: the replica position file checked against the file's checksum, or, for
a node that was primary (its position file is stale by then), the last record of its own
txlog, checked the same way. A file matching neither is at position 0 and flagged diverged.
"""

from __future__ import annotations

import logging
from pathlib import Path

from litecluster.engine.apply import Replica, ReplicaConfig
from litecluster.engine.position import Position
from litecluster.engine.txlog import TxLog
from litecluster.replication.config import DB_NAME

log = logging.getLogger("litecluster.node")


def open_replica(data_dir: Path, name: str, *, durable: bool) -> Replica:
    """Open ``DIR/db/NAME.db`` as a replica and settle its position (see the module doc)."""
    replica = Replica(data_dir / "db" / f"{name}.db", ReplicaConfig(durable=durable))
    try:
        if replica.diverged is None and replica.position.txid > 0:
            return replica
        logdir = data_dir / "txlog" / name
        if logdir.is_dir() and any(logdir.glob("*.txlog")):
            with TxLog(logdir, readonly=True) as txlog:
                last = txlog.last()
            if last is not None:
                pos = Position(last.epoch, last.txid, last.post_checksum)
                if replica.adopt(pos):
                    log.info("replica.position_from_txlog db=%s position=%s", name, pos)
        return replica
    except BaseException:
        replica.close()
        raise


def database_names(data_dir: Path) -> list[str]:
    """The databases a data directory holds, by name."""
    return sorted(p.stem for p in (data_dir / "db").glob("*.db") if DB_NAME.match(p.stem))


def positions_on_disk(data_dir: Path, *, durable: bool) -> dict[str, Position]:
    """Each database's verified position (blocking: it reads every file once)."""
    out: dict[str, Position] = {}
    for name in database_names(data_dir):
        replica = open_replica(data_dir, name, durable=durable)
        try:
            out[name] = replica.position
        finally:
            replica.close()
    return out
