"""Synchronous mode's promotion rule (N-K+1) with real processes: a replica that may lack
acknowledged writes is never promoted, and one that left the sync set does not block."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from litecluster.cli.localcluster import LocalNode
from support import wait_for
from support.etcd_server import EtcdServer
from support.ha_cluster import TTL, first_primary, keys, wait_for_writable_primary, write
from support.nodes import Nodes, wait_converged


def _leadership(node: LocalNode) -> dict[str, object]:
    got = node.status(timeout=2).get("leadership") or {}
    assert isinstance(got, dict)
    return got


def _sync_set(primary: LocalNode) -> list[str] | None:
    got = _leadership(primary).get("sync_set")
    return sorted(got) if isinstance(got, list) else None


def _with_full_sync_set(members: list[LocalNode]) -> tuple[LocalNode, LocalNode, LocalNode]:
    """The primary and its two replicas (by id), once both are in the published sync set."""
    primary = first_primary(members)
    r1, r2 = sorted((m for m in members if m is not primary), key=lambda m: m.node_id)
    wait_for(lambda: _sync_set(primary) == sorted([r1.node_id, r2.node_id]), 30, "the sync set")
    return primary, r1, r2


def test_a_lone_replica_is_not_promoted_when_the_other_may_hold_acknowledged_writes(
    sync_ha: list[LocalNode],
) -> None:
    primary, r1, r2 = _with_full_sync_set(sync_ha)
    # `status`, asked of a replica, shows the leader, its epoch, lease and sync set.
    cli = [sys.executable, "-m", "litecluster", "status", "--http", r2.http]
    lead = json.loads(subprocess.run([*cli, "--json"], capture_output=True, text=True,
                                     timeout=30, check=True).stdout)["leadership"]  # fmt: skip
    assert lead["leader_id"] == primary.node_id
    assert lead["epoch"] == primary.status()["node"]["epoch"]
    assert 0 < lead["lease_left"] <= 2
    assert lead["sync_set"] == sorted([r1.node_id, r2.node_id])
    text = subprocess.run(cli, capture_output=True, text=True, timeout=30, check=True).stdout
    assert f"leader {primary.node_id} " in text
    assert f"sync K=1 set [{r1.node_id}, {r2.node_id}]" in text
    acked = [f"k{i}" for i in range(30) if write(primary, f"k{i}")]
    assert len(acked) == 30
    primary.kill()
    r1.kill()
    # With K=1 each acknowledged write is certain to be on one of r1, r2 only: r2 alone cannot
    # know it holds them all, so it waits (and says why) instead of taking over.
    wait_for(lambda: _leadership(r2).get("election_blocked"), 30, "r2 to refuse promotion")
    assert "sync set" in str(_leadership(r2)["election_blocked"])
    assert r2.status(timeout=2)["node"]["role"] != "primary"
    r1.start(wait=False)
    new = wait_for_writable_primary([r1, r2], "after")
    assert set(acked) <= keys(new)
    wait_converged(new, [m for m in (r1, r2) if m is not new])


def test_a_replica_gone_before_the_failover_leaves_the_set_and_does_not_block_it(
    sync_ha: list[LocalNode],
) -> None:
    primary, r1, r2 = _with_full_sync_set(sync_ha)
    r1.kill()
    # Writes go on with r2's acknowledgements; once r2 holds everything r1 could have
    # acknowledged, r1 leaves the published set.
    acked = [f"k{i}" for i in range(30) if write(primary, f"k{i}")]
    assert len(acked) == 30
    wait_for(lambda: _sync_set(primary) == [r2.node_id], 30, "r1 to leave the sync set")
    assert write(primary, "last")
    primary.kill()
    wait_for(lambda: r2.status(timeout=2)["node"]["role"] == "primary", 30, "r2's promotion")
    assert set(acked) | {"last"} <= keys(r2)
    # Alone it cannot acknowledge a synchronous write; with r1 back it can.
    r1.start(wait=False)
    assert wait_for_writable_primary([r2], "after") is r2
    wait_converged(r2, [r1])


def test_a_nofailover_replica_never_counts_toward_synchronous_acknowledgement(
    tmp_path: Path,
) -> None:
    # Were n3 in the sync set, a write acknowledged by n3 alone could be held only by a node
    # that may never be promoted, and a failover would then promote nobody.
    etcd = EtcdServer(tmp_path)
    n = Nodes(tmp_path)
    try:
        base = ["--etcd", etcd.url, "--lease-ttl", str(TTL), "--sync-replicas", "1"]
        env = {"LITECLUSTER_SYNC_TIMEOUT": "3"}
        members = [n.node("n1", args=base, env=env, start=False),
                   n.node("n2", args=base, env=env, start=False),
                   n.node("n3", args=[*base, "--nofailover"], env=env, start=False)]  # fmt: skip
        for m in members:
            m.start(wait=False)
        for m in members:
            m.wait_ready()
        primary = first_primary(members)
        assert primary.node_id != "n3"
        (other,) = [m for m in members if m.node_id not in (primary.node_id, "n3")]
        wait_for(lambda: _sync_set(primary) == [other.node_id], 30, "the sync set")
        acked = [f"k{i}" for i in range(10) if write(primary, f"k{i}")]
        assert len(acked) == 10
        assert _sync_set(primary) == [other.node_id]
        primary.kill()
        wait_for(lambda: other.status(timeout=2)["node"]["role"] == "primary", 30, "a promotion")
        assert set(acked) <= keys(other)
        # n3's acknowledgements still do not count: writes wait for the old primary to rejoin.
        primary.start(wait=False)
        assert wait_for_writable_primary([other], "after") is other
    finally:
        n.close()
        etcd.stop()
