"""kill -9 of the primary, again and again, under the SET and BANK workloads in synchronous
mode: no acknowledged write is lost, each failover acknowledges writes again within twice the
lease TTL, and the cluster converges."""

from __future__ import annotations

import time
from collections.abc import Callable

from litecluster.cli.localcluster import LocalNode
from support import wait_for
from support.checker import check, check_recoveries, healed, recovery
from support.ha_cluster import first_primary
from support.history import Load

KILLS = 10


def test_ten_kills_of_the_primary_lose_no_acknowledged_write(
    sync_ha: list[LocalNode], fault_report: Callable[[str, object], None]
) -> None:
    members = sync_ha
    first_primary(members, with_replicas=False)
    recoveries = []
    with Load(members) as load:
        for _ in range(KILLS):
            load.wait_acks(20)
            last = load.history.ok()[-1]  # the current primary: it just acknowledged a write
            victim = next(m for m in members if m.node_id == last.acked_by)
            assert last.epoch is not None
            victim.kill()
            killed = time.monotonic()
            wait_for(
                lambda e=last.epoch, k=killed: load.history.first_ack_after(k, newer_than=e)
                is not None, 60, "a write acknowledged by a new primary",
            )  # fmt: skip
            recoveries.append(recovery(load.history, killed, last.epoch))
            victim.start()
    history = load.history
    check(history, healed(members), sync=True)
    fault_report("recovery seconds", [round(r, 2) for r in recoveries])
    fault_report("operations", history.summary())
    check_recoveries(recoveries)
