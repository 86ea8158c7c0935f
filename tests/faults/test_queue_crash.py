"""Queued writes survive kill -9 and are applied exactly once (issue 17's acceptance): kill -9
of the node that answered ``?queue`` (the primary, or a replica) while entries are queued and
while they drain, restart, and every acknowledged entry is in the database once, on every
node; also the crash window between "applied on the primary" and "removed from the queue",
held open on purpose by synchronous mode with too few replicas to acknowledge; and a failover
(etcd) with entries queued on the old primary and on a replica."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from litecluster.cli.localcluster import LocalNode
from support import wait_for
from support.ha_cluster import first_primary, the_primary
from support.nodes import Nodes, wait_converged

TABLE = "CREATE TABLE q(k TEXT NOT NULL)"  # no key: a second application would show as a row


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[Nodes]:
    n = Nodes(tmp_path)
    yield n
    n.close()


def _streaming(replica: LocalNode) -> None:
    wait_for(lambda: httpx.get(f"http://{replica.http}/readyz").status_code == 200, 30,
             f"{replica.node_id} to stream from its primary")  # fmt: skip


def _queue(node: LocalNode, key: str, timeout: float = 10) -> int:
    resp = httpx.post(f"http://{node.http}/db/execute?queue",
                      json=[["INSERT INTO q VALUES(?)", key]], timeout=timeout)  # fmt: skip
    assert resp.status_code == 200, resp.text
    seq: int = resp.json()["sequence_number"]
    return seq


def _keys(node: LocalNode) -> Counter[str]:
    resp = httpx.get(f"http://{node.http}/db/query",
                     params={"q": "SELECT k FROM q", "level": "none"}, timeout=10)  # fmt: skip
    resp.raise_for_status()
    return Counter(row[0] for row in resp.json()["results"][0].get("values", []))


def _queue_status(node: LocalNode) -> dict[str, Any]:
    got: dict[str, Any] = node.status()["queue"]
    return got


def _drained(node: LocalNode, timeout: float = 60) -> None:
    wait_for(lambda: _queue_status(node)["queued"] == 0, timeout, f"{node.node_id}'s queue")


def _exactly_once(acked: set[str], maybe: set[str], *copies: LocalNode) -> None:
    """Every acknowledged key once; a key whose answer was lost in the kill at most once;
    nothing else."""
    for node in copies:
        got = _keys(node)
        twice = {k: n for k, n in got.items() if n > 1}
        assert twice == {}, (node.node_id, "applied more than once", twice)
        missing = acked - set(got)
        assert missing == set(), (node.node_id, "acknowledged but never applied", missing)
        assert set(got) <= acked | maybe, (node.node_id, set(got) - acked - maybe)


class Clients:
    """Threads queueing distinct keys on ``node`` until stopped; which keys got their
    ``sequence_number`` (acknowledged) and which got no answer (the node was killed)."""

    def __init__(self, node: LocalNode, threads: int = 6) -> None:
        self.node = node
        self.prefix = node.node_id  # keys of clients of different nodes never collide
        self.acked: set[str] = set()
        self.maybe: set[str] = set()
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(t,), daemon=True)
                        for t in range(threads)]  # fmt: skip

    def __enter__(self) -> Clients:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(30)

    def _run(self, t: int) -> None:
        url = f"http://{self.node.http}/db/execute?queue"
        with httpx.Client(timeout=5) as client:
            i = 0
            while not self.stop.is_set():
                key = f"{self.prefix}-c{t}-{i}"
                i += 1
                try:
                    resp = client.post(url, json=[["INSERT INTO q VALUES(?)", key]])
                except httpx.HTTPError:
                    with self.lock:
                        self.maybe.add(key)
                    self.stop.wait(0.05)  # the node is down: do not spin
                    continue
                with self.lock:
                    (self.acked if resp.status_code == 200 else self.maybe).add(key)

    def count(self) -> int:
        with self.lock:
            return len(self.acked)

    def wait_more(self, more: int, what: str) -> None:
        """Until ``more`` keys beyond those acknowledged so far are acknowledged."""
        want = self.count() + more
        wait_for(lambda: self.count() >= want, 60, what)


@pytest.mark.parametrize("victim", ["primary", "replica"])
def test_kill_9_with_entries_queued_then_restart_applies_each_once(
    nodes: Nodes, victim: str
) -> None:
    primary = nodes.node("p1")
    replica = nodes.node("r1", primary)
    _streaming(replica)
    httpx.post(f"http://{primary.http}/db/execute", json=[TABLE]).raise_for_status()
    node = primary if victim == "primary" else replica
    # Entries that cannot drain yet: from a replica, the primary is down; on the primary, the
    # queue is written while the node is killed right after the answers.
    if victim == "replica":
        primary.kill()
    acked = {f"k{i}" for i in range(40)}
    seqs = [_queue(node, k) for k in sorted(acked)]
    assert len(set(seqs)) == len(seqs)
    node.kill()
    if victim == "replica":
        primary.start()
    node.start()
    _streaming(replica)
    _drained(node)
    wait_converged(primary, [replica])
    _exactly_once(acked, set(), primary, replica)
    # Numbers go on after a restart: a seq is never reused.
    assert _queue(node, "after") > max(seqs)
    _drained(node)


@pytest.mark.parametrize("victim", ["primary", "replica"])
def test_kill_9_while_draining_under_load_applies_every_acknowledged_write_once(
    nodes: Nodes, victim: str
) -> None:
    primary = nodes.node("p1")
    replica = nodes.node("r1", primary)
    _streaming(replica)
    httpx.post(f"http://{primary.http}/db/execute", json=[TABLE]).raise_for_status()
    node = primary if victim == "primary" else replica
    with Clients(node) as clients:
        for kill in range(2):
            clients.wait_more(150, "acknowledged writes")
            node.kill()
            node.start()
            _streaming(replica)
            # Writes are acknowledged again after the restart (the queue reopened).
            clients.wait_more(20, f"acknowledged writes after kill {kill + 1}")
    _drained(node)
    wait_converged(primary, [replica])
    _exactly_once(clients.acked, clients.maybe, primary, replica)
    assert len(clients.acked) >= 340


def test_kill_9_of_the_primary_between_applying_and_removing_applies_once(
    nodes: Nodes,
) -> None:
    """Synchronous mode with its one replica gone: every attempt commits, then times out
    waiting for the acknowledgement (indeterminate), so the entries stay queued although
    applied. kill -9 in that state; after the restart each attempt finds its record."""
    env = {"LITECLUSTER_SYNC_REPLICAS": "1", "LITECLUSTER_SYNC_TIMEOUT": "0.3"}
    primary = nodes.node("p1", env=env)
    replica = nodes.node("r1", primary)
    _streaming(replica)
    httpx.post(f"http://{primary.http}/db/execute", json=[TABLE], timeout=30).raise_for_status()
    replica.kill()
    acked = {f"w{i}" for i in range(30)}
    for k in sorted(acked):
        _queue(primary, k)
    wait_for(lambda: set(_keys(primary)) == acked, 30, "the entries applied on the primary")
    st = _queue_status(primary)
    assert st["queued"] == 30, st
    assert st["retries"] > 0, st
    primary.kill()
    primary.start()
    replica.start()
    _streaming(replica)
    _drained(primary)
    st = _queue_status(primary)
    assert st["duplicates"] == 30, st
    assert st["applied"] == 0, st
    wait_converged(primary, [replica])
    _exactly_once(acked, set(), primary, replica)


def test_kill_9_of_a_replica_between_applied_on_the_primary_and_removed_applies_once(
    nodes: Nodes,
) -> None:
    """The primary wants two acknowledgements and has one replica: it applies each entry the
    replica sends and answers it indeterminate, so the replica keeps it queued. kill -9 of the
    replica in that state; once a second replica lets writes complete, each is found applied."""
    env = {"LITECLUSTER_SYNC_REPLICAS": "2", "LITECLUSTER_SYNC_TIMEOUT": "0.3"}
    primary = nodes.node("p1", env=env)
    replica = nodes.node("r1", primary)
    other = nodes.node("r2", primary, start=False)
    _streaming(replica)
    # The table, written before the primary has its two replicas: indeterminate, but applied.
    httpx.post(f"http://{primary.http}/db/execute", json=[TABLE], timeout=30)
    acked = {f"r{i}" for i in range(30)}
    for k in sorted(acked):
        _queue(replica, k)
    wait_for(lambda: set(_keys(replica)) == acked, 30, "the entries applied and replicated")
    assert _queue_status(replica)["queued"] == 30
    replica.kill()
    replica.start()
    other.start()
    _streaming(replica)
    _drained(replica)
    st = _queue_status(replica)
    assert st["duplicates"] == 30, st
    wait_converged(primary, [replica, other])
    _exactly_once(acked, set(), primary, replica, other)


def test_queued_writes_on_the_primary_and_a_replica_survive_a_failover_exactly_once(
    sync_ha: list[LocalNode],
) -> None:
    """Synchronous mode with etcd: clients queue on the primary and on a replica; kill -9 of
    the primary; a new one is elected and both queues drain to it (the old primary's once it
    restarted as a replica): every acknowledged entry once, on every node."""
    members = sync_ha
    old = first_primary(members)
    replica = next(m for m in members if m is not old)
    httpx.post(f"http://{old.http}/db/execute", json=[TABLE], timeout=30).raise_for_status()
    with Clients(old, threads=3) as on_old, Clients(replica, threads=3) as on_replica:
        on_old.wait_more(100, "writes queued on the primary")
        on_replica.wait_more(100, "writes queued on a replica")
        old.kill()
        wait_for(lambda: the_primary([m for m in members if m.running]) is not None, 60,
                 "a new primary")  # fmt: skip
        on_replica.wait_more(50, "writes queued on the replica after the failover")
        old.start()
        on_old.wait_more(50, "writes queued on the old primary, now a replica")
    new = the_primary(members)
    assert new is not None
    assert new is not old
    for m in members:
        _drained(m)
    wait_converged(new, [m for m in members if m is not new])
    _exactly_once(on_old.acked | on_replica.acked, on_old.maybe | on_replica.maybe, *members)
