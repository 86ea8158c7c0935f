"""Checks of a recorded history (history.py) against what the cluster holds once healed.

- ``check_epochs``: every acknowledgement names its primary and epoch; at most one node
  acknowledges in any epoch; no write is acknowledged by a node after a newer epoch was
  acknowledged elsewhere (for acknowledged a, b with b.epoch > a.epoch, never
  b.complete < a.invoke).
- ``check_data``: nothing refused was applied; every ledger row is a transfer that was sent,
  with its amounts; the total balance is unchanged and the balances are the initial ones with
  the ledger rows present replayed; acknowledged writes that are missing are returned (the
  caller asserts there are none in synchronous mode, and reports how many in asynchronous mode).
- ``healed``: the cluster converged: one primary, every other running node its replica, the
  same checksum everywhere (nodes.wait_converged) and ``PRAGMA integrity_check`` ok on each.
- ``recovery``: seconds from the fault to the first write acknowledged in a newer epoch;
  ``check_recoveries`` holds them to the acceptance bound, twice the lease TTL.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import httpx

from litecluster.cli.localcluster import LocalNode
from support import wait_for
from support.ha_cluster import TTL, roles, the_primary
from support.history import ACCOUNTS, FAILED, INITIAL_BALANCE, History, Op
from support.nodes import wait_converged


@dataclass
class Data:
    keys: set[str]
    balances: dict[int, int]
    ledger: dict[str, tuple[int, int, int]]


def query(node: LocalNode, sql: str) -> list[list[Any]]:
    r = httpx.get(f"http://{node.http}/db/query", params={"q": sql, "level": "none"}, timeout=10)
    r.raise_for_status()
    result = r.json()["results"][0]
    assert "error" not in result, result
    rows: list[list[Any]] = result.get("values", [])
    return rows


def read_data(node: LocalNode) -> Data:
    return Data(
        keys={row[0] for row in query(node, "SELECT k FROM t")},
        balances={a: b for a, b in query(node, "SELECT id, balance FROM accounts")},
        ledger={i: (s, d, a) for i, s, d, a in query(node, "SELECT * FROM ledger")},
    )


def check_epochs(history: History) -> None:
    ok = history.ok()
    unnamed = [o for o in ok if o.epoch is None or o.acked_by is None]
    assert not unnamed, f"acknowledged without a position: {unnamed[:3]}"
    nodes_by_epoch: dict[int, set[str]] = defaultdict(set)
    for o in ok:
        nodes_by_epoch[o.epoch or 0].add(o.acked_by or "")
    shared = {e: sorted(n) for e, n in nodes_by_epoch.items() if len(n) > 1}
    assert not shared, f"several nodes acknowledged writes in one epoch: {shared}"
    # Walking the epochs from the newest: the earliest completion of any newer acknowledgement.
    newer_complete = float("inf")
    for epoch in sorted(nodes_by_epoch, reverse=True):
        in_epoch = [o for o in ok if o.epoch == epoch]
        stale = [o for o in in_epoch if o.invoke > newer_complete]
        assert not stale, (
            f"{len(stale)} writes acknowledged in epoch {epoch} were sent after a newer epoch "
            f"had acknowledged one ({newer_complete:.3f}): {stale[:3]}"
        )
        newer_complete = min(newer_complete, *(o.complete for o in in_epoch))


def check_data(history: History, data: Data) -> list[Op]:
    """Assert the invariants that hold in both modes; return the acknowledged writes that are
    missing."""
    ops = history.ops
    refused = [o for o in ops if o.outcome == FAILED and _present(o, data)]
    assert not refused, f"{len(refused)} refused writes were applied: {refused[:3]}"
    sent = {o.id: o for o in ops if o.workload == "bank"}
    unknown = [i for i in data.ledger if i not in sent]
    assert not unknown, f"ledger rows no transfer wrote: {unknown[:5]}"
    wrong = [i for i, row in data.ledger.items() if sent[i].transfer != row]
    assert not wrong, f"ledger rows that differ from their transfer: {wrong[:5]}"
    assert sum(data.balances.values()) == ACCOUNTS * INITIAL_BALANCE, data.balances
    replayed = dict.fromkeys(range(ACCOUNTS), INITIAL_BALANCE)
    for src, dst, amount in data.ledger.values():
        replayed[src] -= amount
        replayed[dst] += amount
    assert data.balances == replayed, "balances differ from the ledger replayed"
    return [o for o in history.ok() if not _present(o, data)]


def _present(op: Op, data: Data) -> bool:
    return op.id in (data.ledger if op.workload == "bank" else data.keys)


def check(history: History, final: LocalNode, *, sync: bool) -> list[Op]:
    """Every check of a run; returns the acknowledged writes lost (none in synchronous mode)."""
    assert history.ok(), f"nothing was acknowledged: {history.summary()}"
    check_epochs(history)
    lost = check_data(history, read_data(final))
    if sync:
        assert not lost, f"{len(lost)} acknowledged writes lost: {lost[:5]}"
    return lost


def recovery(history: History, fault_at: float, old_epoch: int) -> float:
    """Seconds from the fault to the first write acknowledged by a primary of a newer epoch."""
    first = history.first_ack_after(fault_at, newer_than=old_epoch)
    assert first is not None, f"no write acknowledged after the fault: {history.summary()}"
    return first.complete - fault_at


def check_recoveries(recoveries: list[float]) -> None:
    """Every recovery under twice the lease TTL (the acceptance bound). Run it last: the checks
    of safety come first."""
    assert max(recoveries) < 2 * TTL, f"recovery at or above 2 x TTL ({TTL} s): {recoveries}"


def epoch_of(node: LocalNode) -> int:
    return int(node.status()["node"]["epoch"])


def healed(members: list[LocalNode], timeout: float = 60) -> LocalNode:
    """Once the cluster converged: its primary (every other running node follows it, holds the
    same pages, and every file passes integrity_check)."""
    running = [m for m in members if m.running]

    def settled() -> bool:
        r = roles(running)
        return sum(v == "primary" for v in r.values()) == 1 and all(
            v in ("primary", "replica") for v in r.values()
        )

    wait_for(settled, timeout, "one primary, every other node its replica")
    primary = the_primary(running)
    assert primary is not None
    wait_converged(primary, [m for m in running if m is not primary], timeout=timeout)
    for m in running:
        assert query(m, "PRAGMA integrity_check") == [["ok"]], m.node_id
    return primary
