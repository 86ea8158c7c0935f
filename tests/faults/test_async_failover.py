"""Asynchronous mode, the old primary's unreplicated tail lost in a failover: no client is
told 200 for a write that is not in the final history.

n1 is the primary; the clients write through n2 and n3, which forward each write to n1 and
answer once they have applied it themselves (read-your-writes). The replication streams from
n1 are cut while its HTTP port still answers the forwards, so n1 commits writes that no replica
receives; then n1 is cut off from etcd and from the replicas, one of them is elected, and the
new primary numbers its own writes from where the replicas stopped. Compared by txid alone, the
new primary's txid N satisfied a replica's wait for the old primary's txid N, and the lost
write was answered 200; judged as (epoch, txid) against the epoch history, it is answered 409.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from litecluster.cli.localcluster import LocalNode
from support import wait_for
from support.checker import epoch_of, healed, query
from support.ha_cluster import first_primary, roles
from support.netns import NsCluster
from support.nodes import position, wait_converged

Report = Callable[[str, object], None]
WRITERS_PER_REPLICA = 4
"""Each writer has at most one write in the lost tail: its replica answers it only once it
has applied it, or once its history excludes it."""
READ_WAIT = 30
"""Seconds a replica waits to apply a forwarded write: longer than the failover, so that each
wait of the lost tail ends by the new history, not by the timeout."""


@dataclass
class Op:
    key: str
    via: str
    invoke: float
    complete: float = 0.0
    status: int | None = None
    """None: no HTTP answer (a timeout, a broken connection)."""
    body: dict[str, Any] | None = None

    @property
    def told_ok(self) -> bool:
        """What a client takes as success: HTTP 200 and no statement error."""
        if self.status != 200 or self.body is None:
            return False
        return not any("error" in r for r in self.body.get("results", []))


class Writers:
    """Threads inserting unique keys through the given nodes until stopped."""

    def __init__(self, via: list[LocalNode]) -> None:
        self.ops: list[Op] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(node, i), daemon=True)
            for node in via
            for i in range(WRITERS_PER_REPLICA)
        ]

    def __enter__(self) -> Writers:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(READ_WAIT + 30)
        assert not any(t.is_alive() for t in self._threads), "a writer never got an answer"

    def _run(self, node: LocalNode, n: int) -> None:
        with httpx.Client(timeout=READ_WAIT + 20) as client:
            i = 0
            while not self._stop.is_set():
                op = Op(f"{node.node_id}-{n}-{i}", node.node_id, time.monotonic())
                i += 1
                with self._lock:
                    self.ops.append(op)
                try:
                    r = client.post(f"http://{node.http}/db/execute",
                                    json=[["INSERT INTO lost(k) VALUES(?)", op.key]])  # fmt: skip
                    op.status = r.status_code
                    op.body = r.json()
                except (httpx.HTTPError, ValueError):
                    pass
                op.complete = time.monotonic()
                if op.status != 200:
                    time.sleep(0.05)  # no primary for a moment: do not spin

    def done(self) -> list[Op]:
        with self._lock:
            return [o for o in self.ops if o.complete]

    def ok_after(self, since: float, newer_than: int) -> int:
        return sum(
            1 for o in self.done()
            if o.told_ok and o.invoke > since and o.body and o.body["position"]["epoch"] > newer_than
        )  # fmt: skip


def _head(node: LocalNode) -> int:
    pos = position(node)
    return pos[0] if pos else 0


def test_the_old_primarys_lost_tail_is_never_answered_200(
    ns_cluster: Callable[..., NsCluster], fault_report: Report
) -> None:
    c = ns_cluster(sync=False, env={"LITECLUSTER_READ_WAIT_TIMEOUT": str(READ_WAIT)})
    members = c.members
    old = first_primary(members)
    assert old is members[0]
    replicas = [m for m in members if m is not old]
    old_epoch = epoch_of(old)
    httpx.post(f"http://{old.http}/db/execute",
               json=["CREATE TABLE lost(k TEXT PRIMARY KEY)"]).raise_for_status()  # fmt: skip
    wait_converged(old, replicas)

    with Writers(replicas) as writers:
        wait_for(lambda: sum(o.told_ok for o in writers.done()) >= 20, 30, "writes before the cut")
        for r in replicas:
            c.cut_replication(r, old)
        cut = time.monotonic()
        # Forwarded writes keep reaching n1, which commits them; no replica receives them.
        wait_for(lambda: _head(old) > max(_head(r) for r in replicas), 30,
                 "a tail on the old primary that no replica has")  # fmt: skip
        tail = _head(old) - max(_head(r) for r in replicas)
        c.cut_from_etcd(old)
        for r in replicas:
            c.cut_between(old, r)
        isolated = time.monotonic()
        wait_for(lambda: writers.ok_after(isolated, old_epoch) >= 20, 60,
                 "writes acknowledged in the new primary's epoch")  # fmt: skip

    c.heal(old)
    for r in replicas:
        c.heal(r)
    wait_for(lambda: roles([old])[old.node_id] == "replica", 60, "the old primary to rejoin")
    final = healed(members)
    assert final is not old
    present = {row[0] for row in query(final, "SELECT k FROM lost")}

    ops = writers.done()
    told_ok = [o for o in ops if o.told_ok]
    missing = [o for o in told_ok if o.key not in present]
    assert not missing, (
        f"told 200, not in the final history: {[(o.key, o.body) for o in missing[:5]]}"
    )

    # The lost tail was there, and its writes were told so (409), not 200.
    excluded = [o for o in ops if o.status == 409]
    assert excluded, "no forwarded write was excluded: the scenario lost no tail"
    for o in excluded:
        assert o.key not in present, o
        assert o.body is not None
        flags = (o.body["retryable"], o.body["indeterminate"], o.body["committed"])
        assert flags == (False, False, False), o.body
        assert o.body["hint"], o.body
        assert "lost" in o.body["error"], o.body
    assert not [o for o in ops if o.status is not None and o.status >= 500 and o.body is None]

    # A read-your-writes token of the lost tail names a write no node holds: refused with 409
    # on every node, however far the new history's txids have gone; one of the final history
    # is served.
    lost_at = str(excluded[0].body["position"])  # type: ignore[index]
    epoch, txid = (int(x) for x in lost_at.split(":"))
    assert epoch == old_epoch
    kept = told_ok[-1].body["position"]  # type: ignore[index]
    for m in members:
        q = {"q": "SELECT count(*) FROM lost", "level": "none"}
        refused = httpx.get(f"http://{m.http}/db/query", params={**q, "min_position": lost_at})
        assert refused.status_code == 409, (m.node_id, refused.text)
        ok = httpx.get(f"http://{m.http}/db/query",
                       params={**q, "min_position": f"{kept['epoch']}:{kept['txid']}"})  # fmt: skip
        assert ok.status_code == 200, (m.node_id, ok.text)
    assert _head(final) > txid, "the new history's txids passed the lost one's"

    fault_report("async tail: writes answered 409 (lost)", len(excluded))
    fault_report("async tail: writes answered 200", len(told_ok))
    fault_report("async tail: old primary's head past the replicas when cut off", tail)
    fault_report("async tail: seconds from the replication cut to isolation",
                 round(isolated - cut, 2))  # fmt: skip
