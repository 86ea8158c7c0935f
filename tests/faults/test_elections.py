"""Elections with nodes that are between roles: a whole cluster restarted with no leader
elects a node that continues the cluster's txids from what its files hold; nobody sets
identical data aside; in synchronous mode the new primary is not blocked by its own floor."""

from __future__ import annotations

from pathlib import Path

from litecluster.cli.localcluster import LocalNode
from support.ha_cluster import first_primary, keys, wait_for_writable_primary, write
from support.nodes import Nodes, wait_converged


def _txid(node: LocalNode) -> int:
    return int(node.status(timeout=2)["databases"]["main"]["txid"])


def _diverged(node: LocalNode) -> list[Path]:
    d = node.data_dir / "diverged"
    return sorted(d.iterdir()) if d.exists() else []


def _restart_all(members: list[LocalNode]) -> None:
    for m in members:
        assert m.stop() == 0, m.log_text[-2000:]
    for m in members:
        m.start(wait=False)
    for m in members:
        m.wait_ready()


def _check_restart(members: list[LocalNode]) -> None:
    primary = first_primary(members)
    acked = [f"k{i}" for i in range(20) if write(primary, f"k{i}")]
    assert len(acked) == 20
    others = [m for m in members if m is not primary]
    wait_converged(primary, others)
    before = _txid(primary)
    _restart_all(members)
    # The new primary writes on from the cluster's position, not from zero.
    new = wait_for_writable_primary(members, "after")
    assert _txid(new) > before
    replicas = [m for m in members if m is not new]
    wait_converged(new, replicas)
    for m in members:
        assert keys(m) >= set(acked) | {"after"}, m.node_id
        # Everyone held the same data: nothing was divergent, nothing was set aside.
        assert _diverged(m) == [], (m.node_id, m.log_text[-3000:])
        assert "replica.diverged" not in m.log_text, m.node_id


def test_a_restarted_cluster_continues_its_history(ha: tuple[Nodes, list[LocalNode]]) -> None:
    _check_restart(ha[1])


def test_a_restarted_synchronous_cluster_elects_a_writable_primary(
    sync_ha: list[LocalNode],
) -> None:
    _check_restart(sync_ha)
