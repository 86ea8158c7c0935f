"""Automatic failover through a real etcd under the recorded SET and BANK workloads: kill -9 of
the primary, the zombie (SIGSTOP past the TTL), etcd down past the TTL, planned switchover.
Each run ends with the checks of checker.py."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable

from litecluster.cli.localcluster import LocalNode
from support import wait_for
from support.checker import check, check_recoveries, epoch_of, healed, recovery
from support.etcd_server import EtcdServer
from support.ha_cluster import MARGIN, TTL, execute, first_primary, roles
from support.history import FAILED, OK, Load
from support.nodes import Nodes

Report = Callable[[str, object], None]
ASYNC_KILLS = 3


def _new_epoch_acks(load: Load, since: float, old_epoch: int) -> None:
    wait_for(lambda: load.history.first_ack_after(since, newer_than=old_epoch) is not None,
             60, "a write acknowledged by a new primary")  # fmt: skip


def test_kill_9_in_async_mode_reports_writes_lost_per_failover_and_the_old_primary_rejoins(
    ha: tuple[Nodes, list[LocalNode]], fault_report: Report
) -> None:
    _, members = ha
    first_primary(members)
    recoveries, killed_epochs = [], []
    with Load(members) as load:
        for _ in range(ASYNC_KILLS):
            load.wait_acks(30)
            last = load.history.ok()[-1]
            assert last.epoch is not None
            victim = next(m for m in members if m.node_id == last.acked_by)
            victim.kill()
            killed = time.monotonic()
            _new_epoch_acks(load, killed, last.epoch)
            recoveries.append(recovery(load.history, killed, last.epoch))
            killed_epochs.append(last.epoch)
            # The old primary comes back as a replica of the new one.
            victim.start()
            wait_for(lambda v=victim: roles([v])[v.node_id] == "replica", 30, "the rejoin")
    lost = check(load.history, healed(members), sync=False)
    by_epoch = Counter(o.epoch for o in lost)
    per_failover = [by_epoch.get(e, 0) for e in killed_epochs]
    acked = Counter(o.epoch for o in load.history.ok())
    fault_report("async: acknowledged writes lost per failover", per_failover)
    fault_report("async: acknowledged by each killed primary", [acked[e] for e in killed_epochs])
    fault_report("recovery seconds", [round(r, 2) for r in recoveries])
    print(f"async mode: lost per failover {per_failover}; {load.history.summary()}")
    check_recoveries(recoveries)


def test_a_stopped_primary_wakes_as_a_zombie_that_acknowledges_nothing(
    sync_ha: list[LocalNode], fault_report: Report
) -> None:
    members = sync_ha
    old = first_primary(members)
    old_epoch = epoch_of(old)
    with Load(members) as load:
        load.wait_acks(30)
        old.signal(signal.SIGSTOP)
        stopped = time.monotonic()
        try:
            _new_epoch_acks(load, stopped, old_epoch)
            wait_for(lambda: time.monotonic() > stopped + 1.5 * TTL, 3 * TTL, "past the TTL")
        finally:
            old.signal(signal.SIGCONT)
        # The zombie's lease ran out on its own clock while it was stopped: writes sent to it
        # after waking are refused, or forwarded once it follows the new primary.
        probes = load.probe(old, 20, "zombie")
        wait_for(lambda: roles([old])[old.node_id] == "replica", 30, "the zombie to step down")
        load.wait_acks(20)
    assert not [p for p in probes if p.outcome == OK and p.epoch == old_epoch], probes
    check(load.history, healed(members), sync=True)
    took = recovery(load.history, stopped, old_epoch)
    fault_report("recovery seconds", round(took, 2))
    check_recoveries([took])


def test_etcd_down_longer_than_the_ttl_stops_writes_then_the_cluster_recovers(
    ha_etcd: tuple[list[LocalNode], EtcdServer], fault_report: Report
) -> None:
    members, etcd = ha_etcd
    first_primary(members)
    with Load(members) as load:
        load.wait_acks(30)
        etcd.stop()
        stopped = time.monotonic()
        wait_for(lambda: any(o.outcome == FAILED and o.invoke > stopped
                             for o in load.history.ops), 3 * TTL, "a refusal")  # fmt: skip
        # Nothing to wait for: etcd stays down longer than the TTL.
        time.sleep(max(0.0, stopped + 1.5 * TTL - time.monotonic()))
        etcd.start()
        restarted = time.monotonic()
        load.wait_acks(30, after=restarted)
    # Without etcd nobody can confirm leadership: past the safe deadline (the last keepalive
    # sent before etcd stopped, plus the TTL, minus the margin) nothing is acknowledged.
    deadline = stopped + TTL - MARGIN
    late = [o for o in load.history.ok() if o.invoke > deadline and o.complete < restarted]
    assert not late, f"acknowledged while etcd was down: {late[:3]}"
    # Every write acknowledged before reached the replicas long before a new election.
    check(load.history, healed(members), sync=True)
    fault_report("seconds from etcd's restart to a write", round(
        recovery(load.history, restarted, 0), 2))  # fmt: skip


def test_a_write_to_a_primary_that_stepped_down_without_etcd_is_refused_as_retryable(
    ha_etcd: tuple[list[LocalNode], EtcdServer],
) -> None:
    members, etcd = ha_etcd
    primary = first_primary(members, with_replicas=False)
    etcd.stop()
    wait_for(lambda: roles([primary])[primary.node_id] == "candidate", 6 * TTL, "the step-down")
    r = execute(primary, [["INSERT INTO t(k) VALUES(?)", "refused"]])
    assert r.status_code == 503, r.text
    assert r.json()["retryable"] is True


def test_switchover_hands_the_primary_role_to_the_named_replica_without_loss(
    ha: tuple[Nodes, list[LocalNode]], fault_report: Report
) -> None:
    _, members = ha
    old = first_primary(members)
    old_epoch = epoch_of(old)
    others = [m for m in members if m is not old]
    target = max(others, key=lambda m: m.node_id)  # not the one the election would prefer
    with Load(members) as load:
        load.wait_acks(30)
        asked = time.monotonic()
        out = subprocess.run(
            [sys.executable, "-m", "litecluster", "switchover", "--to", target.node_id,
             "--http", others[0].http],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert out.returncode == 0, out.stdout + out.stderr
        assert f"handed over to {target.node_id}" in out.stdout
        _new_epoch_acks(load, asked, old_epoch)
        load.wait_acks(30)
    ok = load.history.ok()
    assert {o.acked_by for o in ok if o.epoch is not None and o.epoch > old_epoch} == {
        target.node_id
    }
    last_old = max(o.complete for o in ok if o.epoch == old_epoch)
    first_new = min(o.complete for o in ok if o.epoch is not None and o.epoch > old_epoch)
    fault_report(
        "switchover: seconds without an acknowledged write", round(first_new - last_old, 2)
    )
    refused = [o for o in load.history.ops if o.outcome != OK and o.invoke >= asked]
    if refused:
        span = max(o.complete for o in refused) - min(o.invoke for o in refused)
        fault_report("switchover: seconds from the first to the last refused write", round(span, 2))
    assert healed(members) is target
    check(load.history, target, sync=True)  # planned: nothing acknowledged is lost
