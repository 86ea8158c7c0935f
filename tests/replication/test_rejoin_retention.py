"""Rejoining a new primary whose txlog no longer holds the rejoining node's position.

No record is left to compare with, so the position's epoch decides (node/lineage.py): a
replica that merely lagged at the failover is a prefix of the new history and just installs a
snapshot; the deposed primary, whose last writes reached no replica, holds records of its
epoch past the point where the new primary left that epoch, and sets them aside first. A
static cluster and ``litecluster promote`` make the failover without etcd.
"""

from __future__ import annotations

import sqlite3  # the test process opens only the set-aside copy, never a node's live file
import subprocess
import sys
from pathlib import Path

import httpx

from litecluster.cli.localcluster import LocalNode
from support.nodes import Nodes, wait_converged

SMALL_LOG = {
    "LITECLUSTER_SEGMENT_BYTES": "65536",
    "LITECLUSTER_RETENTION_BYTES": "65536",
    "LITECLUSTER_RETENTION_INTERVAL": "0.2",
}


def _insert(node: LocalNode, key: str) -> int:
    """Insert ``key``; the txid it was acknowledged at."""
    r = httpx.post(
        f"http://{node.http}/db/execute", json=[["INSERT INTO t VALUES(?)", key]], timeout=10
    )
    assert r.status_code == 200, r.text
    return int(r.json()["position"]["txid"])


def _keys(node: LocalNode) -> set[str]:
    got = httpx.get(f"http://{node.http}/db/query", params={"q": "SELECT k FROM t"}).json()
    return {row[0] for row in got["results"][0].get("values", [])}


def _first_txid(node: LocalNode) -> int:
    return int(node.status()["databases"]["main"]["txlog_first_txid"])


def _promote(node: LocalNode) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "litecluster", "promote", "--http", node.http],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr


def _three_nodes(n: Nodes) -> tuple[LocalNode, LocalNode, LocalNode]:
    """A primary and two replicas holding ``shared0..4``; the third (the laggard) is then
    killed, behind every later failover with nothing of its own."""
    p1 = n.node("p1", env=SMALL_LOG)
    r1, lag = n.node("r1", p1, env=SMALL_LOG), n.node("r2", p1, env=SMALL_LOG)
    r = httpx.post(f"http://{p1.http}/db/execute", json=["CREATE TABLE t(k TEXT)"])
    assert r.status_code == 200
    for i in range(5):
        _insert(p1, f"shared{i}")
    wait_converged(p1, [r1, lag])
    lag.kill()
    return p1, r1, lag


def _fill_past(primary: LocalNode, txid: int) -> None:
    """Write until the primary's txlog no longer holds ``txid`` (retention)."""
    blob = "x" * 3000
    i = 0
    while _first_txid(primary) <= txid:
        _insert(primary, f"fill{i}-{blob}")
        i += 1
        assert i < 2000, "retention never moved past the txid"


def _assert_outcomes(lag: LocalNode, deposed: LocalNode, tail: list[str]) -> None:
    """The laggard only installed a snapshot; the deposed primary's tail was kept aside."""
    assert {f"shared{i}" for i in range(5)} <= _keys(lag)
    assert "snapshot.installed db=main" in lag.log_text
    assert not (lag.data_dir / "diverged").exists(), "a clean replica is not set aside"
    assert "set_aside" not in lag.log_text
    assert "replica.diverged" not in lag.log_text

    assert not set(tail) & _keys(deposed)
    assert "replica.diverged db=main" in deposed.log_text, "proven, not merely unverified"
    kept = sorted((deposed.data_dir / "diverged").glob("main.*.db"))
    assert len(kept) == 1, kept
    with sqlite3.connect(f"file:{kept[0]}?mode=ro", uri=True) as conn:
        held = {row[0] for row in conn.execute("SELECT k FROM t")}
    assert set(tail) <= held


def test_below_retention_a_lagging_replica_resyncs_and_a_divergent_tail_is_set_aside(
    tmp_path: Path,
) -> None:
    n = Nodes(tmp_path)
    try:
        old, r1, lag = _three_nodes(n)
        for i in range(5):
            _insert(old, f"more{i}")
        wait_converged(old, [r1])
        r1.kill()  # killed: no record of the tail may wait in one of its socket buffers
        tail = [f"tail{i}" for i in range(5)]
        last = max(_insert(old, key) for key in tail)  # asynchronous mode acknowledges them
        old.kill()

        r1.start()
        _promote(r1)
        _fill_past(r1, last)  # no record of the new log is left at the tail's txids

        for node in (old, lag):
            node.primary = r1.listen
            node.start()
        wait_converged(r1, [old, lag])
        _assert_outcomes(lag, old, tail)
    finally:
        n.close()


def test_across_two_failovers_and_a_restart_the_epoch_history_tells_clean_from_diverged(
    tmp_path: Path,
) -> None:
    """The promoting node's memory is gone (restarted) and its txlog holds only its own epoch:
    only the epoch history (node/history.py), kept by replicas and carried by snapshots, can
    tell a replica that lagged two failovers ago from a deposed primary's tail."""
    n = Nodes(tmp_path)
    try:
        p1, r1, lag = _three_nodes(n)
        for i in range(5):
            _insert(p1, f"first{i}")
        wait_converged(p1, [r1])
        p1.kill()

        _promote(r1)  # failover 1
        p1.primary = r1.listen
        p1.start()
        for i in range(5):
            _insert(r1, f"second{i}")
        wait_converged(r1, [p1])
        p1.kill()
        tail = [f"tail{i}" for i in range(5)]
        last = max(_insert(r1, key) for key in tail)  # acknowledged, held by r1 alone
        r1.kill()

        p1.start()  # a replica of the dead r1, promoted without its tail: failover 2
        _promote(p1)
        _fill_past(p1, last)
        p1.kill()
        p1.primary = None  # restarted as the primary: nothing left in memory of its promotion
        p1.start()

        for node in (r1, lag):
            node.primary = p1.listen
            node.start()
        wait_converged(p1, [r1, lag])
        _assert_outcomes(lag, r1, tail)  # lagged two failovers ago: clean, proven
    finally:
        n.close()
