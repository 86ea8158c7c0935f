"""Queued writes (``POST /db/execute?queue``) on real nodes: answered at once with a
``sequence_number`` once durable in the node's queue, applied later exactly once, on the
primary and from a replica; ``&wait`` waits; a full queue answers 503. The crash tests (kill -9
with entries queued, and with entries applied on the primary but still in the queue) are in
tests/faults/test_queue_crash.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from litecluster.cli.localcluster import LocalNode
from support import wait_for
from support.nodes import Nodes, wait_converged, wait_streaming


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[Nodes, LocalNode, LocalNode]]:
    n = Nodes(tmp_path)
    env = {"LITECLUSTER_QUEUE_MAX_ENTRIES": "50"}
    primary = n.node("p1", env=env)
    replica = n.node("r1", primary, env=env)
    wait_streaming(replica)
    httpx.post(f"http://{primary.http}/db/execute",
               json=["CREATE TABLE t(k TEXT PRIMARY KEY, via TEXT)"]).raise_for_status()  # fmt: skip
    yield n, primary, replica
    n.close()


def _queue(node: LocalNode, body: list[Any], params: str = "queue") -> httpx.Response:
    return httpx.post(f"http://{node.http}/db/execute?{params}", json=body, timeout=40)


def _count(node: LocalNode, sql: str) -> int:
    resp = httpx.get(f"http://{node.http}/db/query", params={"q": sql, "level": "none"})
    resp.raise_for_status()
    return int(resp.json()["results"][0]["values"][0][0])


def _queue_status(node: LocalNode) -> dict[str, Any]:
    got: dict[str, Any] = node.status()["queue"]
    return got


@pytest.mark.parametrize("via", ["primary", "replica"])
def test_queued_writes_answer_a_sequence_number_and_are_applied_once(
    cluster: tuple[Nodes, LocalNode, LocalNode], via: str
) -> None:
    _, primary, replica = cluster
    node = primary if via == "primary" else replica
    seqs = []
    for i in range(20):
        resp = _queue(node, [["INSERT INTO t VALUES(?, ?)", f"{via}{i}", via]])
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert body["results"] == []
        seqs.append(body["sequence_number"])
    assert seqs == sorted(seqs)
    assert len(set(seqs)) == 20
    wait_for(lambda: _queue_status(node)["queued"] == 0, 30, "the queue to drain")
    wait_converged(primary, [replica])
    for n in (primary, replica):
        assert _count(n, f"SELECT count(*) FROM t WHERE via = '{via}'") == 20
    st = _queue_status(node)
    assert st["applied"] == 20
    assert st["failed"] == 0
    assert st["oldest_age"] == 0
    metrics = dict(
        line.rsplit(" ", 1)
        for line in httpx.get(f"http://{node.http}/metrics").text.splitlines()
        if line.startswith("litecluster_queue_")
    )
    assert float(metrics["litecluster_queue_applied_total"]) == 20
    assert float(metrics["litecluster_queue_entries"]) == 0


@pytest.mark.parametrize("via", ["primary", "replica"])
def test_wait_answers_once_applied_and_failures_are_not_retried(
    cluster: tuple[Nodes, LocalNode, LocalNode], via: str
) -> None:
    _, primary, replica = cluster
    node = primary if via == "primary" else replica
    resp = _queue(node, [["INSERT INTO t VALUES(?, ?)", "w", via]], "queue&wait&timeout=20s")
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["results"] == []
    assert "sequence_number" in body
    # Applied when answered: on this node too (a replica waits for its own copy).
    assert _count(node, "SELECT count(*) FROM t WHERE k = 'w'") == 1
    pos = body["position"]
    assert pos["txid"] > 0
    # A statement that fails (duplicate key) is applied as rqlite would and leaves the queue;
    # a transaction with a failing statement applies none of it.
    dup = _queue(node, [["INSERT INTO t VALUES(?, ?)", "w", via]], "queue&wait")
    assert dup.status_code == 200, dup.text
    tx = _queue(node, [["INSERT INTO t VALUES(?, ?)", "tx1", via], "INSERT INTO nope VALUES(1)"],
                "queue&wait&transaction")  # fmt: skip
    assert tx.status_code == 200, tx.text
    assert _count(node, "SELECT count(*) FROM t WHERE k = 'tx1'") == 0
    st = _queue_status(node)
    assert st["queued"] == 0
    assert st["applied"] == 3, st


def test_requests_are_checked_before_they_are_queued_and_a_full_queue_answers_503(
    cluster: tuple[Nodes, LocalNode, LocalNode],
) -> None:
    _nodes, primary, replica = cluster
    assert _queue(primary, "not a list").status_code == 400  # type: ignore[arg-type]
    assert _queue(primary, [["SELECT ?", [1, 2, 300]]]).status_code == 400
    bogus = _queue(primary, ["SELECT 1"], "queue&wait&timeout=bogus")
    assert bogus.status_code == 400
    assert "timeout must be a duration" in bogus.json()["error"]
    assert _queue_status(primary)["queued"] == 0
    assert _queue_status(primary)["applied"] == 0, "nothing refused was queued"
    # With the primary gone, the replica's queue fills up (50 entries) and says so.
    primary.kill()
    for i in range(50):
        resp = _queue(replica, [["INSERT INTO t VALUES(?, ?)", f"full{i}", "replica"]])
        assert resp.status_code == 200, resp.text
    full = _queue(replica, [["INSERT INTO t VALUES(?, ?)", "one too many", "replica"]])
    assert full.status_code == 503
    body = full.json()
    assert body["retryable"] is True
    assert body["indeterminate"] is False
    assert "queue is full" in body["error"]
    timed = _queue(replica, ["SELECT 1"], "queue&wait&timeout=200ms")
    assert timed.status_code == 503  # still full
    st = _queue_status(replica)
    assert st["queued"] == 50
    assert st["retries"] > 0
    assert st["oldest_age"] > 0
    primary.start()
    wait_for(lambda: _queue_status(replica)["queued"] == 0, 60, "the replica's queue to drain")
    assert _count(primary, "SELECT count(*) FROM t WHERE k LIKE 'full%'") == 50


def test_a_wait_past_its_timeout_is_indeterminate_and_still_applied(
    cluster: tuple[Nodes, LocalNode, LocalNode],
) -> None:
    _, primary, replica = cluster
    primary.kill()
    resp = _queue(replica, [["INSERT INTO t VALUES(?, ?)", "late", "replica"]],
                  "queue&wait&timeout=300ms")  # fmt: skip
    assert resp.status_code == 504, resp.text
    body = resp.json()
    assert body["indeterminate"] is True
    assert body["retryable"] is False
    seq = body["sequence_number"]
    assert seq > 0
    primary.start()
    wait_for(lambda: _queue_status(replica)["queued"] == 0, 60, "the replica's queue to drain")
    assert _count(primary, "SELECT count(*) FROM t WHERE k = 'late'") == 1
