"""Strong and linearizable reads on a primary paused past its lease (SIGSTOP, then SIGCONT):
while it was stopped another node was elected and acknowledged writes, so the old copy is
stale. Every read it answers must still hold every write acknowledged before the read began;
the reads queued while it was stopped and those sent as it wakes are refused (503) or, once it
follows the new primary, forwarded there."""

from __future__ import annotations

import signal
import threading
import time
from dataclasses import dataclass

import httpx

from litecluster.cli.localcluster import LocalNode
from support import wait_for
from support.checker import epoch_of
from support.ha_cluster import TTL, first_primary, roles
from support.history import Load

PAUSES = 3
LEVELS = ("strong", "linearizable")


@dataclass(frozen=True)
class Read:
    level: str
    invoke: float
    complete: float
    status: int
    keys: frozenset[str]


def _reads(node: LocalNode, level: str, until: float, out: list[Read]) -> None:
    """Strong reads of every key, one after another, until ``until`` (monotonic)."""
    with httpx.Client(timeout=10) as client:
        while time.monotonic() < until:
            invoke = time.monotonic()
            try:
                r = client.get(f"http://{node.http}/db/query",
                               params={"q": "SELECT k FROM t", "level": level})  # fmt: skip
            except httpx.HTTPError:
                continue
            keys: frozenset[str] = frozenset()
            if r.status_code == 200:
                keys = frozenset(row[0] for row in r.json()["results"][0].get("values", []))
            out.append(Read(level, invoke, time.monotonic(), r.status_code, keys))


def _pause_past_the_lease(members: list[LocalNode], load: Load, reads: list[Read]) -> None:
    """Stop the primary until a new one acknowledged writes and its lease ran out, start strong
    readers against it while it is stopped, wake it, and wait until it follows."""
    old = first_primary(members)
    old_epoch = epoch_of(old)
    load.wait_acks(20)
    old.signal(signal.SIGSTOP)
    stopped = time.monotonic()
    readers: list[threading.Thread] = []
    try:
        wait_for(lambda: load.history.first_ack_after(stopped, newer_than=old_epoch) is not None,
                 60, "a write acknowledged by a new primary")  # fmt: skip
        wait_for(lambda: time.monotonic() > stopped + 1.5 * TTL, 3 * TTL, "past the TTL")
        # These readers' first requests wait in the stopped process's socket backlog.
        until = time.monotonic() + 2.0
        readers = [
            threading.Thread(target=_reads, args=(old, level, until, reads), daemon=True)
            for level in LEVELS
            for _ in range(2)
        ]
        for t in readers:
            t.start()
    finally:
        old.signal(signal.SIGCONT)
    for t in readers:
        t.join(30)
    wait_for(lambda: roles([old])[old.node_id] == "replica", 30, "the old primary to follow")


def test_a_paused_primary_never_answers_strong_reads_from_its_stale_copy(
    sync_ha: list[LocalNode],
) -> None:
    members = sync_ha
    reads: list[Read] = []
    with Load(members) as load:
        for _ in range(PAUSES):
            _pause_past_the_lease(members, load, reads)
    history = load.history
    answered = [r for r in reads if r.status == 200]
    assert answered, "no strong read was answered at all"
    acked = sorted((o.complete, o.id) for o in history.ok() if o.workload == "set")
    stale = []
    for r in answered:
        before = {key for done, key in acked if done < r.invoke}
        if not before <= r.keys:
            stale.append((r.level, round(r.invoke, 3), len(before - r.keys)))
    assert stale == [], (
        f"strong reads missing acknowledged writes (level, invoke, missing): {stale}"
    )
    assert {r.status for r in reads} <= {200, 503}, sorted({r.status for r in reads})
