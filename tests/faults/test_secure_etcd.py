"""Failover when etcd is run as in production: https only, client certificates required,
authentication on with tokens that expire, and an etcd restart (which forgets every token)."""

from __future__ import annotations

import time
from collections.abc import Callable

from litecluster.cli.localcluster import LocalNode
from support import wait_for
from support.checker import check, check_recoveries, healed, recovery
from support.etcd_server import SecureEtcd
from support.ha_cluster import first_primary, roles
from support.history import Load

Report = Callable[[str, object], None]


def test_sync_failover_and_an_etcd_restart_over_tls_with_etcd_auth(
    secure_sync_ha: tuple[list[LocalNode], SecureEtcd], fault_report: Report
) -> None:
    members, etcd = secure_sync_ha
    first_primary(members)
    with Load(members) as load:
        load.wait_acks(20)
        last = load.history.ok()[-1]
        assert last.epoch is not None
        victim = next(m for m in members if m.node_id == last.acked_by)
        victim.kill()
        killed = time.monotonic()
        wait_for(lambda: load.history.first_ack_after(killed, newer_than=last.epoch) is not None,
                 60, "a write acknowledged by a new primary")  # fmt: skip
        took = recovery(load.history, killed, last.epoch)
        victim.start()
        wait_for(lambda: roles([victim])[victim.node_id] == "replica", 30, "the rejoin")
        # A restarted etcd knows none of the nodes' tokens: they authenticate again.
        etcd.stop()
        etcd.start()
        restarted = time.monotonic()
        wait_for(lambda: load.history.first_ack_after(restarted, newer_than=0) is not None, 60,
                 "a write acknowledged after etcd's restart")  # fmt: skip
        load.wait_acks(10)
    assert (load.history.ok()[-1].epoch or 0) > last.epoch
    lost = check(load.history, healed(members), sync=True)
    assert not lost, f"acknowledged writes lost: {lost[:5]}"
    fault_report("secure etcd: recovery seconds", round(took, 2))
    check_recoveries([took])
    for m in members:
        assert "etcd refused the credentials" not in m.log_text
