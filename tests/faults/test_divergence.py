"""A deposed primary whose last writes reached no replica: on rejoin it sets that divergent
tail aside (a SQLite file in its data directory, named in its log) and follows the new
primary's history."""

from __future__ import annotations

import sqlite3  # the test process opens only the set-aside copy, never a node's live file
from pathlib import Path

from litecluster.cli.localcluster import LocalNode
from support import wait_for
from support.etcd_server import EtcdServer
from support.ha_cluster import (
    TTL,
    execute,
    first_primary,
    keys,
    roles,
    wait_for_writable_primary,
    write,
)
from support.nodes import Nodes, wait_converged


def _diverge(members: list[LocalNode]) -> tuple[LocalNode, LocalNode, list[str]]:
    """The old primary, the new one, and the tail of writes only the old one acknowledged."""
    old = first_primary(members)
    replicas = [m for m in members if m is not old]
    assert write(old, "shared")
    wait_converged(old, replicas)
    # Asynchronous mode: with the replicas down (killed, so that no record waits in a socket
    # buffer of theirs), the primary still acknowledges writes no other node receives.
    for r in replicas:
        r.kill()
    tail = [f"tail{i}" for i in range(5) if write(old, f"tail{i}")]
    assert len(tail) == 5
    old.kill()
    for r in replicas:
        r.start(wait=False)
    return old, wait_for_writable_primary(replicas, "after"), tail


def test_a_deposed_primary_sets_its_divergent_tail_aside_and_resyncs(
    ha: tuple[Nodes, list[LocalNode]],
) -> None:
    _, members = ha
    old, new, tail = _diverge(members)
    assert write(new, "after2")
    old.start(wait=False)
    wait_for(lambda: roles([old]).get(old.node_id) == "replica", 60, "the old primary to follow")
    wait_converged(new, members)
    present = keys(old)
    assert {"shared", "after", "after2"} <= present
    assert not set(tail) & present, "the divergent tail is not part of the new history"

    kept = sorted((old.data_dir / "diverged").glob("main.*.db"))
    assert len(kept) == 1, kept
    assert "replica.diverged db=main" in old.log_text
    assert kept[0].name in old.log_text
    with sqlite3.connect(f"file:{kept[0]}?mode=ro", uri=True) as conn:
        held = {row[0] for row in conn.execute("SELECT k FROM t")}
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert set(tail) | {"shared"} <= held
    assert "after" not in held


def test_a_divergent_tail_below_the_new_primarys_retention_is_still_set_aside(
    tmp_path: Path,
) -> None:
    # The new primary writes on until its txlog no longer holds the txids of the old
    # primary's tail: no record to compare with, so the rejoining node's epoch decides, and
    # the copy it cannot prove clean is kept rather than overwritten.
    etcd = EtcdServer(tmp_path)
    n = Nodes(tmp_path)
    env = {"LITECLUSTER_SEGMENT_BYTES": "65536", "LITECLUSTER_RETENTION_BYTES": "65536",
           "LITECLUSTER_RETENTION_INTERVAL": "0.2"}  # fmt: skip
    try:
        args = ["--etcd", etcd.url, "--lease-ttl", str(TTL)]
        members = [n.node(f"n{i}", args=args, env=env, start=False) for i in range(1, 4)]
        for m in members:
            m.start(wait=False)
        for m in members:
            m.wait_ready()
        old, new, tail = _diverge(members)
        old_txid = int(new.status()["databases"]["main"]["txid"]) + len(tail)
        blob = "x" * 3000
        for i in range(120):
            execute(new, [["INSERT INTO t(k) VALUES(?)", f"fill{i}-{blob}"]])

        def first_txid() -> int:
            return int(new.status()["databases"]["main"]["txlog_first_txid"])

        wait_for(lambda: first_txid() > old_txid, 30, "retention past the old tail")
        old.start(wait=False)
        wait_for(lambda: roles([old]).get(old.node_id) == "replica", 60, "the old primary")
        wait_converged(new, members)
        assert not set(tail) & keys(old)
        # Its epoch is the one the new primary was promoted from, and its txid is past that
        # point: proven divergent, not merely unverifiable.
        assert "replica.diverged db=main" in old.log_text
        kept = sorted((old.data_dir / "diverged").glob("main.*.db"))
        assert len(kept) == 1, (kept, old.log_text[-3000:])
        with sqlite3.connect(f"file:{kept[0]}?mode=ro", uri=True) as conn:
            held = {row[0] for row in conn.execute("SELECT k FROM t")}
        assert set(tail) <= held
    finally:
        n.close()
        etcd.stop()
