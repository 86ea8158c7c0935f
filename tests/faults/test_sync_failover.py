"""Synchronous mode: no acknowledged write is lost when the primary is killed under load."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable

from litecluster.cli.localcluster import LocalNode
from support.checker import check, check_recoveries, epoch_of, healed, recovery
from support.ha_cluster import execute, first_primary
from support.history import Load


def test_kill_9_under_load_through_replicas_in_sync_mode_loses_no_acknowledged_write(
    sync_ha: list[LocalNode], fault_report: Callable[[str, object], None]
) -> None:
    """Half the writers send to the replicas, which forward to the primary: a forwarded write
    whose primary dies is indeterminate, never reported as done unless the new primary has it."""
    members = sync_ha
    first = first_primary(members, with_replicas=False)
    old_epoch = epoch_of(first)
    with Load(members, set_threads=1, bank_threads=1, via_replicas=2) as load:
        load.wait_acks(50)
        first.kill()
        killed = time.monotonic()
        load.wait_acks(50, after=killed)
    history = load.history
    assert {o.node for o in history.ok() if o.node != o.acked_by}, "nothing was forwarded"
    new = healed([m for m in members if m is not first])
    assert new is not first
    check(history, new, sync=True)
    took = recovery(history, killed, old_epoch)
    fault_report("recovery seconds", round(took, 2))
    check_recoveries([took])


def test_sync_mode_does_not_acknowledge_a_write_no_replica_holds(sync_ha: list[LocalNode]) -> None:
    members = sync_ha
    primary = first_primary(members, with_replicas=False)
    replicas = [m for m in members if m is not primary]
    for r in replicas:
        r.signal(signal.SIGSTOP)
    try:
        started = time.monotonic()
        r = execute(primary, [["INSERT INTO t(k) VALUES(?)", "unacked"]], timeout=30)
        assert r.status_code == 503, r.text
        assert "indeterminate" in r.json()["error"]
        assert time.monotonic() - started >= 2.5  # it waited for the replicas (sync_timeout 3)
    finally:
        for rep in replicas:
            rep.signal(signal.SIGCONT)
