"""Network partitions (each node in a network namespace of its own, iptables dropping packets)
under the recorded SET and BANK workloads in synchronous mode.

- The primary cut off from etcd but not from its replicas: it stops acknowledging on its own
  clock before its lease can expire (the last keepalive it sent before the cut, plus the TTL,
  minus the margin), a replica is elected, the old primary rejoins as a replica once healed,
  and no acknowledged write is lost. The same with the primary's clock running 20% slow
  (libfaketime, faketime.py): the documented tolerance.
- A replica cut off (from etcd and the primary, or from the primary alone): the primary goes on
  acknowledging with the other replica, nobody is elected, and once healed the replica catches
  up and converges.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from support import faketime, wait_for
from support.checker import check, check_recoveries, epoch_of, healed, recovery
from support.ha_cluster import MARGIN, TTL, first_primary, roles
from support.history import Load
from support.netns import NsCluster
from support.nodes import position

Report = Callable[[str, object], None]


def test_a_primary_cut_off_from_etcd_stops_acknowledging_before_its_lease_can_expire(
    ns_cluster: Callable[..., NsCluster], fault_report: Report
) -> None:
    _cut_off_primary(ns_cluster(), fault_report)


SLOW = 0.8
"""A clock 20% slow: the documented tolerance (docs/node.md, Clock tolerance)."""


def test_a_primary_with_a_slow_clock_cut_off_from_etcd_acknowledges_nothing_stale(
    ns_cluster: Callable[..., NsCluster], fault_report: Report, tmp_path: Path
) -> None:
    why = faketime.unavailable()
    if why:
        pytest.skip(why)
    env = faketime.drift_env(tmp_path, SLOW)
    _cut_off_primary(ns_cluster(first_env=env), fault_report, rate=SLOW)


def _cut_off_primary(c: NsCluster, fault_report: Report, rate: float = 1.0) -> None:
    """Cut n1, the primary (its clock running at ``rate``), off from etcd but not from its
    replicas; check that it stopped in time, and everything else once healed."""
    members = c.members
    old = first_primary(members)
    assert old is members[0]
    old_epoch = epoch_of(old)
    # One writer goes through the replicas, which still reach the old primary and forward to it.
    with Load(members, via_replicas=1) as load:
        load.wait_acks(30)
        c.cut_from_etcd(old)
        cut = time.monotonic()
        wait_for(lambda: load.history.first_ack_after(cut, newer_than=old_epoch) is not None,
                 60, "a write acknowledged by a new primary")  # fmt: skip
        load.wait_acks(20)
        c.heal(old)
        wait_for(lambda: roles([old])[old.node_id] == "replica", 30, "the old primary to rejoin")
        load.wait_acks(20)
    ok = load.history.ok()
    old_acks = [o for o in ok if o.epoch == old_epoch]
    # Its last keepalive was sent before the cut; its safe deadline is TTL - MARGIN later on its
    # own clock, (TTL - MARGIN) / rate real seconds: nothing it receives after that is
    # acknowledged. Within the tolerance that is before the lease (which never expires early)
    # can run out, TTL after the keepalive.
    deadline = (TTL - MARGIN) / rate
    assert deadline < TTL
    late = [o for o in old_acks if o.invoke > cut + deadline]
    assert not late, f"acknowledged past the safe deadline: {late[:3]}"
    last_old = max(o.complete for o in old_acks)
    new = healed(members)
    assert new is not old
    check(load.history, new, sync=True)
    took = recovery(load.history, cut, old_epoch)
    fault_report(
        "old primary's last acknowledgement, seconds after the cut", round(last_old - cut, 2)
    )
    fault_report("recovery seconds", round(took, 2))
    check_recoveries([took])


@pytest.mark.parametrize("from_etcd", [True, False], ids=["etcd_and_primary", "primary_only"])
def test_a_replica_cut_off_catches_up_and_converges_once_healed(
    ns_cluster: Callable[..., NsCluster], fault_report: Report, from_etcd: bool
) -> None:
    c = ns_cluster()
    members = c.members
    primary = first_primary(members)
    epoch = epoch_of(primary)
    cut_off = members[-1]
    with Load(members) as load:
        load.wait_acks(30)
        if from_etcd:
            c.cut_from_etcd(cut_off)
        c.cut_between(cut_off, primary)
        cut = time.monotonic()
        # Longer than the TTL: the primary keeps acknowledging with the other replica.
        wait_for(lambda: time.monotonic() > cut + 1.5 * TTL and load.history.acked_after(cut) > 50,
                 60, "writes while the replica is cut off")  # fmt: skip
        behind = load.history.acked_after(cut)
        head = position(primary)
        assert head is not None
        c.heal(cut_off)
        healed_at = time.monotonic()
        wait_for(lambda: (position(cut_off) or (0, ""))[0] >= head[0], 60, "the catch-up")
        caught_up = time.monotonic() - healed_at
        load.wait_acks(20)
    assert {o.epoch for o in load.history.ok()} == {epoch}, "nobody else was elected"
    assert healed(members) is primary  # the replica caught up: same checksum everywhere
    fault_report("seconds from the heal to caught up", round(caught_up, 2))
    fault_report("writes acknowledged while the replica was cut off", behind)
    check(load.history, primary, sync=True)
