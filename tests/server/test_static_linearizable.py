"""A static cluster (no etcd) has no coordinator to confirm a ``linearizable`` read; in
synchronous mode its synchronous replicas do: after the read the primary sends each a
heartbeat numbered with a new round, and answers only once ``sync_replicas`` of them answered
that round (so they still followed it at its epoch after the read ran).

A primary with ``--sync-replicas 1`` and one replica process: while the replica is stopped
(SIGSTOP) the round goes unanswered and linearizable reads are refused, strong ones (no write
in flight) answered; once an operator promotes the replica (``--force``, the old primary still
running) and the new primary acknowledges a write, the old primary still answers strong reads
from its stale copy, the known limit of static clusters, but refuses linearizable ones."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import msgspec
import pytest

from litecluster.cli.localcluster import LocalNode
from litecluster.replication.protocol import Ack, Heartbeat, MsgType, Pos, decode_body
from support import wait_for
from support.nodes import Nodes, wait_streaming

SYNC_TIMEOUT = 1.5


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[LocalNode, LocalNode]]:
    n = Nodes(tmp_path)
    try:
        primary = n.node("p1", args=["--sync-replicas", "1"],
                         env={"LITECLUSTER_SYNC_TIMEOUT": str(SYNC_TIMEOUT)})  # fmt: skip
        replica = n.node("r1", primary)
        wait_streaming(replica)
        yield primary, replica
    finally:
        for node in n.all:
            if node.running:
                node.signal(signal.SIGCONT)
        n.close()


def _read(node: LocalNode, level: str) -> tuple[int, list[str]]:
    r = httpx.get(f"http://{node.http}/db/query", params={"q": "SELECT k FROM t", "level": level},
                  timeout=10)  # fmt: skip
    if r.status_code != 200:
        return r.status_code, []
    return 200, sorted(row[0] for row in r.json()["results"][0].get("values", []))


def _write(node: LocalNode, key: str) -> int:
    r = httpx.post(f"http://{node.http}/db/execute", json=[["INSERT INTO t VALUES (?)", key]],
                   timeout=10)  # fmt: skip
    return r.status_code


def test_a_static_primary_confirms_linearizable_reads_with_a_round_to_its_sync_replicas(
    pair: tuple[LocalNode, LocalNode],
) -> None:
    primary, replica = pair
    created = httpx.post(f"http://{primary.http}/db/execute", timeout=10,
                         json=[["CREATE TABLE t(k TEXT)"], ["INSERT INTO t VALUES ('a')"]])  # fmt: skip
    assert created.status_code == 200, created.text
    assert _read(primary, "strong") == (200, ["a"])
    assert _read(primary, "linearizable") == (200, ["a"])

    replica.signal(signal.SIGSTOP)
    try:
        assert _read(primary, "strong") == (200, ["a"]), "no write in flight: no wait"
        assert _read(primary, "linearizable") == (503, []), "nobody answers the round"
    finally:
        replica.signal(signal.SIGCONT)
    wait_for(lambda: _read(primary, "linearizable") == (200, ["a"]), 20, "the round answered")

    # An operator promotes the replica while the old primary still runs (--force).
    promoted = httpx.post(f"http://{replica.http}/promote", params={"force": "1"}, timeout=10)
    assert promoted.status_code == 200, promoted.text
    wait_for(lambda: _write(replica, "b") == 200, 20, "the new primary to acknowledge a write")
    assert _read(replica, "linearizable") == (200, ["a", "b"])
    # The old primary's copy is stale: strong reads show it (a static cluster's limit) ...
    assert _read(primary, "strong") == (200, ["a"])
    # ... linearizable reads do not: its only synchronous replica follows it no more.
    status = httpx.get(f"http://{primary.http}/db/query",
                       params={"q": "SELECT k FROM t", "level": "linearizable"}, timeout=10)  # fmt: skip
    assert status.status_code == 503, status.text
    body = status.json()
    assert (body["retryable"], body["indeterminate"]) == (True, False), body
    assert body["hint"], body


def test_the_round_fields_are_optional_both_ways() -> None:
    """A peer that predates rounds sends heartbeats and acks without the field (read as 0:
    no round, none answered) and ignores it when it comes."""

    class OldHeartbeat(msgspec.Struct):
        epoch: int
        heads: dict[str, int]

    class OldAck(msgspec.Struct):
        positions: dict[str, Pos]

    old_beat = msgspec.msgpack.encode(OldHeartbeat(3, {"main": 7}))
    assert decode_body(MsgType.HEARTBEAT, old_beat) == Heartbeat(3, {"main": 7}, 0)
    old_ack = msgspec.msgpack.encode(OldAck({"main": Pos(3, 7, 0)}))
    assert decode_body(MsgType.ACK, old_ack) == Ack({"main": Pos(3, 7, 0)}, 0)
    new = msgspec.msgpack.encode(Heartbeat(3, {"main": 7}, 5))
    assert msgspec.msgpack.decode(new, type=OldHeartbeat) == OldHeartbeat(3, {"main": 7})
