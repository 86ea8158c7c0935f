"""Synchronous mode counts a replica's acknowledgement only for records the primary sent it on
that connection, once the replica has shown a position on the primary's history.

A replica of another history (a deposed primary rejoining with its own tail of writes) says
txids that mean other data: counting them would report a write as held by K replicas while
no replica holds it. The replica here is this test speaking the replication protocol over a
real socket to a real primary process, so that it can claim what a diverged node claims.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from litecluster.cli.localcluster import LocalNode
from litecluster.replication.protocol import (
    PROTOCOL_VERSION,
    Ack,
    Hello,
    Pos,
    Records,
    SnapshotStart,
    Welcome,
    encode_message,
    read_message,
    split_records,
)
from support import wait_for
from support.nodes import Nodes, db_file, write

SYNC_TIMEOUT = 1.5


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[Nodes]:
    n = Nodes(tmp_path)
    yield n
    n.close()


@pytest.fixture
def primary(nodes: Nodes) -> LocalNode:
    p = nodes.node(
        "p1", args=["--sync-replicas", "1"], env={"LITECLUSTER_SYNC_TIMEOUT": str(SYNC_TIMEOUT)}
    )
    # Written into the file by another process: capture takes it without a synchronous wait.
    write(db_file(p), 20)
    return p


@dataclass
class FakeReplica:
    """A replica that acknowledges ``fixed`` (a position of its own history) every tick, or,
    once ``fixed`` is None, the last record it received (epoch, txid, post-checksum)."""

    primary: LocalNode
    token: str
    hello: Pos
    fixed: Pos | None = None
    received: int = 0
    snapshots: list[SnapshotStart] = field(default_factory=list)
    acked: list[Pos] = field(default_factory=list)

    def position(self, last: Pos) -> Pos:
        if self.fixed is not None:
            return self.fixed
        return last

    async def run(self) -> None:
        host, port = self.primary.listen.rsplit(":", 1)
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            hello = Hello(
                PROTOCOL_VERSION, "litecluster", "fake1", self.token, {"main": self.hello}
            )
            writer.write(encode_message(hello))
            await writer.drain()
            assert isinstance(await read_message(reader), Welcome)
            last = self.hello
            ack = asyncio.create_task(self._ack_every_tick(writer, lambda: last))
            try:
                while True:
                    msg = await read_message(reader)
                    if isinstance(msg, Records):
                        rec = split_records(msg.data, where="test")[-1]
                        last = Pos(rec.epoch, rec.txid, rec.post_checksum)
                        self.acked.append(self.position(last))
                        writer.write(encode_message(Ack({"main": self.acked[-1]})))
                        self.received = rec.txid
                    elif isinstance(msg, SnapshotStart):
                        self.snapshots.append(msg)  # never installed: the old copy stays
            finally:
                ack.cancel()
        finally:
            writer.close()

    async def _ack_every_tick(self, writer: asyncio.StreamWriter, last: Callable[[], Pos]) -> None:
        while True:
            pos = self.position(last())
            self.acked.append(pos)
            writer.write(encode_message(Ack({"main": pos})))
            await writer.drain()
            await asyncio.sleep(0.05)


def _head(node: LocalNode) -> int:
    return int(node.status()["databases"]["main"]["txid"])


async def _write(node: LocalNode, key: str) -> tuple[bool, int]:
    """(acknowledged, txid it committed at) of one insert."""
    async with httpx.AsyncClient(timeout=SYNC_TIMEOUT + 10) as client:
        r = await client.post(
            f"http://{node.http}/db/execute",
            json=[["INSERT INTO items(v, n) VALUES(?, 0)", key]],
        )
    body = r.json()
    if r.status_code == 200:
        assert "error" not in body["results"][0], body
        return True, int(body["position"]["txid"])
    # Not acknowledged in time: durable here all the same, at the position the error names.
    assert "fewer than 1 replicas" in body["error"], body
    return False, int(body["position"].split(":")[1])  # epoch:txid:checksum


async def _with(fake: FakeReplica, body: Coroutine[object, object, None]) -> None:
    task = asyncio.create_task(fake.run())
    try:
        await body
    finally:
        task.cancel()
        with contextlib.suppress(BaseException):
            await task


async def _until(condition: Callable[[], object], what: str, timeout: float = 20) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.02)
    assert condition(), what


def test_a_replica_ahead_on_another_history_does_not_acknowledge_writes(
    nodes: Nodes, primary: LocalNode
) -> None:
    # A deposed primary's tail reaches far beyond this primary's head: its txids say nothing
    # about records this primary wrote there.
    other = Pos(0, 1_000_000, 0xBAD)
    fake = FakeReplica(primary, nodes.token_file.read_text(), hello=other, fixed=other)

    async def scenario() -> None:
        await _until(lambda: fake.snapshots, "the primary to send its snapshot")
        assert fake.snapshots[0].diverged, "a position past the head is another history"
        ok, txid = await _write(primary, "k1")
        assert fake.acked
        assert all(a == other for a in fake.acked)
        assert not ok, f"txid {txid} was reported held by a replica that never received it"

    asyncio.run(_with(fake, scenario()))


def test_a_stale_ack_of_a_sent_txid_counts_only_with_this_historys_checksum(
    nodes: Nodes, primary: LocalNode
) -> None:
    # The deposed primary's tail is one record ahead: the primary sends it a snapshot, then
    # streams on, so the next write's txid is one it sent and the replica (still installing,
    # or never) keeps acknowledging its old position at that very txid.
    wait_for(lambda: _head(primary) >= 21, 30, "capture of the file's writes")
    head = _head(primary)
    other = Pos(0, head + 1, 0xBAD)
    fake = FakeReplica(primary, nodes.token_file.read_text(), hello=other, fixed=other)

    async def scenario() -> None:
        await _until(lambda: fake.snapshots, "the primary to send its snapshot")
        assert fake.snapshots[0].diverged
        ok, txid = await _write(primary, "k1")
        assert txid == head + 1 == other.txid
        assert fake.received >= txid, "the record was sent on this connection"
        assert not ok, "an acknowledgement naming another history's data counted"
        # The same connection acknowledging the primary's own positions counts: what decides
        # is the history an acknowledgement names.
        fake.fixed = None
        ok, _ = await _write(primary, "k2")
        assert ok

    asyncio.run(_with(fake, scenario()))
