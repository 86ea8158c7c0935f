"""Strong and linearizable reads while the primary is paused past its lease (SIGSTOP, then
SIGCONT), ten times: while it is stopped another node is elected and acknowledges writes, so
the old copy is stale. Writers (the set and bank workloads over SQL, a register over
``/kv/exec``) and readers at both levels (SQL, ``/kv/exec`` and RESP, sent to every node in
turn, and a burst queued on the stopped node) run throughout; every operation is recorded with its invoke
and complete times, and the history is judged twice:

- the simple rule: an answered read holds every write acknowledged before the read began;
- linearizability (support/linearizable.py), of the set, the bank and the register: the reads
  and writes fit one order that respects real time.

The stopped node's reads are refused (503) or, once it follows the new primary, forwarded."""

from __future__ import annotations

import signal
import time
from collections import Counter
from collections.abc import Callable

from litecluster.cli.localcluster import LocalNode
from support import wait_for
from support.checker import check, epoch_of, healed, read_data
from support.ha_cluster import TTL, first_primary, roles
from support.history import Load
from support.linearizable import BankModel, RegisterModel, SetModel
from support.linearizable import check as linearizable
from support.strong_reads import (
    INITIAL_BALANCES,
    Readers,
    Register,
    bank_history,
    register_history,
    set_history,
    stale_reads,
)

PAUSES = 10
LEVELS = ("strong", "linearizable")
APIS = ("sql", "kv", "resp")


def _pause_past_the_lease(members: list[LocalNode], load: Load, readers: Readers) -> None:
    """Stop the primary until a new one acknowledged writes (its lease ran out), start readers
    against it while it is stopped, wake it, and wait until it follows."""
    old = first_primary(members)
    old_epoch = epoch_of(old)
    load.wait_acks(10)
    old.signal(signal.SIGSTOP)
    stopped = time.monotonic()
    try:
        wait_for(lambda: load.history.first_ack_after(stopped, newer_than=old_epoch) is not None,
                 30, "a write acknowledged by a new primary")  # fmt: skip
        wait_for(lambda: time.monotonic() > stopped + 1.2 * TTL, 3 * TTL, "past the TTL")
        # Their first requests wait in the stopped process's socket backlog.
        until = time.monotonic() + 1.5
        for api in APIS:
            for level in LEVELS:
                readers.start(api, level, lambda: [old], until)
    finally:
        old.signal(signal.SIGCONT)
    wait_for(lambda: roles([old])[old.node_id] == "replica", 30, "the old primary to follow")


def test_strong_and_linearizable_reads_stay_linearizable_across_ten_pauses_of_the_primary(
    sync_ha_resp: list[LocalNode], fault_report: Callable[[str, object], None]
) -> None:
    members = sync_ha_resp
    first_primary(members)
    readers = Readers()
    started = time.monotonic()
    with Load(members, set_threads=1, bank_threads=1) as load, Register(load.router) as reg:
        for api in APIS:
            for level in LEVELS:
                readers.start(api, level, lambda: members)
        for _ in range(PAUSES):
            _pause_past_the_lease(members, load, readers)
        load.wait_acks(5)
        reads = readers.finish()
    history = load.history
    final = healed(members)
    check(history, final, sync=True)
    data = read_data(final)
    fault_report("pauses", PAUSES)
    fault_report("seconds", round(time.monotonic() - started, 1))
    fault_report("reads by status", dict(Counter((r.api, r.status) for r in reads)))

    answered = [r for r in reads if r.answered]
    for api in APIS:
        for level in LEVELS:
            assert any(r.api == api and r.level == level for r in answered), (api, level)
    assert {r.status for r in reads} <= {0, 200, 503}, Counter(r.status for r in reads)
    # Both judgements, reported together: the simple rule names the stale reads plainly, the
    # search also finds reads that went back in time or saw a write that was then lost.
    failures = stale_reads(history, reads)
    for name, model, ops in (
        ("set", SetModel(), set_history(history, reads, data)),
        ("bank", BankModel(INITIAL_BALANCES), bank_history(history, reads, data)),
        ("register", RegisterModel(), register_history(reg.writes, reads)),
    ):
        verdict = linearizable(model, ops)
        fault_report(f"{name} history", str(verdict))
        if not verdict.ok:
            failures.append(f"{name}: {verdict}")
    assert failures == []
