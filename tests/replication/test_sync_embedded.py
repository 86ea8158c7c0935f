"""Synchronous mode counts only replicas that can hold an acknowledged write through a
failover: durable nodes that may be promoted. An application's embedded replica declares
itself in its HELLO and never counts: a primary with ``--sync-replicas 1`` and only embedded
replicas connected acknowledges nothing (its writes time out as indeterminate)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import litecluster
from litecluster.cli.localcluster import LocalNode
from support import wait_for
from support.nodes import Nodes

SYNC_TIMEOUT = 1.0


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[Nodes]:
    n = Nodes(tmp_path)
    yield n
    n.close()


def _insert(node: LocalNode, value: int) -> httpx.Response:
    return httpx.post(f"http://{node.http}/db/execute",
                      json=[["INSERT INTO t VALUES (?)", value]], timeout=10)  # fmt: skip


def test_embedded_replicas_never_count_as_synchronous_replicas(
    nodes: Nodes, tmp_path: Path
) -> None:
    primary = nodes.node(
        "p1", args=["--sync-replicas", "1"], env={"LITECLUSTER_SYNC_TIMEOUT": str(SYNC_TIMEOUT)}
    )
    with contextlib.ExitStack() as apps:
        embedded = [
            apps.enter_context(
                litecluster.connect(
                    primary.http,
                    replica=tmp_path / f"app{i}",
                    primary=primary.listen,
                    token_file=nodes.token_file,
                )
            )
            for i in range(3)
        ]
        status = primary.status()
        assert len(status["replicas"]) == 3
        assert {(r["kind"], r["counts_for_sync"]) for r in status["replicas"]} == {
            ("embedded", False)
        }
        # No replica that counts: the write commits on the primary but is never acknowledged.
        r = httpx.post(f"http://{primary.http}/db/execute",
                       json=[["CREATE TABLE t(v)"]], timeout=10)  # fmt: skip
        assert r.status_code == 503, r.text
        body = r.json()
        assert (body["indeterminate"], body["retryable"]) == (True, False)
        # The embedded copies still receive every record: they are replicas, just not ones a
        # failover could promote.
        for app in embedded:
            wait_for(lambda app=app: app.query("SELECT count(*) FROM t").rows == [(0,)], 10,
                     "the table on the embedded replica")  # fmt: skip
        # A durable node joins: from now on writes are acknowledged once it holds them.
        node = nodes.node("r1", primary)
        wait_for(lambda: _insert(primary, 1).status_code == 200, 20, "an acknowledged write")
        replicas = {r["node_id"]: r for r in primary.status()["replicas"]}
        assert replicas["r1"]["kind"] == "node"
        assert replicas["r1"]["counts_for_sync"] is True
        assert node.status()["node"]["role"] == "replica"
