"""Real node processes on 127.0.0.1: streaming, catch-up, snapshots, kill -9, status."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from litecluster.engine.sqlite import connect
from support import wait_for
from support.nodes import Nodes, Writer, db_file, position, stats, wait_converged, write


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[Nodes]:
    n = Nodes(tmp_path)
    yield n
    n.close()


def test_continuous_workload_reaches_two_replicas(nodes: Nodes) -> None:
    primary = nodes.node("p1")
    replicas = [nodes.node("r1", primary), nodes.node("r2", primary)]
    writer = Writer(db_file(primary))
    writer.start()
    # Replicas apply while the workload runs, not only at the end.
    wait_for(lambda: all((position(r) or (0,))[0] > 200 for r in replicas), 60, "live apply")
    assert writer.committed > 0
    writer.finish()
    wait_converged(primary, replicas)
    for r in replicas:
        s = stats(r)
        assert s["records_applied"] > 200
        assert s["snapshots_installed"] == 0, "a new empty replica follows the log from txid 1"
    # Replicas serve reads of the data with any SQLite library.
    rows = connect(db_file(replicas[0])).execute("SELECT count(*) FROM items").fetchall()
    assert rows == connect(db_file(primary)).execute("SELECT count(*) FROM items").fetchall()


def test_replica_started_after_10000_records_catches_up_from_the_log(nodes: Nodes) -> None:
    primary = nodes.node("p1")
    assert write(db_file(primary), 10_000) == 10_000
    wait_for(lambda: (position(primary) or (0,))[0] >= 10_000, 60, "capture")
    replica = nodes.node("r1", primary)
    wait_converged(primary, [replica])
    s = stats(replica)
    assert s["snapshots_installed"] == 0
    assert s["records_applied"] >= 10_000


def test_replica_started_after_the_log_was_trimmed_bootstraps_from_a_snapshot(
    nodes: Nodes,
) -> None:
    env = {"LITECLUSTER_SEGMENT_BYTES": "65536", "LITECLUSTER_RETENTION_BYTES": "65536",
           "LITECLUSTER_RETENTION_INTERVAL": "0.1"}  # fmt: skip
    primary = nodes.node("p1", env=env)
    write(db_file(primary), 3000)
    wait_for(lambda: primary.status()["databases"]["main"]["txlog_first_txid"] > 1, 30, "retention")
    replica = nodes.node("r1", primary)
    wait_converged(primary, [replica])
    assert stats(replica)["snapshots_installed"] == 1
    # After the snapshot it streams: later writes arrive as records (fewer than a segment's
    # worth, so that the tiny retention of this test cannot trim them before they are sent).
    write(db_file(primary), 10)
    wait_converged(primary, [replica])
    assert stats(replica)["records_applied"] >= 10


def test_replica_killed_during_snapshot_install_ends_consistent(nodes: Nodes) -> None:
    env = {"LITECLUSTER_SEGMENT_BYTES": "65536", "LITECLUSTER_RETENTION_BYTES": "65536",
           "LITECLUSTER_RETENTION_INTERVAL": "0.1"}  # fmt: skip
    primary = nodes.node("p1", env=env)
    write(db_file(primary), 3000)
    wait_for(lambda: primary.status()["databases"]["main"]["txlog_first_txid"] > 1, 30, "retention")
    crashing = nodes.node(
        "r1", primary, env={"LITECLUSTER_CRASHPOINT": "snapshot.install.before_commit"},
        start=False,
    )  # fmt: skip
    crashing.start(wait=False)
    assert crashing.proc is not None
    assert crashing.proc.wait(60) == -9  # killed itself inside the install transaction
    # Restarted without the crash point, on the same files: ends identical to the primary.
    replica = nodes.node("r1", primary)
    wait_converged(primary, [replica])


def test_primary_killed_and_restarted_resumes_the_same_stream(nodes: Nodes) -> None:
    primary = nodes.node("p1")
    replicas = [nodes.node("r1", primary), nodes.node("r2", primary)]
    writer = Writer(db_file(primary))
    writer.start()
    wait_for(lambda: all((position(r) or (0,))[0] > 100 for r in replicas), 60, "streaming")
    # The application stops writing and the primary dies at once, while commits are still
    # being captured. (An application that kept writing, and checkpointing, while no node runs
    # would restart the WAL under it: the node detects that and replicas re-snapshot.)
    writer.finish()
    primary.kill()
    primary.start()  # same ports, so the replicas find it again
    write(db_file(primary), 500)
    wait_converged(primary, replicas)
    for r in replicas:
        s = stats(r)
        assert s["snapshots_installed"] == 0, "the stream continued without a gap"
        assert s["reconnects"] >= 1


def test_status_json_lists_every_node_with_position_and_lag(nodes: Nodes) -> None:
    primary = nodes.node("p1")
    replicas = [nodes.node("r1", primary), nodes.node("r2", primary)]
    write(db_file(primary), 100)
    wait_converged(primary, replicas)
    for asked in (primary, replicas[1]):
        out = subprocess.run(
            [sys.executable, "-m", "litecluster", "status", "--http", asked.http, "--json"],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        view = json.loads(out.stdout)
        by_node = {row["node_id"]: row for row in view["nodes"]}
        assert set(by_node) == {"p1", "r1", "r2"}
        head = position(primary)
        assert head is not None
        for node_id in ("r1", "r2"):
            assert by_node[node_id]["txid"] == head[0]
            assert by_node[node_id]["lag_records"] == 0
            assert by_node[node_id]["state"] == "streaming"
        assert by_node["p1"]["role"] == "primary"
    replicas[0].kill()
    write(db_file(primary), 10)
    table = subprocess.run(
        [sys.executable, "-m", "litecluster", "status", "--http", primary.http],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    r1 = next(line for line in table.splitlines() if line.startswith("r1 "))
    assert "disconnected" in r1


def test_database_created_on_the_primary_appears_on_replicas(nodes: Nodes) -> None:
    primary = nodes.node("p1")
    replica = nodes.node("r1", primary)
    conn = connect(db_file(primary, "flags"))
    conn.execute("PRAGMA journal_mode=WAL").fetchall()
    conn.execute("CREATE TABLE flags(name TEXT PRIMARY KEY, on_ INTEGER)")
    conn.execute("INSERT INTO flags VALUES ('dark_mode', 1)")
    conn.close()
    wait_for(lambda: position(replica, "flags") is not None, 30, "the new database")
    wait_converged(primary, [replica], "flags")
    got = connect(db_file(replica, "flags")).execute("SELECT * FROM flags").fetchall()
    assert got == [("dark_mode", 1)]


def test_sigterm_stops_cleanly_and_keeps_every_commit(nodes: Nodes) -> None:
    primary = nodes.node("p1")
    replica = nodes.node("r1", primary)
    write(db_file(primary), 300)
    assert replica.stop() == 0
    assert primary.stop() == 0
    assert "node.stopped" in primary.log_text
    assert not (primary.data_dir / "node.addr").exists()
    # Restarted, both continue where they were.
    primary.start()
    replica.start()
    write(db_file(primary), 10)
    wait_converged(primary, [replica])
    assert stats(replica)["snapshots_installed"] == 0


def test_a_hung_replica_is_dropped_and_resnapshots_once_past_retention(nodes: Nodes) -> None:
    env = {"LITECLUSTER_SEGMENT_BYTES": "65536", "LITECLUSTER_RETENTION_BYTES": "65536",
           "LITECLUSTER_RETENTION_INTERVAL": "0.1"}  # fmt: skip
    primary = nodes.node("p1", env=env)
    healthy, hung = nodes.node("r1", primary), nodes.node("r2", primary)
    write(db_file(primary), 50)
    wait_converged(primary, [healthy, hung])
    hung.signal(signal.SIGSTOP)
    try:
        # The primary drops the silent replica instead of buffering for it ...
        wait_for(
            lambda: any(r["node_id"] == "r2" and r["state"] == "disconnected"
                        for r in primary.status()["replicas"]),
            30, "the hung replica to be dropped",
        )  # fmt: skip
        # ... keeps serving the others, and trims its log past the hung replica's position.
        write(db_file(primary), 3000)
        wait_converged(primary, [healthy])
        wait_for(lambda: primary.status()["databases"]["main"]["txlog_first_txid"] > 60, 30, "trim")
    finally:
        hung.signal(signal.SIGCONT)
    wait_converged(primary, [healthy, hung])
    assert stats(hung)["snapshots_installed"] == 1


def test_metrics_endpoint_reports_lag_shipping_and_txlog_size(nodes: Nodes) -> None:
    primary = nodes.node("p1")
    replica = nodes.node("r1", primary)
    write(db_file(primary), 100)
    wait_converged(primary, [replica])
    text = httpx.get(f"http://{primary.http}/metrics", timeout=5).text
    metrics = {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line and not line.startswith("#")
    }
    assert metrics['litecluster_replication_lag_records{db="main",replica="r1"}'] == 0
    assert metrics["litecluster_records_shipped_total"] >= 100
    assert metrics['litecluster_txlog_bytes{db="main"}'] > 0
    assert metrics["litecluster_role_primary"] == 1
    rtext = httpx.get(f"http://{replica.http}/metrics", timeout=5).text
    assert "litecluster_records_applied_total" in rtext
    assert "litecluster_role_primary 0.0" in rtext


def test_replica_refuses_a_primary_of_an_older_epoch_and_a_replica_posing_as_primary(
    nodes: Nodes,
) -> None:
    primary = nodes.node("p1", args=["--epoch", "3"])
    replica = nodes.node("r1", primary)
    write(db_file(primary), 20)
    wait_converged(primary, [replica])
    assert replica.status()["node"]["epoch"] == 3
    before = position(replica)
    # A stale primary (another data directory, epoch 1) comes up on the same address.
    primary.stop()
    stale = nodes.node("old", args=["--epoch", "1", "--listen", primary.listen])
    write(db_file(stale), 5)
    wait_for(lambda: "epoch is older than one already seen" in replica.log_text, 30, "refusal")
    assert position(replica) == before, "nothing from the stale primary was applied"
    # A node that points at a replica is told who the primary is, and gets nothing.
    chained = nodes.node("r2", replica)
    wait_for(lambda: "not_primary" in chained.log_text or "primary is" in chained.log_text,
             30, "not-primary refusal")  # fmt: skip
    assert chained.status()["databases"] == {}
    stale.stop()
