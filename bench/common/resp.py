"""Redis's wire protocol as the benchmarks' load: a lean RESP client, the durable-write load
generator that drives litecluster's RESP front end and redis-server alike, and a redis-server
primary with its replica (used by ``bench.kv`` and ``bench.sync``).

* :func:`durable_load` drives ``clients`` concurrent RESP connections (asyncio streams on uvloop,
  each writing the request bytes itself and parsing only the replies it expects), each sending
  ``SET`` with a new key, one at a time, optionally followed by ``WAIT N 0`` in the same write;
  the same code for litecluster and redis-server, so that the client's CPU is the same on both.
* :func:`redis_pair` starts redis-server with ``appendonly yes``/``appendfsync always`` and a
  second one as its replica (``replicaof``), and waits until the link is up.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from bench.common.load import RAW_ERRORS, LoadRun, drive
from bench.common.reads import RedisServer

# ---- a lean RESP client ------------------------------------------------------------------------


class RespError(Exception):
    """An error reply (``-ERR ...``)."""


def encode(*commands: Sequence[bytes]) -> bytes:
    """RESP arrays of bulk strings, one per command."""
    out = bytearray()
    for args in commands:
        out += b"*%d\r\n" % len(args)
        for a in args:
            out += b"$%d\r\n%b\r\n" % (len(a), a)
    return bytes(out)


async def read_reply(reader: asyncio.StreamReader) -> Any:
    """One RESP2 reply: str (simple), int, bytes or None (bulk), list, or a :class:`RespError`
    instance (returned, not raised: the caller decides)."""
    line = await reader.readuntil(b"\r\n")
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        return RespError(rest.decode(errors="replace"))
    if kind == b":":
        return int(rest)
    if kind == b"$":
        n = int(rest)
        return None if n < 0 else (await reader.readexactly(n + 2))[:-2]
    if kind == b"*":
        n = int(rest)
        return None if n < 0 else [await read_reply(reader) for _ in range(n)]
    raise ValueError(f"not a RESP reply: {line[:100]!r}")


class RespConn:
    """One connection that writes the command bytes itself and reads one reply per command;
    it authenticates first when given a password. After an error it is closed and the next
    call reconnects."""

    def __init__(self, port: int, password: str | None, timeout: float = 30.0) -> None:
        self.port, self.password, self.timeout = port, password, timeout
        self._conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def open(self) -> None:
        if self._conn is not None:
            return
        self._conn = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", self.port), self.timeout
        )
        if self.password:
            (got,) = await self.call([b"AUTH", self.password.encode()])
            if got != "OK":
                self.close()
                raise ValueError(f"AUTH answered {got!r}")

    async def call(self, *commands: Sequence[bytes]) -> list[Any]:
        try:
            await self.open()
            assert self._conn is not None
            reader, writer = self._conn
            writer.write(encode(*commands))
            return [await asyncio.wait_for(read_reply(reader), self.timeout) for _ in commands]
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self._conn is not None:
            self._conn[1].close()
            self._conn = None


# ---- durable writes ------------------------------------------------------------------------------


def check_write(replies: list[Any], wait: int) -> str:
    """'' when ``SET`` answered OK (and ``WAIT`` counted at least ``wait`` replicas)."""
    if replies[0] != "OK":
        return f"SET answered {replies[0]!r}"[:300]
    if wait and (not isinstance(replies[1], int) or replies[1] < wait):
        return f"WAIT {wait} 0 answered {replies[1]!r}"[:300]
    return ""


def durable_load(
    kind: str,
    port: int,
    password: str | None,
    clients: int,
    seconds: float,
    warmup_s: float,
    value: bytes,
    tag: str,
    wait: int,
    before_go: Callable[[], None],
) -> LoadRun:
    """``clients`` connections sending ``SET TAG:CLIENT:SEQ VALUE`` (a new key each time), one at
    a time, each followed by ``WAIT wait 0`` in the same write when ``wait`` > 0; ``warmup_s``
    seconds untimed, then ``seconds`` measured (``before_go`` runs just before)."""
    import uvloop

    async def run() -> LoadRun:
        conns = [RespConn(port, password) for _ in range(clients)]
        for c in conns:
            await c.open()

        def sender(prefix: str) -> Callable[[int, int], Any]:
            async def send(i: int, seq: int) -> str:
                cmds: list[list[bytes]] = [[b"SET", f"{prefix}:{i}:{seq}".encode(), value]]
                if wait:
                    cmds.append([b"WAIT", str(wait).encode(), b"0"])
                try:
                    replies = await conns[i].call(*cmds)
                except RAW_ERRORS as exc:
                    return f"{type(exc).__name__}: {exc}"[:300]
                return check_write(replies, wait)

            return send

        try:
            if warmup_s > 0:
                await drive(kind, clients, warmup_s, lambda: None, sender(f"{tag}w"))
            return await drive(kind, clients, seconds, before_go, sender(tag))
        finally:
            for c in conns:
                c.close()

    result: LoadRun = uvloop.run(run())
    return result


# ---- redis-server peers --------------------------------------------------------------------------

AOF_ALWAYS = ["--appendonly", "yes", "--appendfsync", "always"]


def redis_info(port: int, section: str) -> dict[str, str]:
    import redis

    with redis.Redis(host="127.0.0.1", port=port, socket_timeout=5) as r:
        info: dict[str, Any] = r.info(section)
    return {k: str(v) for k, v in info.items()}


@contextlib.contextmanager
def redis_pair(
    root: Path, args: Sequence[str], timeout: float = 30.0
) -> Iterator[tuple[RedisServer, RedisServer]]:
    """A redis-server with ``args`` and a replica of it with the same ``args`` (``replicaof``),
    once the primary counts the replica online; both killed when the block ends."""
    with RedisServer(root / "redis-aof", args) as primary:
        primary.start()
        with RedisServer(
            root / "redis-aof-replica", [*args, "--replicaof", "127.0.0.1", str(primary.port)]
        ) as rep:
            rep.start()
            deadline = time.monotonic() + timeout
            while True:
                info = redis_info(primary.port, "replication")
                if info.get("connected_slaves") == "1" and "online" in info.get("slave0", ""):
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the redis replica did not come online: {info}")
                time.sleep(0.05)
            yield primary, rep
