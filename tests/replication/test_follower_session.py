"""The follower's connection loop against a stand-in primary on 127.0.0.1: how a session ends
decides whether the replica keeps following.

A primary killed while a replica applied used to end that replica's follower for good, with the
node alive and nothing logged after the disconnect: the apply loop, failing on the dropped
connection, cancelled the follower's long-lived task after its session had ended, and that
cancellation read as a request to stop.
"""

from __future__ import annotations

import asyncio
import secrets
import socket
import struct
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from litecluster.engine.apply import Replica
from litecluster.engine.position import Position
from litecluster.engine.record import TxRecord, encode
from litecluster.engine.snapshot import create_snapshot, install_snapshot
from litecluster.replication.config import Address, ReplicationConfig
from litecluster.replication.protocol import Hello, Records, Welcome, encode_message, read_message
from litecluster.replication.replica.diskpos import open_replica
from litecluster.replication.replica.follower import Follower
from litecluster.replication.state import NodeState
from litecluster.replication.stats import Stats
from litecluster.replication.tokens import Tokens
from support import Cluster


@dataclass
class FakePrimary:
    """Answers each HELLO with a WELCOME for ``databases``; ``session`` then plays connection
    number ``n`` (from 1). The first connection ends as a killed primary's does (a reset) when
    ``dies``; every other one lasts until the replica closes it."""

    databases: list[str]
    session: Callable[[int, asyncio.StreamWriter], Coroutine[Any, Any, None]]
    dies: bool = True
    hellos: list[Hello] = field(default_factory=list)
    hello_seen: asyncio.Event = field(default_factory=asyncio.Event)
    handlers: list[asyncio.Task[Any]] = field(default_factory=list)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.handlers.append(task)
        hello = await read_message(reader)
        assert isinstance(hello, Hello)
        self.hellos.append(hello)
        self.hello_seen.set()
        writer.write(encode_message(Welcome("p1", 1, self.databases)))
        await writer.drain()
        await self.session(len(self.hellos), writer)
        if self.dies and len(self.hellos) == 1:
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        else:
            await reader.read()  # until the replica closes the connection
        writer.close()

    async def hello(self, n: int, follower: asyncio.Task[None], timeout: float = 20.0) -> Hello:
        """HELLO number ``n``; fails at once if the follower's task ends instead."""
        async with asyncio.timeout(timeout):
            while len(self.hellos) < n:
                self.hello_seen.clear()
                seen = asyncio.ensure_future(self.hello_seen.wait())
                await asyncio.wait([seen, follower], return_when=asyncio.FIRST_COMPLETED)
                seen.cancel()
                if follower.done():
                    pytest.fail(f"the follower's task ended: {follower!r}")
        return self.hellos[n - 1]


@asynccontextmanager
async def following(
    data_dir: Path, primary: FakePrimary
) -> AsyncIterator[tuple[Follower, asyncio.Task[None]]]:
    server = await asyncio.start_server(primary.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    config = ReplicationConfig(
        data_dir=data_dir, primary=Address("127.0.0.1", port), heartbeat_interval=60.0,
        reconnect_min=0.01, reconnect_max=0.02, replica_durable=False,
    )  # fmt: skip
    data_dir.mkdir(exist_ok=True)
    follower = Follower(config, Tokens([secrets.token_hex(32)]), NodeState(data_dir), "r1", Stats())
    follower.open_databases()
    task = asyncio.create_task(follower.run(), name="follower")
    try:
        yield follower, task
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task  # a stop still stops it
        follower.close()
        await asyncio.gather(*primary.handlers)  # each ends with its replica connection
        server.close()
        await server.wait_closed()


def test_an_apply_loop_failing_as_the_connection_drops_leaves_the_follower_following(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    received = asyncio.Event()

    async def apply_loop(self: Follower, db: str, q: asyncio.Queue[object], writer: object) -> None:
        await q.get()
        received.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            # What its ack to the dropped connection did: fail as the session ends.
            raise ConnectionResetError("connection lost") from None

    monkeypatch.setattr(Follower, "_apply_loop", apply_loop)

    async def session(n: int, writer: asyncio.StreamWriter) -> None:
        if n == 1:
            writer.write(encode_message(Records("main", b"records")))
            await writer.drain()
            await received.wait()  # then the primary dies, as the replica applies

    async def main() -> None:
        primary = FakePrimary(["main"], session)
        async with following(tmp_path / "replica", primary) as (follower, task):
            await primary.hello(2, task)
            assert follower.stats.reconnects >= 1

    asyncio.run(main())


def test_two_apply_loops_failing_together_end_one_session_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    disk_full = asyncio.Event()
    waiting: list[str] = []

    async def apply_loop(self: Follower, db: str, q: asyncio.Queue[object], writer: object) -> None:
        await q.get()
        waiting.append(db)
        if len(waiting) == 2:
            disk_full.set()
        await disk_full.wait()
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Follower, "_apply_loop", apply_loop)

    async def session(n: int, writer: asyncio.StreamWriter) -> None:
        if n == 1:
            for db in ("a", "b"):
                writer.write(encode_message(Records(db, b"records")))
            await writer.drain()

    async def main() -> None:
        primary = FakePrimary(["a", "b"], session, dies=False)  # the replica leaves by itself
        async with following(tmp_path / "replica", primary) as (follower, task):
            await primary.hello(2, task)
            assert follower.stats.errors["OSError"] >= 1  # a disk error, not a lost connection

    asyncio.run(main())
    assert "replica.apply_failed error='[Errno 28] No space left on device'" in caplog.text


def test_a_session_ends_only_once_its_apply_thread_has(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cluster: Cluster
) -> None:
    cluster.writer.execute("CREATE TABLE t(v)")
    cluster.capture_all()
    # The replica starts from a snapshot; the primary streams what came after it.
    data_dir = tmp_path / "replica"
    (data_dir / "db").mkdir(parents=True)
    create_snapshot(cluster.capture, tmp_path / "snapshot")
    replica = open_replica(data_dir, "main", durable=False)
    install_snapshot(replica, tmp_path / "snapshot")
    start = replica.position.txid
    replica.close()
    for i in range(20):
        cluster.writer.execute("INSERT INTO t VALUES (?)", (i,))
    cluster.capture_all()
    records = list(cluster.log.read(start + 1))
    assert records

    entered, release, returned = threading.Event(), threading.Event(), threading.Event()
    original = Replica.apply

    def slow_apply(self: Replica, batch: Sequence[TxRecord]) -> Position:
        entered.set()
        release.wait(30)
        try:
            return original(self, batch)
        finally:
            returned.set()

    monkeypatch.setattr(Replica, "apply", slow_apply)

    async def session(n: int, writer: asyncio.StreamWriter) -> None:
        if n == 1:
            writer.write(encode_message(Records("main", b"".join(map(encode, records)))))
            await writer.drain()
            await asyncio.to_thread(entered.wait, 30)
            # The primary dies while the batch is being applied, which takes a while longer.
            asyncio.get_running_loop().call_later(0.3, release.set)

    async def main() -> None:
        primary = FakePrimary(["main"], session)
        async with following(data_dir, primary) as (_, task):
            hello = await primary.hello(2, task)
            # Not earlier: a next session applying from the position before the batch raced
            # the thread still applying it, on the same file.
            assert returned.is_set()
            assert hello.positions["main"].txid == records[-1].txid

    try:
        asyncio.run(main())
    finally:
        release.set()
